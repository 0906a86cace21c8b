"""Start-up time: seconds from typing the command to the first training step, and the package import alone.

Rounds alternate between the two commands (in an order rotated each round); each figure is the median over rounds:

- ``import``: ``python -c "import gan_lightning"``, wall seconds of the whole process;
- ``fit``: ``python -m gan_lightning fit --config experiments/toy_ring.yaml --trainer.max_steps=1 --wandb=disabled``
  with ``--trainer.callbacks+=bench_callbacks.FirstStepClock`` (prints ``time.time()`` when the first training
  batch starts) and a temporary ``--run_dir``: seconds from launching the process to that line (``to first
  step``), and to the process's exit (``whole command``: one step, the final metrics, sample plot and checkpoint
  included).

    .venv/bin/python benchmarks/startup.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from bench_callbacks import first_step_time  # noqa: E402  (same folder)
from bench_common import REPO, median, rotations, subprocess_env, table  # noqa: E402

FIT = ["-m", "gan_lightning", "fit", "--config", "experiments/toy_ring.yaml", "--trainer.max_steps=1", "--wandb=disabled"]
CLOCK = "--trainer.callbacks+=bench_callbacks.FirstStepClock"


def _run(cmd: list[str], threads: int) -> tuple[float, float, str]:
    """(launch time.time(), wall seconds, output) of one command run from the repository root; a failure raises
    with the command's last lines."""
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return start, wall, proc.stdout + proc.stderr


def import_seconds(threads: int, python: str = sys.executable) -> float:
    return _run([python, "-c", "import gan_lightning"], threads)[1]


def fit_seconds(threads: int, python: str = sys.executable) -> tuple[float, float]:
    """(seconds to the first training step, seconds of the whole command)."""
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        start, wall, output = _run([python, *FIT, CLOCK, f"--run_dir={Path(tmp) / 'run'}"], threads)
    first = first_step_time(output)
    if first is None:
        raise RuntimeError("the fit command printed no first-step time (FirstStepClock did not run)")
    return first - start, wall


def measure(rounds: int = 5, threads: int = 1) -> dict[str, Any]:
    values: dict[str, list[float]] = {"import": [], "first_step": [], "fit_total": []}
    for order in rotations(["import", "fit"], rounds):
        for name in order:
            if name == "import":
                values["import"].append(import_seconds(threads))
            else:
                first, total = fit_seconds(threads)
                values["first_step"].append(first)
                values["fit_total"].append(total)
    return {"rounds": rounds, "threads": threads, "values": values}


def markdown(result: dict[str, Any]) -> str:
    v = result["values"]
    fit = "python " + " ".join(FIT)

    def cell(xs: list[float]) -> str:
        return f"{median(xs):.2f}" + (f" ({min(xs):.2f}–{max(xs):.2f})" if len(xs) > 1 else "")

    rows = [
        ('`python -c "import gan_lightning"`', "whole process", cell(v["import"])),
        (f"`{fit}`", "to the first training step", cell(v["first_step"])),
        (f"`{fit}`", "whole command (1 step, final metrics, plot, checkpoint)", cell(v["fit_total"])),
    ]
    return (f"Alternating rounds: {result['rounds']}, threads: {result['threads']}; the fit command also gets "
            f"`{CLOCK}` and a temporary `--run_dir`\n\n"
            + table(["command", "measured", "seconds: median (min–max)"], rows))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the commands")
    args = parser.parse_args(argv)
    print("\n" + markdown(measure(args.rounds, args.threads)))


if __name__ == "__main__":
    main()
