"""Training throughput (real images consumed per second) of gan_lightning beside a hand-written PyTorch loop doing
the same math, in fp32, bf16-mixed, 16-mixed and compiled fp32, on a class-conditional DCGAN and an SNGAN-style
ResNet at 32x32 (CIFAR-sized random data held in memory), at several batch sizes, side by side in one run.

Networks (``--width`` W, default 64): the conditional DCGAN with ngf = ndf = W (conditional BN in G, spectral-norm
projection D); the SNGAN ResNet with ngf = 4W and ndf = 2W (with W = 64 the widths of
``experiments/sngan_proj_cifar10.yaml``). Hinge loss, Adam, EMA of G, one D step per G step.

For every (network, batch, precision) rounds alternate between gan_lightning (``Trainer.fit``, logging every 50
steps) and the hand-written loop (``step_speed.plain_image_loop``: the same step, mixed precision as Lightning
runs it); each figure is the median over rounds, and ``gan_lightning / plain`` the median of the per-round
ratios. Made for a GPU (``--accelerator cuda``; ``benchmarks/gpu.py`` runs it); on a CPU it runs too, with small
settings (16-mixed through the CPU grad scaler).

    .venv/bin/python benchmarks/precision_throughput.py --accelerator cuda --batch 64 256
    .venv/bin/python benchmarks/precision_throughput.py --accelerator cpu --steps 10 --warmup 5 --batch 16 --width 16
"""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from gan_lightning.conditioning import ConditionalBatchNorm, Projection
from gan_lightning.data.base import InMemory, _identity
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, ResNetDiscriminator, ResNetGenerator
from gan_lightning.training.system import GAN

from bench_common import median, rotations, table  # noqa: E402  (same folder)
from step_speed import _Clock, _trainer, cycle, ema_copy, plain_image_loop  # noqa: E402

ARCHS = {"dcgan": "conditional DCGAN 32x32", "resnet": "SNGAN ResNet 32x32"}
# name -> (Lightning precision, compiled)
PRECISIONS = {"fp32": ("32-true", False), "bf16-mixed": ("bf16-mixed", False), "16-mixed": ("16-mixed", False),
              "compiled": ("32-true", True)}
IMPLEMENTATIONS = ("gan_lightning", "plain")
EMA_DECAY = 0.999


def nets(arch: str, width: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    if arch == "dcgan":
        g = DCGANGenerator(latent_dim=128, channels=3, image_size=32, ngf=width, num_classes=10,
                           conditioning=ConditionalBatchNorm())
        d = DCGANDiscriminator(channels=3, image_size=32, ndf=width, norm="spectral", num_classes=10,
                               conditioning=Projection())
    else:
        g = ResNetGenerator(latent_dim=128, channels=3, image_size=32, ngf=4 * width, num_classes=10,
                            conditioning=ConditionalBatchNorm())
        d = ResNetDiscriminator(channels=3, image_size=32, ndf=2 * width, num_classes=10, conditioning=Projection())
    return g, d


def adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=2e-4, betas=(0.0, 0.9))


def model(arch: str, width: int, compile_mode: str) -> GAN:
    g, d = nets(arch, width)
    return GAN(g, d, loss="hinge", ema_decay=EMA_DECAY, g_optimizer=adam, d_optimizer=adam, compile=compile_mode)


def loader(batch: int) -> DataLoader:
    n = batch * 16
    g = torch.Generator().manual_seed(0)
    data = InMemory(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                    torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch, shuffle=True, drop_last=True, collate_fn=_identity,
                      pin_memory=torch.cuda.is_available())


def _lightning_precision(precision: str, accelerator: str) -> dict[str, Any]:
    """Trainer arguments for ``precision``; 16-mixed on a CPU goes through the CPU grad scaler (Lightning offers it
    on GPUs only)."""
    if precision == "16-mixed" and accelerator == "cpu":
        from lightning.pytorch.plugins.precision import MixedPrecision

        return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}
    return {"precision": precision}


def gan_lightning_rate(arch: str, batch: int, variant: str, args: argparse.Namespace) -> float:
    precision, compiled = PRECISIONS[variant]
    clock = _Clock(args.warmup)
    trainer = _trainer(args.warmup + args.steps, clock, accelerator=args.accelerator,
                       **_lightning_precision(precision, args.accelerator))
    trainer.fit(model(arch, args.width, "default" if compiled else "none"), loader(batch))
    return batch * args.steps / (clock.end - clock.start)


def plain_rate(arch: str, batch: int, variant: str, args: argparse.Namespace) -> float:
    precision, compiled = PRECISIONS[variant]
    g, d = nets(arch, args.width)
    ema = ema_copy(g, lambda: nets(arch, args.width)[0])
    device = "cuda" if args.accelerator in ("cuda", "gpu") else "cpu"
    seconds = plain_image_loop(g, d, ema, cycle(loader(batch)), args.steps, args.warmup, make_optimizer=adam,
                               ema_decay=EMA_DECAY, device=device, precision=precision, compile_nets=compiled)
    return batch / seconds


RUNNERS = {"gan_lightning": gan_lightning_rate, "plain": plain_rate}


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (network, batch, precision): images/s of every implementation in every round, or the error
    that stopped it."""
    rows = []
    for arch in args.arch:
        for batch in args.batch:
            for variant in args.precision:
                rates: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
                error: Optional[str] = None
                for order in rotations(IMPLEMENTATIONS, args.rounds):
                    for name in order:
                        try:
                            rates[name].append(RUNNERS[name](arch, batch, variant, args))
                        except Exception as err:  # noqa: BLE001 - reported in the table; the other cells go on
                            error = f"{name}: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
                            break
                    if error:
                        break
                rows.append({"arch": arch, "batch": batch, "precision": variant, "rates": rates, "error": error})
                print(f"# {arch} batch {batch} {variant}: "
                      + (error or ", ".join(f"{k} {median(v):,.0f} img/s" for k, v in rates.items())), flush=True)
    return rows


def markdown(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    fp32 = {(r["arch"], r["batch"]): median(r["rates"]["gan_lightning"]) for r in rows
            if r["precision"] == "fp32" and not r["error"]}
    cells = []
    for r in rows:
        name = f"{ARCHS[r['arch']]}"
        if r["error"]:
            cells.append((name, r["batch"], r["precision"], "failed", "failed", "—", "—", r["error"]))
            continue
        ours, plain = r["rates"]["gan_lightning"], r["rates"]["plain"]
        ratio = median([a / b for a, b in zip(ours, plain)])
        base = fp32.get((r["arch"], r["batch"]))
        cells.append((name, r["batch"], r["precision"], f"{median(ours):,.0f}", f"{median(plain):,.0f}",
                      f"{ratio:.3f}x", f"{median(ours) / base:.2f}x" if base else "—", ""))
    head = (f"{args.accelerator}: {args.steps} timed steps after {args.warmup} warm-up (compilation happens there), "
            f"{args.rounds} alternating rounds, width {args.width}; images/s are real images consumed per second "
            "(medians)")
    return head + "\n\n" + table(["network", "batch", "precision", "gan_lightning img/s", "hand-written img/s",
                                  "gan_lightning / hand-written", "vs fp32 (gan_lightning)", "note"], cells)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="cuda", help="cuda or cpu")
    p.add_argument("--arch", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    p.add_argument("--batch", nargs="+", type=int, default=[64, 256])
    p.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS))
    p.add_argument("--steps", type=int, default=200, help="timed steps")
    p.add_argument("--warmup", type=int, default=30, help="steps before timing (compilation happens here)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell")
    p.add_argument("--width", type=int, default=64, help="DCGAN ngf = ndf; ResNet ngf = 4x, ndf = 2x")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return p


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet()
    rows = measure(args)
    print("\n" + markdown(rows, args))
    return int(any(r["error"] for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
