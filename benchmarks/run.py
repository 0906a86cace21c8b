"""``make bench``: the CPU benchmarks, written to ``BENCHMARKS.md`` at the repository root (machine, command, date,
tables, PNG plots under ``benchmarks/results/``).

    .venv/bin/python benchmarks/run.py                   # the whole report (about 50 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick           # tiny settings: checks the pipeline, figures mean nothing
    .venv/bin/python benchmarks/run.py --sections step_speed startup --rounds 3
    .venv/bin/python benchmarks/run.py toy_quality --seeds 0   # one benchmark script by name, with its options

Sections: ``step_speed`` (ms per training step of gan_lightning, a hand-written loop and the usual Lightning
pattern, on the default experiment's networks and on the toy networks; and what Lightning's loop costs around an
empty step), ``startup`` (``--help`` against ``import torch``, and the
default experiment's command to its first training step against ``import lightning.pytorch``), ``time_to_quality`` (toy grid and default experiment metrics against training time, and the
metric callback's share), ``lazy_regularization`` (R1 on every D step against every 16th: step time and the judged
quality of full toy and default runs). Every figure is a median over alternating rounds and every ratio is measured side by
side in one run, except the time-to-quality curves, which are one training run each. The GPU section of an
existing ``BENCHMARKS.md`` (written by ``benchmarks/gpu.py``, ``make bench-gpu``) is kept, and so is its
hand-written "Methods and notes" section (taken from the repository's ``BENCHMARKS.md`` when the report written
is another file that has none).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import (GPU_BEGIN, GPU_END, REPO, REPORT, RESULTS, command_line, gpu_section, machine,  # noqa: E402
                          methods_section, now, write_atomic)

SCRIPTS = ["step_speed", "startup", "time_to_quality", "lazy_regularization", "ddp_throughput", "toy_quality", "precision_throughput", "gpu",
           "cgan_quality", "spatial_quality"]
SECTIONS = ["step_speed", "startup", "time_to_quality", "lazy_regularization"]
# Settings of --quick: enough to run every code path and produce every table and plot.
QUICK = {"steps": 4, "warmup": 2, "rounds": 1, "loop_batches": 10, "startup_rounds": 1, "toy_steps": 40, "toy_every": 20,
         "cgan_steps": 20, "cgan_every": 10, "cgan_samples": 200, "cgan_reference": 200}


def run_scripts(argv: list[str]) -> int:
    """``run.py NAME [options]`` runs one script with its options; ``run.py NAME NAME ...`` runs each."""
    jobs = [[name] for name in argv] if all(a in SCRIPTS for a in argv) else [argv]
    failed = 0
    for name, *args in jobs:
        print(f"\n## {name}\n", flush=True)
        failed |= subprocess.call([sys.executable, str(HERE / f"{name}.py"), *args]) != 0
    return int(failed)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds, not minutes); figures mean nothing")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS)
    p.add_argument("--out", default=None, help="the report (default: BENCHMARKS.md at the repository root; with "
                   "--quick runs/bench-quick/BENCHMARKS.md)")
    p.add_argument("--results", default=None, help="folder of the PNG plots (default: benchmarks/results; with "
                   "--quick a results/ folder beside the report)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in every section")
    p.add_argument("--note", default=None, help="a line added under the title (e.g. how busy the machine was)")
    g = p.add_argument_group("step_speed")
    g.add_argument("--steps", type=int, default=None, help="iterations per turn, a divisor or multiple of the logging cadence of 50 (default: 10)")
    g.add_argument("--warmup", type=int, default=None, help="untimed steps of every instance first (default: 50)")
    g.add_argument("--rounds", type=int, default=None, help="timed rounds of turns, every variant one turn per round (default: dcgan 100, toy 300; Lightning's loop alone 15)")
    g.add_argument("--instances", type=int, default=None, help="times every variant is built afresh (default: dcgan 10, toy 20)")
    g.add_argument("--loop_batches", type=int, default=500, help="batches per turn of Lightning's loop alone")
    g = p.add_argument_group("startup")
    g.add_argument("--startup_rounds", type=int, default=5)
    g = p.add_argument_group("time_to_quality")
    g.add_argument("--toy_steps", type=int, default=None, help="default: the experiment's max_steps")
    g.add_argument("--toy_every", type=int, default=1000, help="ToyMetrics cadence (the experiment's: 3000)")
    g.add_argument("--cgan_steps", type=int, default=None, help="default: the experiment's max_steps")
    g.add_argument("--cgan_every", type=int, default=1000, help="ImageMetrics cadence (the experiment's: 2000)")
    g.add_argument("--cgan_samples", type=int, default=None, help="ImageMetrics num_samples (default: the experiment's)")
    g.add_argument("--cgan_reference", type=int, default=None, help="ImageMetrics num_reference (default: the experiment's)")
    return p


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def section_step_speed(args: argparse.Namespace, results: Path, out: Path) -> str:
    import step_speed

    parts = [
        "Milliseconds per training step (one G iteration: a D step and a G step) of `Trainer.fit` with "
        "`gan_lightning.training.GAN` (logging every 50 steps, divergence guard on, no progress bar), a hand-written "
        "PyTorch loop doing exactly the same math (it reaches the same weights as `fit` bit for bit: "
        "`tests/test_benchmarks.py`; `tests/test_reference_loop.py` checks the step's other code paths the same "
        "way), the same hand-written step run by Lightning's own loop (`lightning_floor`), the same again with its "
        "backwards through `manual_backward` and its optimizer steps through Lightning's strategy, as "
        "gan_lightning's step makes them (`lightning_public`: what the public API costs any step), "
        "the usual Lightning GAN pattern (`toggle_optimizer`, fakes generated twice), and a second copy of the "
        "hand-written loop (`plain_again`: how far from 1.000x no difference at all measures on this machine). "
        "The variants run side by side in one process, taking turns of a few iterations in an order rotated each "
        "round, and each variant is built several times afresh (the same code on a fresh copy of the same networks "
        "runs a few percent faster or slower for as long as that copy lives). With turns shorter than the logging "
        "cadence a figure sums the consecutive turns that hold one logging step. Speed vs plain is the median over "
        "figures of the ratio within a figure; the overhead is the median of the difference. "
        "`benchmarks/step_speed.py`.",
    ]
    for model in ("dcgan", "toy"):
        print(f"# step_speed: {model} ...", file=sys.stderr, flush=True)
        result = step_speed.measure(model, args.steps, args.warmup, args.rounds, instances=args.instances)
        parts.append(step_speed.markdown(result, args.threads))
    print("# step_speed: Lightning's loop alone ...", file=sys.stderr, flush=True)
    loop = step_speed.loop_cost(args.loop_batches, min(100, args.loop_batches), args.rounds or 15)
    parts.append(step_speed.loop_markdown(loop))
    return "\n\n".join(parts)


def section_startup(args: argparse.Namespace, results: Path, out: Path) -> str:
    import startup

    print("# startup ...", file=sys.stderr, flush=True)
    return ("Seconds the command line takes to answer `--help` (against `import torch`), to import the package, and "
            "from launching the default experiment's fit command to its first training step (against `import "
            "lightning.pytorch`). `benchmarks/startup.py`.\n\n"
            + startup.markdown(startup.measure(args.startup_rounds, args.threads)))


def section_time_to_quality(args: argparse.Namespace, results: Path, out: Path) -> str:
    import time_to_quality as ttq

    ns = argparse.Namespace(experiments=list(ttq.EXPERIMENTS), toy_steps=args.toy_steps, toy_every=args.toy_every,
                            cgan_steps=args.cgan_steps, cgan_every=args.cgan_every, cgan_samples=args.cgan_samples,
                            cgan_reference=args.cgan_reference, threads=args.threads, results=str(results), keep=None)
    runs = ttq.run_all(ns, side_by_side=args.quick)
    parts = ["The committed experiments trained once each (seed 0) with the metric callback at a denser cadence, "
             "the curves read from the run's `metrics.csv`; single runs, not medians. `benchmarks/time_to_quality.py`."]
    for r in runs:
        parts.append(f"### {r.experiment.title}\n\n" + ttq.curve_markdown(r, out.parent))
    parts.append("### The metric callback's share of training time\n\nSeconds inside the metric callback's hooks "
                 "(`bench_callbacks.MetricTimer`) over the seconds of fit; the projection keeps the measured seconds "
                 "per evaluation and counts the evaluations of the experiment's own cadence.\n\n"
                 + ttq.share_markdown(runs))
    return "\n\n".join(parts)


def section_lazy_regularization(args: argparse.Namespace, results: Path, out: Path) -> str:
    import lazy_regularization as lazy

    argv = ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    print("# lazy_regularization ...", file=sys.stderr, flush=True)
    return lazy.markdown(lazy.run_all(lazy.parser().parse_args(argv), argv), standalone=False)


BUILDERS: dict[str, tuple[str, Callable[[argparse.Namespace, Path, Path], str]]] = {
    "step_speed": ("Training-step speed (CPU)", section_step_speed),
    "startup": ("Start-up", section_startup),
    "time_to_quality": ("Time to quality", section_time_to_quality),
    "lazy_regularization": ("Lazy regularization (R1 every 16 D steps)", section_lazy_regularization),
}


def report(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser().get_default(key):
                setattr(args, key, value)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    quiet()
    out = Path(args.out).resolve() if args.out else (REPO / "runs" / "bench-quick" / "BENCHMARKS.md" if args.quick else REPORT)
    results = Path(args.results).resolve() if args.results else (out.parent / "results" if args.quick else RESULTS)
    header = machine(args.threads)
    date = now()

    def build(name: str) -> tuple[str, bool]:
        title, builder = BUILDERS[name]
        try:
            return f"## {title}\n\n{builder(args, results, out)}", False
        except Exception as err:  # noqa: BLE001 - a failed section is reported, the others still run
            traceback.print_exc()
            return f"## {title}\n\n**failed**: `{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}`", True

    built: dict[str, tuple[str, bool]] = {}
    # --quick only checks the pipeline: the sections that run subprocesses run beside the in-process one.
    if args.quick:
        # Imported here, in one thread, before the sections run in several: two threads importing the package at
        # once can each find a module of it half-initialised.
        import startup  # noqa: F401
        import step_speed  # noqa: F401
        import time_to_quality  # noqa: F401
        import lazy_regularization  # noqa: F401
    pool = ThreadPoolExecutor(len(args.sections)) if args.quick else None
    futures = {n: pool.submit(build, n) for n in args.sections if n != "step_speed"} if pool else {}
    for name in args.sections:
        if name not in futures:
            built[name] = build(name)
    for name, future in futures.items():
        built[name] = future.result()
    if pool:
        pool.shutdown()
    bodies = [built[name][0] for name in args.sections]
    failed = any(built[name][1] for name in args.sections)
    lines = ["# Benchmarks", ""]
    if args.note:
        lines += [f"> {args.note}", ""]
    if args.quick:
        lines += ["> `--quick`: tiny settings that exercise every benchmark, the sections side by side; the figures "
                  "mean nothing.", ""]
    lines += [f"- **{k}**: {v}" for k, v in header]
    lines += [f"- **load average (1 min) at the end**: {os.getloadavg()[0]:.2f}",
              f"- **command**: `{command_line('benchmarks/run.py', argv)}`",
              f"- **date**: {date}", ""]
    previous = out.read_text() if out.is_file() else ""
    gpu = gpu_section(previous) or "\n".join([
        GPU_BEGIN, "## GPU", "",
        "Not measured yet: on a CUDA machine `make bench-gpu` (`benchmarks/gpu.py`) runs the CUDA tests and the "
        "precision throughput table and writes this section.", GPU_END])
    # The hand-written methods section: the one in the report being rewritten, else the repository's.
    methods = methods_section(previous) or (methods_section(REPORT.read_text()) if REPORT.is_file() else None)
    tail = gpu + ("\n\n" + methods if methods else "")
    write_atomic(out, "\n".join(lines) + "\n" + "\n\n".join(bodies) + "\n\n" + tail + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return int(failed)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SCRIPTS:
        return run_scripts(argv)
    return report(argv)


if __name__ == "__main__":
    sys.exit(main())
