"""Where the toy step's overhead goes: ``step_speed``'s toy table with one more variant, ``gan_lightning`` without
logging (a ``GAN`` whose ``_logging_step`` is always false, so nothing reaches Lightning's result collection).

    .venv/bin/python benchmarks/step_ablation.py [--rounds 60] [--instances 6]

The difference between ``gan_lightning`` and ``gl_no_logging`` is what logging costs per step, Lightning's
recomputation of the logged values after every batch included; the difference between ``gl_no_logging`` and
``lightning_floor`` is the rest of what the step adds (hook dispatch of ``manual_backward`` and of the strategy's
optimizer step, holding D fixed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import step_speed as S  # noqa: E402
from gan_lightning.training import GAN  # noqa: E402


class WithoutLogging(GAN):
    def _logging_step(self) -> bool:
        return False


def run_without_logging(iterations: int, batch: int, tick) -> None:
    g, d = S.toy_nets()
    schedule = S.toy_schedule(iterations)
    model = WithoutLogging(g, d, loss="non_saturating", regularizers=[S.R1(gamma=S.TOY_R1_GAMMA)],
                           ema_decay=S.TOY_EMA, g_optimizer=S.toy_adam, d_optimizer=S.toy_adam,
                           g_lr_scheduler=schedule, d_lr_scheduler=schedule)
    S._trainer(iterations, S._Ticks(tick)).fit(model, S.toy_data(batch))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--instances", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    toy = S.VARIANTS["toy"]
    S.VARIANTS["toy"] = {"plain": toy["plain"], "gan_lightning": toy["gan_lightning"],
                         "gl_no_logging": run_without_logging, "lightning_floor": toy["lightning_floor"],
                         "plain_again": toy["plain_again"]}
    result = S.measure("toy", rounds=args.rounds, instances=args.instances)
    print(S.markdown(result, 1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
