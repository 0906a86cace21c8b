"""Start-up time: the command line's answer to ``--help`` against importing torch, and the seconds from typing the
default experiment's ``fit`` command to its first training step against importing Lightning.

Rounds alternate between the commands (in an order rotated each round), after one untimed warm-up run of each
(it fills the OS file cache and, on a fresh machine, the domain-classifier cache the default experiment's
metric callback loads before training); each figure is the median over rounds, and each ratio or difference is
the median of the per-round values, measured side by side:

- ``torch``: ``python -c "import torch"``; ``help``: ``python -m gan_lightning --help``; ``package``:
  ``python -c "import gan_lightning"``: wall seconds of the whole process;
- ``lightning``: ``python -c "import lightning.pytorch"``, seconds from launching the process to the end of the
  import (it prints ``time.time()`` then): the fit command is timed to a point inside a live process too, and the
  interpreter's exit after importing Lightning takes seconds of its own;
- ``fit``: ``python -m gan_lightning fit --config experiments/cgan_mnist5k.yaml --trainer.max_steps=1
  --wandb=disabled`` (the default experiment of ``make train``, W&B off) with
  ``--trainer.callbacks+=bench_callbacks.FirstStepClock`` (prints ``time.time()`` when the first training batch
  starts) and a temporary ``--run_dir``: seconds from launching the process to that line; the process is killed
  there (its end-of-training metrics would measure something else).

Targets: ``--help`` within 1.5x the time of ``import torch``; the first step within 2 s of ``import
lightning.pytorch``.

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

EXPERIMENT = "experiments/cgan_mnist5k.yaml"
FIT = ["-m", "gan_lightning", "fit", "--config", EXPERIMENT, "--trainer.max_steps=1", "--wandb=disabled"]
CLOCK = "--trainer.callbacks+=bench_callbacks.FirstStepClock"
# The process-wall commands, by name.
COMMANDS = {
    "torch": ["-c", "import torch"],
    "help": ["-m", "gan_lightning", "--help"],
    "package": ["-c", "import gan_lightning"],
}
# Prints time.time() once Lightning is imported.
LIGHTNING = ["-c", "import time, lightning.pytorch; print(f'imported at {time.time():.6f}', flush=True)"]
HELP_TARGET = 1.5     # --help / import torch
FIRST_STEP_TARGET = 2.0  # seconds of the first step beyond import lightning.pytorch


def _run(cmd: list[str], threads: int) -> float:
    """Wall seconds of one command run from the repository root; a failure raises with its last lines."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return wall


def command_seconds(name: str, threads: int, python: str = sys.executable) -> float:
    return _run([python, *COMMANDS[name]], threads)


def seconds_to_line(cmd: list[str], threads: int, read: Any, timeout: float = 600.0) -> float:
    """Seconds from launching ``cmd`` (from the repository root) to the ``time.time()`` that ``read`` finds in a
    line of its stdout; the process is killed there."""
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        with open(Path(tmp) / "stderr.txt", "w+") as err:
            start = time.time()
            proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(threads), stdout=subprocess.PIPE, stderr=err,
                                    text=True)
            found = None
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    found = read(line)
                    if found is not None or time.time() - start > timeout:
                        break
            finally:
                proc.kill()
                proc.wait()
            if found is None:
                err.seek(0)
                tail = "\n".join(err.read().strip().splitlines()[-5:])
                raise RuntimeError(f"{shlex.join(cmd)} printed no time (exit code {proc.returncode}):\n{tail}")
    return found - start


def lightning_seconds(threads: int, python: str = sys.executable) -> float:
    """Seconds from launching ``python -c "import lightning.pytorch"`` to the end of the import."""
    return seconds_to_line([python, *LIGHTNING], threads,
                           lambda line: float(line.split()[-1]) if line.startswith("imported at ") else None)


def first_step_seconds(threads: int, python: str = sys.executable) -> float:
    """Seconds from launching the default experiment's fit command to its first training step."""
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        return seconds_to_line([python, *FIT, CLOCK, f"--run_dir={Path(tmp) / 'run'}"], threads, first_step_time)


def timed(name: str, threads: int) -> float:
    if name == "fit":
        return first_step_seconds(threads)
    if name == "lightning":
        return lightning_seconds(threads)
    return command_seconds(name, threads)


def measure(rounds: int = 5, threads: int = 1) -> dict[str, Any]:
    names = [*COMMANDS, "lightning", "fit"]
    values: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up, untimed
        timed(name, threads)
    for order in rotations(names, rounds):
        for name in order:
            values[name].append(timed(name, threads))
    return {"rounds": rounds, "threads": threads, "values": values}


def checks(result: dict[str, Any]) -> dict[str, float]:
    """The two targets' figures, medians of the per-round values: ``help_ratio`` (--help over import torch) and
    ``first_step_beyond_lightning`` (seconds to the first step minus import lightning.pytorch)."""
    v = result["values"]
    return {
        "help_ratio": median([h / t for h, t in zip(v["help"], v["torch"])]),
        "first_step_beyond_lightning": median([f - lt for f, lt in zip(v["fit"], v["lightning"])]),
    }


def markdown(result: dict[str, Any]) -> str:
    v = result["values"]
    fit = "python " + " ".join(FIT)

    def cell(xs: list[float]) -> str:
        return f"{median(xs):.2f}" + (f" ({min(xs):.2f}–{max(xs):.2f})" if len(xs) > 1 else "")

    rows = [
        ('`python -c "import torch"`', "whole process", cell(v["torch"])),
        ("`python -m gan_lightning --help`", "whole process", cell(v["help"])),
        ('`python -c "import gan_lightning"`', "whole process", cell(v["package"])),
        ('`python -c "import lightning.pytorch"`', "to the end of the import", cell(v["lightning"])),
        (f"`{fit}`", "to the first training step", cell(v["fit"])),
    ]
    c = checks(result)
    lightning = median(v["lightning"])
    targets = [
        ("`--help` / `import torch`", f"{c['help_ratio']:.2f}x", f"<= {HELP_TARGET:.1f}x",
         "yes" if c["help_ratio"] <= HELP_TARGET else "no"),
        ("first training step - `import lightning.pytorch`", f"{c['first_step_beyond_lightning']:+.2f} s",
         f"<= {FIRST_STEP_TARGET:.0f} s (first step <= {lightning + FIRST_STEP_TARGET:.2f} s)",
         "yes" if c["first_step_beyond_lightning"] <= FIRST_STEP_TARGET else "no"),
    ]
    return (f"Alternating rounds: {result['rounds']} after one untimed warm-up of each command, threads: "
            f"{result['threads']}; the fit command (the default experiment, `make train`'s, with W&B off) also gets "
            f"`{CLOCK}` and a temporary `--run_dir`, and is stopped at its first step\n\n"
            + table(["command", "measured", "seconds: median (min–max)"], rows)
            + "\n\nSide by side, medians of the per-round values:\n\n"
            + table(["check", "measured", "target", "met"], targets))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the commands")
    args = parser.parse_args(argv)
    print("\n" + markdown(measure(args.rounds, args.threads)))


if __name__ == "__main__":
    main()
