"""What the benchmarks share: the machine they ran on, medians over alternating rounds, markdown tables and the
sections of ``BENCHMARKS.md``."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REPORT = REPO / "BENCHMARKS.md"
RESULTS = HERE / "results"
# MNIST / FashionMNIST in torchvision's raw layout (<root>/MNIST/raw/...): $GAN_LIGHTNING_DATA, else data/ here.
DATA_ROOT = Path(os.environ.get("GAN_LIGHTNING_DATA", REPO / "data"))

# The GPU section of BENCHMARKS.md lies between these lines: benchmarks/gpu.py replaces it, benchmarks/run.py
# keeps it when it rewrites the CPU sections.
GPU_BEGIN = "<!-- gpu-section: begin (written by benchmarks/gpu.py) -->"
GPU_END = "<!-- gpu-section: end -->"
# The "Methods and notes" section lies between these lines: written by hand in BENCHMARKS.md (how the figures are
# measured, protocols, targets, single-run results of the other benchmark scripts); benchmarks/run.py and
# benchmarks/gpu.py keep it as it is.
METHODS_BEGIN = "<!-- methods-section: begin (written by hand; make bench keeps it) -->"
METHODS_END = "<!-- methods-section: end -->"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rotations(names: Sequence[str], rounds: int) -> Iterator[list[str]]:
    """The order of each round: rotated by one per round, so that no variant always runs first or after the
    same one."""
    names = list(names)
    for r in range(rounds):
        k = r % len(names)
        yield names[k:] + names[:k]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> list[tuple[str, str]]:
    """(what, value) lines describing the machine and the software."""
    import lightning
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        ("CPU", f"{cpu_model()}, {cores} cores usable by this process ({os.cpu_count()} logical CPUs)"),
        ("threads used", f"{threads} (torch intra-op threads; OMP_NUM_THREADS={threads} in every subprocess)"),
        ("load average (1 min) at start", f"{os.getloadavg()[0]:.2f}"),
        ("software", f"Python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}, "
                     f"{platform.system()} {platform.release()}"),
    ]
    if torch.cuda.is_available():
        rows.append(("GPU", f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"))
    return rows


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command as typed from the repository root, e.g. ``.venv/bin/python benchmarks/run.py --quick``."""
    python = sys.executable
    try:
        python = os.path.relpath(python, REPO) if Path(python).absolute().is_relative_to(REPO) else python
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in [python, script, *argv])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def marked_section(text: str, begin: str, end: str) -> str | None:
    """The part of ``text`` from the line ``begin`` to the line ``end`` (markers included), or None."""
    m = re.search(re.escape(begin) + r".*?" + re.escape(end), text, flags=re.S)
    return m.group(0) if m else None


def gpu_section(text: str) -> str | None:
    """The GPU section of a report (markers included), or None."""
    return marked_section(text, GPU_BEGIN, GPU_END)


def methods_section(text: str) -> str | None:
    """The hand-written "Methods and notes" section of a report (markers included), or None."""
    return marked_section(text, METHODS_BEGIN, METHODS_END)


def with_gpu_section(text: str, section: str) -> str:
    """``text`` with its GPU section replaced by ``section`` (which carries the markers), or with it appended."""
    if gpu_section(text) is not None:
        return re.sub(re.escape(GPU_BEGIN) + r".*?" + re.escape(GPU_END), lambda _: section, text, count=1, flags=re.S)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def write_atomic(path: Path, text: str) -> None:
    from gan_lightning.runtime.files import atomic_write  # here: the other helpers need no torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(text)


def subprocess_env(threads: int) -> dict[str, str]:
    """The environment of the benchmarks' subprocesses: ``threads`` intra-op threads, this folder importable (for
    ``bench_callbacks``), W&B quiet."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("WANDB_SILENT", "true")
    return env
