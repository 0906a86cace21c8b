"""Lazy regularization: what computing R1 on every 16th D step saves in step time and costs in quality.

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", section 3.1) computes its
R1 penalty once every 16 minibatches with the penalty's weight multiplied by 16, so that the regularization
keeps its strength on average while the costly double backward (the gradient of D's input gradient) runs on one
D step in 16; they found no loss in quality. Here ``gan_lightning.objectives.R1(gamma, every=k)`` does the same,
folding the ``k``-weighted penalty into the D loss of every ``k``-th D step (the first included); on the other
steps D's real input does not require grad and no double backward happens. This benchmark compares ``every: 1``
(R1 on every D step) with ``every: 16`` (``--every``) on two experiments:

- ``toy``: ``experiments/toy_ring.yaml`` (MLP G and linear-maxout D on the 8-mode ring, R1 at gamma 0.1 as
  committed, 12,000 steps), judged by its ``ToyMetrics`` (modes captured of 8 and % high quality, PacGAN's
  protocol, on the generator's own samples and, as ``*_refined``, on the samples refined by ``model.refinement``);
- ``default``: ``experiments/cgan_mnist5k.yaml`` (the class-conditional DCGAN, 4,000 steps), which has no R1: the
  benchmark adds ``R1(gamma=0.1)`` (``--gamma``) to its ``ClassLoss`` in ``model.regularizers``; judged by its
  ``ImageMetrics`` (``fid_mnist``: FID on the mnist5k domain classifier's features, not Inception's; conditional
  accuracy; ``intra_fid_mnist``: intra-class FID on the same features).

Two measurements:

1. Step time, in this process: ``Trainer.fit`` of each experiment's networks and recipe built in Python as
   ``benchmarks/step_speed.py`` builds them (logging every 50 steps, divergence guard, no metric callbacks,
   progress bar or checkpoints), ``every=1`` and ``every=16`` side by side, taking turns of 16 iterations
   (``step_speed.Turns``: one runs while the other waits, the order alternating each round, each variant built
   ``--instances`` times afresh with untimed warm-up iterations first). A figure sums 5 consecutive turns, 80
   iterations (``--figure``, a multiple of the R1 interval: every figure of the lazy variant holds exactly 5 R1
   steps whatever its phase; it holds 1 or 2 of the logging steps every 50, the same ones in both variants of a
   round, since both run the same global steps in a round; ``--figure 400`` makes the logging count exact too, at
   five times the time per figure). ms/step is the median over figures; the speed ratio is the median over
   figures of every=1's time divided by every=16's time in the same round (higher: lazy R1 is faster). One torch
   thread (``--threads``).
2. Judged quality: each experiment trained at full length once per variant through the command line (seed 0 as
   committed)::

       python -m gan_lightning fit --config experiments/<name>.yaml --model.regularizers=[..., {class_path:
           gan_lightning.objectives.R1, init_args: {gamma: 0.1, every: K}}] --wandb=disabled --run_dir=<tmp>

   with ``OMP_NUM_THREADS`` set to ``--threads``; the final metrics are read from ``<run_dir>/metrics.json`` and
   the wall time is the whole command (start-up, sample grids and metric evaluations included). The two runs
   of an experiment run at the same time, one per core (``--sequential``: one after the other); the
   experiments one after another, after the step-time measurement. The mnist5k domain classifier of the image
   metrics is trained beforehand when it is not cached (from the embedded digits, as ``make bench`` does).

``--quick`` checks the pipeline in about a minute and a half: 40 toy and 20 default training steps with the
metric callbacks on a short cadence (and 200 samples / 200 reference images for the image metrics), and two
short timing rounds; its figures mean nothing.

    .venv/bin/python benchmarks/lazy_regularization.py [--quick] [--out FILE] [--experiments toy default]
        [--threads 1] [--every 16] [--gamma 0.1] [--turn 16] [--figure 80] [--figures N] [--instances N]
        [--warmup 50] [--sequential] [--skip_timing] [--skip_runs] [--json FILE] [--keep DIR]

The markdown section (``markdown(results)``) is printed, and written to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import yaml  # noqa: E402

from bench_common import REPO, command_line, machine, median, now, subprocess_env, table, write_atomic  # noqa: E402

TITLE = "Lazy regularization (R1 every {every} D steps)"
LOG_EVERY = 50  # the logging cadence of step_speed's trainer (and of fit)
R1_CLASS = "gan_lightning.objectives.R1"


@dataclass(frozen=True)
class Experiment:
    name: str            # as in --experiments and the table
    config: str          # the committed experiment
    callback: str        # its metric callback
    timing_model: str    # step_speed's name for its networks
    batch: int
    quick_steps: int
    quick_callbacks: dict[str, dict[str, Any]]  # class name -> init_args changed in --quick
    figures: int         # default timed figures of the step-time measurement
    instances: int       # default fresh builds of each variant
    metrics: tuple[str, ...]  # the metrics.json keys shown in the table


EXPERIMENTS = {
    "toy": Experiment("toy", "experiments/toy_ring.yaml", "ToyMetrics", "toy", 100, 40,
                      {"ToyMetrics": {"every_n_steps": 20}, "SampleGrid": {"every_n_steps": 20}}, 60, 6,
                      ("modes", "high_quality", "modes_refined", "high_quality_refined")),
    "default": Experiment("default", "experiments/cgan_mnist5k.yaml", "ImageMetrics", "dcgan", 64, 20,
                          {"ImageMetrics": {"every_n_steps": 10, "num_samples": 200, "num_reference": 200},
                           "SampleGrid": {"every_n_steps": 10}}, 15, 3,
                          ("fid_mnist", "accuracy", "intra_fid_mnist")),
}
# Table columns: metrics.json key -> header. Toy: the generator's own samples, then the refined ones (*_refined).
COLUMNS = {"modes": "modes", "high_quality": "high_quality %", "modes_refined": "modes_refined",
           "high_quality_refined": "high_quality_refined %", "fid_mnist": "fid_mnist", "accuracy": "accuracy",
           "intra_fid_mnist": "intra_fid_mnist"}
# --quick: tiny timing settings (one turn per figure).
QUICK_TIMING = {"turn": 16, "figure": 16, "figures": 2, "instances": 1, "warmup": 16}


# ------------------------------------------------------------------------------------------------ step time
def build_gan(experiment: str, every: int, gamma: float, total_steps: int) -> Any:
    """The experiment's networks and recipe as ``benchmarks/step_speed.py`` builds them, with R1 at ``every``."""
    import step_speed as S
    from gan_lightning.objectives.regularizers import R1, ClassLoss
    from gan_lightning.training.system import GAN

    if experiment == "toy":
        g, d = S.toy_nets()
        schedule = S.toy_schedule(total_steps)
        return GAN(g, d, loss="non_saturating", regularizers=[R1(gamma=S.TOY_R1_GAMMA, every=every)],
                   ema_decay=S.TOY_EMA, g_optimizer=S.toy_adam, d_optimizer=S.toy_adam, g_lr_scheduler=schedule,
                   d_lr_scheduler=schedule)
    g, d = S.nets()
    return GAN(g, d, loss="hinge", regularizers=[ClassLoss(weight=S.DEFAULT_CLASS_WEIGHT), R1(gamma=gamma, every=every)],
               ema_decay=S.DEFAULT_EMA, g_optimizer=S.adam, d_optimizer=S.adam)


def runner(experiment: str, every: int, gamma: float, batch: int) -> Callable[[int, Callable[[], None]], None]:
    """``run(iterations, tick)`` as ``step_speed.Turns`` calls it: a fresh GAN fitted for ``iterations`` steps."""
    import step_speed as S

    def run(iterations: int, tick: Callable[[], None]) -> None:
        data = S.toy_data(batch) if experiment == "toy" else S.data(batch)
        S._trainer(iterations, S._Ticks(tick)).fit(build_gan(experiment, every, gamma, iterations), data)

    return run


def measure_steps(experiment: str, every: int, gamma: float, turn: int = 16, figure: int = 80,
                  figures: Optional[int] = None, instances: Optional[int] = None, warmup: int = 50) -> dict[str, Any]:
    """Seconds per iteration of ``every=1`` and ``every=<every>`` in every figure: ``times[k][figure]``."""
    import step_speed as S

    exp = EXPERIMENTS[experiment]
    if turn < 1 or figure % turn or figure % every:
        raise ValueError(f"--figure ({figure}) must be a multiple of the turn ({turn}) and of --every ({every})")
    figures = figures or exp.figures
    instances = max(1, min(instances or exp.instances, figures))
    group = figure // turn
    runners = {k: runner(experiment, k, gamma, exp.batch) for k in (1, every)}
    turns = S.Turns(runners, turn, warmup, figures * group, instances, unit=group).run()
    times = {k: [sum(v[i:i + group]) / group for i in range(0, len(v), group)] for k, v in turns.items()}
    return {"turn": turn, "figure": figure, "figures": figures, "instances": instances, "warmup": warmup,
            "batch": exp.batch, "times": times}


def step_summary(timing: dict[str, Any]) -> dict[int, tuple[float, float]]:
    """Per variant: (median ms/step, median per-figure speed vs every=1)."""
    base = timing["times"][1]
    return {k: (1000 * median(v), median([b / t for b, t in zip(base, v)])) for k, v in timing["times"].items()}


# ------------------------------------------------------------------------------------------------ quality runs
def regularizers_arg(exp: Experiment, every: int, gamma: float) -> str:
    """``--model.regularizers=[...]``: the committed list with R1's ``every`` set, or with ``R1(gamma)`` added."""
    config = yaml.safe_load((REPO / exp.config).read_text())
    regs = copy.deepcopy(config.get("model", {}).get("regularizers") or [])
    found = False
    for reg in regs:
        if reg.get("class_path") in (R1_CLASS, "gan_lightning.objectives.regularizers.R1"):
            reg["init_args"] = {**(reg.get("init_args") or {}), "every": every}
            found = True
    if not found:
        regs.append({"class_path": R1_CLASS, "init_args": {"gamma": gamma, "every": every}})
    flow = yaml.safe_dump(regs, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return f"--model.regularizers={flow}"


def quick_overlay(exp: Experiment) -> dict[str, Any]:
    """A config merged after the experiment's in --quick: its callbacks on a short cadence."""
    config = yaml.safe_load((REPO / exp.config).read_text())
    callbacks = []
    for c in config["trainer"]["callbacks"]:
        c = copy.deepcopy(c)
        changes = exp.quick_callbacks.get(c["class_path"].rsplit(".", 1)[-1])
        if changes:
            c["init_args"] = {**(c.get("init_args") or {}), **changes}
        callbacks.append(c)
    return {"trainer": {"callbacks": callbacks}}


def committed_steps(exp: Experiment) -> int:
    return int(yaml.safe_load((REPO / exp.config).read_text())["trainer"]["max_steps"])


def train(exp: Experiment, every: int, gamma: float, workdir: Path, threads: int, quick: bool) -> dict[str, Any]:
    """One full training run through the CLI; its final metrics, wall seconds and command."""
    run_dir = workdir / f"{exp.name}-every{every}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the CLI refuses to overwrite a run directory's config.yaml
    cmd = [sys.executable, "-m", "gan_lightning", "fit", "--config", exp.config]
    if quick:
        overlay = workdir / f"{exp.name}-quick.yaml"
        overlay.write_text(yaml.safe_dump(quick_overlay(exp), sort_keys=False))
        cmd += ["--config", str(overlay), f"--trainer.max_steps={exp.quick_steps}"]
    cmd += [regularizers_arg(exp, every, gamma), "--wandb=disabled", f"--run_dir={run_dir}"]
    log = workdir / f"{exp.name}-every{every}.log"
    print(f"# {exp.name} every={every}: training ({shlex.join(cmd[1:])}) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(cmd, cwd=REPO, env=subprocess_env(threads), stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    shown = " ".join(shlex.quote(a) for a in ["python", *cmd[1:]]).replace(str(workdir), "<tmp>")
    result: dict[str, Any] = {"every": every, "wall_s": wall, "command": shown, "rc": rc}
    metrics = run_dir / "metrics.json"
    if rc == 0 and metrics.is_file():
        result["metrics"] = json.loads(metrics.read_text())
    else:
        text = log.read_text(errors="replace").replace("\r", "\n").strip().splitlines()
        result["error"] = "\n".join(text[-8:])
        print(f"# {exp.name} every={every}: FAILED (exit {rc}):\n{result['error']}", file=sys.stderr, flush=True)
    print(f"# {exp.name} every={every}: {wall:.1f} s, {result.get('metrics')}", file=sys.stderr, flush=True)
    return result


def train_pair(exp: Experiment, every: int, gamma: float, workdir: Path, threads: int, quick: bool,
               parallel: bool) -> dict[int, dict[str, Any]]:
    """The every=1 and every=<every> runs of one experiment, at the same time with ``parallel``."""
    variants = (1, every)
    if parallel:
        with ThreadPoolExecutor(len(variants)) as pool:
            done = list(pool.map(lambda k: train(exp, k, gamma, workdir, threads, quick), variants))
    else:
        done = [train(exp, k, gamma, workdir, threads, quick) for k in variants]
    return dict(zip(variants, done))


# ------------------------------------------------------------------------------------------------ output
def _value(key: str, metrics: dict[str, Any]) -> str:
    value = metrics.get(key)
    if value is None:
        return "inf" if key in metrics and key.startswith(("fid", "intra_fid")) else "—"
    value = float(value)
    if not math.isfinite(value):
        return "inf"
    if key.startswith("modes"):
        return f"{value:.0f}"
    if key.startswith("high_quality"):
        return f"{value:.2f}"
    if key == "accuracy":
        return f"{100 * value:.1f}%"
    return f"{value:.2f}"


def markdown(results: dict[str, Any], standalone: bool = True) -> str:
    """The section: title and machine lines (``standalone``; ``benchmarks/run.py`` writes its own), the method,
    the table and notes."""
    every = results["every"]
    names = [n for n in EXPERIMENTS if n in results["runs"] or n in results["timing"]]
    keys = [k for k in COLUMNS if any(k in EXPERIMENTS[n].metrics for n in names)]
    lines = []
    if standalone:
        lines += [f"## {TITLE.format(every=every)}", ""]
        lines += [f"- **{k}**: {v}" for k, v in results["machine"]]
        if "load_end" in results:
            lines.append(f"- **load average (1 min) at the end**: {results['load_end']:.2f}")
        lines += [f"- **command**: `{results['command']}`", f"- **date**: {results['date']}", ""]
    if results.get("quick"):
        lines += ["> `--quick`: a few steps of everything to check the pipeline; the figures mean nothing.", ""]

    timing = [(n, results["timing"][n]) for n in names if results["timing"].get(n)]
    if timing:
        t0 = timing[0][1]
        same = all((t["turn"], t["figure"], t["warmup"]) == (t0["turn"], t0["figure"], t0["warmup"]) for _, t in timing)
        per = "; ".join(f"{n}: {t['figures']} figures, each variant built {t['instances']} time(s) afresh, batch "
                        f"{t['batch']}" for n, t in timing)
        shape = (f"turns of {t0['turn']} iterations, figures of {t0['figure']}, {t0['warmup']} warm-up iterations per "
                 f"build" if same else "turns, figures and warm-up as in the raw results")
        step_time = (f"**Step time**: `Trainer.fit` of each experiment's networks in one process (built as "
                     f"`benchmarks/step_speed.py` builds them, no metric callbacks), the two variants taking turns in "
                     f"alternating order ({shape}; {per}), {results['threads']} torch thread(s); ms / step is the "
                     f"median over figures, the speed the median over figures of every=1's time / every={every}'s "
                     f"(higher: lazy is faster). ")
    else:
        step_time = "**Step time**: not measured (`--skip_timing`). "
    runs_desc = []
    for n in names:
        steps = next((v["metrics"].get("step") for v in results["runs"].get(n, {}).values() if "metrics" in v), None)
        runs_desc.append(f"{n} {steps:,} steps" if isinstance(steps, int) else n)
    example = next((v["command"] for n in names for v in results["runs"].get(n, {}).values()), None)
    parallel = ("the two runs of an experiment at the same time, one per core" if results.get("parallel", True)
                else "the two runs of an experiment one after the other")
    length = "shortened by `--quick`" if results.get("quick") else "full length"
    quality_text = (f"**Quality**: one training run per variant through the CLI ({length}: {', '.join(runs_desc)}; seed 0; "
                    f"`OMP_NUM_THREADS={results['threads']}`; {parallel}), the final values of its `metrics.json` "
                    f"and the whole command's wall time (start-up and metric evaluations included), single runs, not "
                    f"medians: `{example}`." if example else "**Quality**: not measured (`--skip_runs`).")
    lines.append(
        f"R1 on every D step (`every: 1`) against StyleGAN2's lazy R1 (`every: {every}`: the penalty on every "
        f"{every}th D step, its weight times {every}), gamma {results.get('gamma_toy', 0.1)} on the toy ring as "
        f"committed and `R1(gamma={results.get('gamma', 0.1)})` added to the default experiment's `ClassLoss` "
        f"(`experiments/toy_ring.yaml`, `experiments/cgan_mnist5k.yaml`). " + step_time + quality_text)
    lines.append("")
    lines.append("Toy: `modes` (of 8) and `high_quality` are of the generator's own samples, `modes_refined` and "
                 "`high_quality_refined` of the samples refined by `model.refinement`; default: `fid_mnist` is FID "
                 "on the mnist5k domain classifier's features (not Inception's, not comparable with published "
                 "FIDs), `accuracy` the conditional accuracy, `intra_fid_mnist` the mean per-class FID on the same "
                 "features. `benchmarks/lazy_regularization.py`.")
    lines.append("")

    rows = []
    for n in names:
        t = results["timing"].get(n)
        speeds = step_summary(t) if t else {}
        for k in (1, every):
            ms, speed = speeds.get(k, (None, None))
            run = results["runs"].get(n, {}).get(k, {})
            if "metrics" in run:
                quality = [_value(key, run["metrics"]) if key in EXPERIMENTS[n].metrics else "—" for key in keys]
            elif run:
                quality = [f"failed (exit {run.get('rc')})" if key in EXPERIMENTS[n].metrics else "—" for key in keys]
            else:
                quality = ["—"] * len(keys)
            rows.append((n, k, "—" if ms is None else f"{ms:.2f}", "—" if speed is None else f"{speed:.3f}x",
                         *quality, f"{run['wall_s']:.1f}" if "wall_s" in run else "—"))
    lines.append(table(["experiment", "every", "ms / step", "speed vs every=1", *(COLUMNS[k] for k in keys),
                        "run wall s"], rows))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/lazy_regularization.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps of everything (pipeline check; figures mean nothing)")
    p.add_argument("--out", default=None, help="write the markdown section to this file")
    p.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    p.add_argument("--threads", type=int, default=1, help="torch threads here and OMP_NUM_THREADS of the runs")
    p.add_argument("--every", type=int, default=16, help="the lazy R1 interval compared with every=1 (StyleGAN2: 16)")
    p.add_argument("--gamma", type=float, default=0.1, help="R1's gamma where the benchmark adds R1 (default experiment)")
    p.add_argument("--turn", type=int, default=16, help="iterations per turn of the step-time measurement")
    p.add_argument("--figure", type=int, default=80, help="iterations per figure: a multiple of --turn and --every "
                   "(400: also of the logging cadence of 50)")
    p.add_argument("--figures", type=int, default=None, help="timed figures per experiment (default: toy 60, default 15)")
    p.add_argument("--instances", type=int, default=None, help="fresh builds of each variant (default: toy 6, default 3)")
    p.add_argument("--warmup", type=int, default=50, help="untimed iterations of every instance first")
    p.add_argument("--sequential", action="store_true", help="the two runs of an experiment one after the other")
    p.add_argument("--skip_timing", action="store_true", help="the training runs only")
    p.add_argument("--skip_runs", action="store_true", help="the step-time measurement only")
    p.add_argument("--json", default=None, help="also write the raw results as JSON")
    p.add_argument("--keep", default=None, help="keep the run directories and logs under this folder")
    return p


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    import torch

    if args.every < 2:
        raise SystemExit("--every must be >= 2 (it is compared with every=1)")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    quiet()
    timing_opts = dict(turn=args.turn, figure=args.figure, figures=args.figures, instances=args.instances,
                       warmup=args.warmup)
    if args.quick:
        timing_opts.update(QUICK_TIMING)
    toy_gamma = next((float((r.get("init_args") or {}).get("gamma", 10.0))
                      for r in yaml.safe_load((REPO / EXPERIMENTS["toy"].config).read_text())["model"]["regularizers"]
                      if r.get("class_path") == R1_CLASS), None)
    results: dict[str, Any] = {"every": args.every, "gamma": args.gamma, "gamma_toy": toy_gamma,
                               "threads": args.threads, "quick": args.quick, "parallel": not args.sequential,
                               "machine": machine(args.threads), "date": now(),
                               "command": command_line("benchmarks/lazy_regularization.py", argv),
                               "timing": {}, "runs": {}}
    started = time.perf_counter()
    if not args.skip_timing:
        for name in args.experiments:
            print(f"# step time: {name}, every=1 vs every={args.every} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            results["timing"][name] = measure_steps(name, args.every, args.gamma, **timing_opts)
            summary = step_summary(results["timing"][name])
            print(f"# step time: {name}: {summary} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if not args.skip_runs:
        if "default" in args.experiments:
            # The image metrics' domain classifier is trained once and cached (from the embedded digits): train it
            # now if it is missing, so that its training counts in neither run (as benchmarks/time_to_quality.py).
            from gan_lightning.metrics.classifier import get_classifier

            get_classifier("mnist5k")
        workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lazy_regularization_"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            for name in args.experiments:
                results["runs"][name] = train_pair(EXPERIMENTS[name], args.every, args.gamma, workdir, args.threads,
                                                   args.quick, not args.sequential)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    results["load_end"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started
    return results


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    results = run_all(args, argv)
    text = markdown(results)
    print(text, flush=True)
    if args.out:
        write_atomic(Path(args.out), text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        write_atomic(Path(args.json), json.dumps(results, indent=2, default=str) + "\n")
    print(f"# lazy_regularization: {results['seconds']:.0f} s in all", file=sys.stderr)
    failed = any("error" in r for runs in results["runs"].values() for r in runs.values())
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
