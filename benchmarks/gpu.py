"""``make bench-gpu``: on a CUDA machine, every CUDA test (``pytest -m cuda``) and the GPU throughput table, written
into the GPU section of ``BENCHMARKS.md`` (replaced on each run; the CPU sections of ``make bench`` are kept).

The table is ``precision_throughput.py``'s: real images per second of the conditional DCGAN-32 and the SNGAN
ResNet-32 at batch 64 and 256, in fp32, bf16-mixed, 16-mixed and compiled fp32, gan_lightning beside a
hand-written loop doing the same math, medians over alternating rounds.

    .venv/bin/python benchmarks/gpu.py [--out BENCHMARKS.md] [--steps 200] [--warmup 30] [--rounds 3] [--batch 64 256]
        [--skip_tests]

Without a CUDA device it stops at once with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import GPU_BEGIN, GPU_END, REPO, REPORT, command_line, machine, now, with_gpu_section, write_atomic  # noqa: E402

NO_CUDA = ("error: benchmarks/gpu.py needs a CUDA GPU and torch.cuda.is_available() is False on this machine; "
           "run make bench-gpu on a CUDA machine (make bench runs the CPU benchmarks)")
PYTEST = ["-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider", "tests"]


def parser() -> argparse.ArgumentParser:
    import precision_throughput

    p = precision_throughput.parser()
    p.prog, p.description = "benchmarks/gpu.py", __doc__.split("\n\n")[0]
    p.add_argument("--out", default=str(REPORT), help="the report whose GPU section is replaced")
    p.add_argument("--skip_tests", action="store_true", help="the throughput table only")
    return p


def cuda_tests() -> tuple[int, str]:
    """(exit status, pytest's summary line) of ``pytest -m cuda``."""
    proc = subprocess.run([sys.executable, *PYTEST], cwd=REPO, capture_output=True, text=True)
    print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", flush=True)
    lines = [line.strip("= ") for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, (lines[-1] if lines else "no output")


def section(args: argparse.Namespace, argv: list[str], tests: Optional[tuple[int, str]], throughput: str) -> str:
    lines = [GPU_BEGIN, "## GPU", ""]
    lines += [f"- **{k}**: {v}" for k, v in machine(args.threads or 0) if k != "threads used"]
    lines += [f"- **command**: `{command_line('benchmarks/gpu.py', argv)}`", f"- **date**: {now()}", ""]
    lines += ["### CUDA tests", ""]
    if tests is None:
        lines += ["Not run (`--skip_tests`)."]
    else:
        rc, summary = tests
        verdict = "all passed" if rc == 0 and "skipped" not in summary else "NOT all passed"
        lines += [f"`python {' '.join(PYTEST)}`: **{summary}** (exit status {rc}; {verdict})"]
    lines += ["", "### Throughput: images per second", "", throughput, GPU_END]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    import precision_throughput

    args.accelerator = "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    tests = None if args.skip_tests else cuda_tests()
    precision_throughput.quiet()
    rows = precision_throughput.measure(args)
    text = section(args, argv, tests, precision_throughput.markdown(rows, args))
    out = Path(args.out)
    previous = out.read_text() if out.is_file() else "# Benchmarks\n\nThe CPU sections: `make bench`.\n"
    write_atomic(out, with_gpu_section(previous, text))
    print(f"wrote the GPU section of {out}", file=sys.stderr)
    failed = (tests is not None and tests[0] != 0) or any(r["error"] for r in rows)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
