"""Time to quality: the quality metrics of a committed experiment against training wall time, and the metric
callback's share of that time.

- ``toy_grid``: ``experiments/toy_grid.yaml`` with ``ToyMetrics`` every ``--toy_every`` steps: modes captured
  (of 25) and % high quality (PacGAN protocol, 2,500 samples of the EMA generator, refined by the experiment's
  ``model.refinement``: ``val/modes_refined``, ``val/high_quality_refined``);
- ``cgan_mnist5k`` (the default experiment): ``ImageMetrics`` every ``--cgan_every`` steps: FID on the mnist5k
  domain classifier's features (``val/fid_mnist``, not Inception's) and conditional accuracy (the classifier's
  class of a sample is the one it was drawn for).

Each run is the committed experiment with these changes only: the metric callback's cadence (and, for short
runs, its sample counts), ``--trainer.max_steps``, a CSV logger writing ``<run_dir>/metrics.csv`` (W&B off), and
two benchmark callbacks from ``bench_callbacks``: ``FirstStepClock`` (start-up) and ``MetricTimer`` (the time spent
in the metric callback's hooks, written to ``<run_dir>/metric_timing.json``). The curves read ``val/*`` from
``metrics.csv``; the time of an evaluation is when it started in wall seconds since fit started (``MetricTimer``,
the clock of ``progress/seconds``; without it, ``progress/seconds`` of the log interpolated at the evaluation's
step). The mnist5k domain classifier of the metrics is trained beforehand when it is not cached; the first
evaluation of a run also computes the reference features when they are not cached. Plots go to ``--results`` as PNG.

    .venv/bin/python benchmarks/time_to_quality.py [--experiments toy_grid cgan_mnist5k] [--toy_steps N]
        [--toy_every 1000] [--cgan_steps N] [--cgan_every 1000] [--threads 1] [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from bench_callbacks import first_step_time  # noqa: E402  (same folder)
from bench_common import REPO, RESULTS, subprocess_env, table  # noqa: E402


@dataclass
class Experiment:
    name: str
    config: str
    callback: str                  # class name of the metric callback whose cadence is set
    metrics: tuple[str, str]       # the two val/* series plotted
    labels: tuple[str, str]
    title: str
    limits: tuple[Optional[tuple[float, float]], Optional[tuple[float, float]]] = (None, None)  # y ranges


EXPERIMENTS = {
    "toy_grid": Experiment("toy_grid", "experiments/toy_grid.yaml", "ToyMetrics",
                           ("val/modes_refined", "val/high_quality_refined"),
                           ("modes captured (of 25), refined samples", "high quality (%), refined samples"),
                           "toy grid: modes and high quality", ((0, 25.5), (0, 100))),
    "cgan_mnist5k": Experiment("cgan_mnist5k", "experiments/cgan_mnist5k.yaml", "ImageMetrics",
                               ("val/fid_mnist", "val/accuracy"),
                               ("FID on mnist5k classifier features", "conditional accuracy (%)"),
                               "cgan_mnist5k: FID and conditional accuracy", (None, (0, 100))),
}
# The targets the README states: toy grid 25 of 25 modes at >= 97% high quality (of the experiment's samples,
# which it refines); conditional accuracy >= 98%.
TARGETS = {"toy_grid": "modes = 25 and high quality >= 97%", "cgan_mnist5k": "accuracy >= 98%"}


def reached(name: str, values: dict[str, float]) -> bool:
    if name == "toy_grid":
        return values.get("val/modes_refined", 0) >= 25 and values.get("val/high_quality_refined", 0) >= 97
    return values.get("val/accuracy", 0) >= 0.98


def committed_steps(exp: Experiment) -> int:
    """The experiment's own ``trainer.max_steps``."""
    return int(yaml.safe_load((REPO / exp.config).read_text())["trainer"]["max_steps"])


@dataclass
class RunResult:
    experiment: Experiment
    command: str
    steps: int
    every: int
    committed_every: int
    wall_seconds: float
    first_step_seconds: Optional[float]
    points: list[dict[str, float]] = field(default_factory=list)  # {"step", "seconds", "val/...": value}
    timing: dict[str, Any] = field(default_factory=dict)
    plot: Optional[Path] = None


def csv_logger_args(run_dir: Path) -> list[str]:
    """A CSV logger writing ``<run_dir>/metrics.csv``."""
    return ["--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run_dir}",
            "--trainer.logger.init_args.name=", "--trainer.logger.init_args.version="]


def overlay(exp: Experiment, every: int, metric_args: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A config merged after the experiment's: its callbacks with the metric callback's cadence (and
    ``metric_args``) changed and the benchmark callbacks appended; and the committed cadence."""
    with open(REPO / exp.config) as f:
        config = yaml.safe_load(f)
    callbacks = [dict(c) for c in config["trainer"]["callbacks"]]
    committed = None
    for c in callbacks:
        if c["class_path"].rsplit(".", 1)[-1] == exp.callback:
            init = dict(c.get("init_args") or {})
            committed = int(init.get("every_n_steps", 1000))
            init.update(every_n_steps=every, **metric_args)
            c["init_args"] = init
    if committed is None:
        raise ValueError(f"{exp.config} has no {exp.callback} callback")
    callbacks += [{"class_path": "bench_callbacks.FirstStepClock"}, {"class_path": "bench_callbacks.MetricTimer"}]
    return {"trainer": {"callbacks": callbacks}}, committed


def read_metrics_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Lightning's CSV log as ``{column: (steps, values)}``, rows without a value left out, sorted by step."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    series: dict[str, dict[float, float]] = {}
    for row in rows:
        step = row.get("step")
        if not step:
            continue
        for key, value in row.items():
            if key in ("step", "epoch") or value in (None, ""):
                continue
            try:
                series.setdefault(key, {})[float(step)] = float(value)
            except ValueError:
                continue
    return {k: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)])) for k, v in series.items()}


def curve_points(series: dict[str, tuple[np.ndarray, np.ndarray]], metrics: tuple[str, ...],
                 evaluations: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One point per evaluation step: the step, the training seconds, and the metrics. The seconds are when the
    evaluation started (``MetricTimer``; the last one at a step, whose values the log keeps), else
    ``progress/seconds`` interpolated at the step."""
    started = {float(e["step"]): float(e["start"]) for e in evaluations}
    progress = series.get("progress/seconds")
    steps = sorted({float(s) for m in metrics if m in series for s in series[m][0]})
    points = []
    for s in steps:
        seconds = started.get(s, float(np.interp(s, *progress)) if progress is not None else math.nan)
        point = {"step": s, "seconds": seconds}
        for m in metrics:
            if m in series:
                idx = np.nonzero(series[m][0] == s)[0]
                if len(idx):
                    point[m] = float(series[m][1][idx[-1]])
        points.append(point)
    return points


def run(exp: Experiment, workdir: Path, steps: int, every: int, metric_args: dict[str, Any], threads: int,
        python: str = sys.executable) -> RunResult:
    """Train the experiment once; raise with the log's tail when the run fails."""
    run_dir = workdir / exp.name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    extra, committed = overlay(exp, every, metric_args)
    overlay_path = workdir / f"{exp.name}-benchmark.yaml"
    overlay_path.write_text(yaml.safe_dump(extra, sort_keys=False))
    cmd = [python, "-m", "gan_lightning", "fit", "--config", exp.config, "--config", str(overlay_path),
           f"--trainer.max_steps={steps}", "--wandb=disabled", f"--run_dir={run_dir}", *csv_logger_args(run_dir)]
    log = workdir / f"{exp.name}.log"
    start = time.time()
    t0 = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(cmd, cwd=REPO, env=subprocess_env(threads), stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if rc != 0:
        tail = "\n".join(text.replace("\r", "\n").strip().splitlines()[-8:])
        raise RuntimeError(f"{exp.name}: `{shlex.join(cmd)}` exited with {rc}:\n{tail}")
    first = first_step_time(text)
    series = read_metrics_csv(run_dir / "metrics.csv")
    timing = json.loads((run_dir / "metric_timing.json").read_text())
    shown = " ".join(shlex.quote(a) for a in ["python", *cmd[1:]]).replace(str(workdir), "<tmp>")
    return RunResult(exp, shown, steps, every, committed, wall, None if first is None else first - start,
                     curve_points(series, exp.metrics, timing.get("evaluations", [])), timing)


# ---------------------------------------------------------------------------------------------------- output
def _percent(metric: str, value: float) -> float:
    return 100 * value if metric == "val/accuracy" else value


def plot(result: RunResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp = result.experiment
    fig, left = plt.subplots(figsize=(7, 4), dpi=100)
    right = left.twinx()
    x = [p["seconds"] for p in result.points]
    for axis, metric, label, color, marker, limits in (
            (left, exp.metrics[0], exp.labels[0], "tab:blue", "o", exp.limits[0]),
            (right, exp.metrics[1], exp.labels[1], "tab:orange", "s", exp.limits[1])):
        xs = [xi for xi, p in zip(x, result.points) if metric in p]
        ys = [_percent(metric, p[metric]) for p in result.points if metric in p]
        ys = [y if math.isfinite(y) else math.nan for y in ys]
        axis.plot(xs, ys, marker=marker, color=color, label=label)
        axis.set_ylabel(label, color=color)
        if limits is not None:
            axis.set_ylim(*limits)
    left.set_xlabel("training wall time (s since fit started)")
    left.set_title(f"{exp.title} ({result.steps:,} steps, every {result.every:,})")
    left.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    result.plot = path
    return path


def time_to_target(result: RunResult) -> Optional[dict[str, float]]:
    for p in result.points:
        if reached(result.experiment.name, p):
            return p
    return None


def _fmt(metric: str, value: Optional[float]) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "inf"
    if metric == "val/accuracy":
        return f"{100 * value:.1f}%"
    if metric.startswith("val/high_quality"):
        return f"{value:.2f}%"
    if metric.startswith("val/modes"):
        return f"{value:.0f}"
    return f"{value:.2f}"


def curve_markdown(result: RunResult, report_dir: Path) -> str:
    exp = result.experiment
    rows = [(f"{p['step']:,.0f}", f"{p['seconds']:.1f}", *(_fmt(m, p.get(m)) for m in exp.metrics))
            for p in result.points]
    hit = time_to_target(result)
    target = (f"first evaluation meeting the target ({TARGETS[exp.name]}): step {hit['step']:,.0f}, "
              f"{hit['seconds']:.1f} s of training" if hit else f"target ({TARGETS[exp.name]}) not reached in this run")
    startup = f"{result.first_step_seconds:.1f} s" if result.first_step_seconds is not None else "not measured"
    link = os.path.relpath(result.plot, report_dir) if result.plot else None
    return "\n".join([
        f"Command: `{result.command}`",
        "",
        f"Whole command {result.wall_seconds:.1f} s; from the command to the first training step {startup}. "
        f"{target}.",
        "",
        table(["step", "training s", *(m.replace("val/", "") for m in exp.metrics)], rows),
        "",
        f"![{exp.title}]({link})" if link else "",
    ])


def share(result: RunResult) -> dict[str, float]:
    """The metric callback's seconds and share of fit time, measured and projected to the committed cadence."""
    t = result.timing
    evaluations = t.get("evaluations", [])
    metric, fit = float(t["metric_seconds"]), float(t["fit_seconds"])
    per_eval = (sum(e["seconds"] for e in evaluations) / len(evaluations)) if evaluations else 0.0
    committed_count = result.steps // result.committed_every + 1  # the cadence's evaluations and the final one
    projected = per_eval * committed_count
    train_only = fit - metric
    return {"evaluations": len(evaluations), "per_eval": per_eval, "metric": metric, "fit": fit,
            "share": metric / fit if fit else math.nan, "committed_count": committed_count,
            "projected_share": projected / (train_only + projected) if train_only + projected else math.nan}


def share_markdown(results: list[RunResult]) -> str:
    rows = []
    for r in results:
        s = share(r)
        rows.append((r.experiment.name, r.experiment.callback, f"{r.every:,}", s["evaluations"], f"{s['per_eval']:.2f}",
                     f"{s['metric']:.1f}", f"{s['fit']:.1f}", f"{100 * s['share']:.1f}%",
                     f"{100 * s['projected_share']:.1f}% (every {r.committed_every:,}: {s['committed_count']} evaluation(s))"))
    return table(["experiment", "callback", "every (steps)", "evaluations", "s per evaluation (mean)",
                  "metric s", "fit s", "share of fit time",
                  "projected share at the experiment's own cadence"], rows)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--toy_steps", type=int, default=None, help="default: the experiment's max_steps")
    parser.add_argument("--toy_every", type=int, default=1000)
    parser.add_argument("--cgan_steps", type=int, default=None, help="default: the experiment's max_steps")
    parser.add_argument("--cgan_every", type=int, default=1000)
    parser.add_argument("--cgan_samples", type=int, default=None, help="ImageMetrics num_samples (default: the experiment's)")
    parser.add_argument("--cgan_reference", type=int, default=None, help="ImageMetrics num_reference (default: the experiment's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(RESULTS), help="folder of the PNG plots")
    parser.add_argument("--keep", default=None, help="keep the run directories under this folder")
    args = parser.parse_args(argv)
    results = run_all(args)
    out = Path(args.results)
    for r in results:
        print(f"\n### {r.experiment.title}\n\n" + curve_markdown(r, out))
    print("\n" + share_markdown(results))
    return 0


def run_all(args: argparse.Namespace, side_by_side: bool = False) -> list[RunResult]:
    """The experiments of ``args``, one after another (or all at once with ``side_by_side``, which only checks
    the pipeline: the runs then share the cores), plotted into ``args.results``."""
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="time_to_quality_"))
    workdir.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> RunResult:
        exp = EXPERIMENTS[name]
        if name == "toy_grid":
            steps, every, extra = args.toy_steps or committed_steps(exp), args.toy_every, {}
        else:
            steps, every = args.cgan_steps or committed_steps(exp), args.cgan_every
            extra = {k: v for k, v in (("num_samples", args.cgan_samples), ("num_reference", args.cgan_reference))
                     if v is not None}
        print(f"# {name}: {steps} steps, {exp.callback} every {every} ...", file=sys.stderr, flush=True)
        return run(exp, workdir, steps, every, extra, args.threads)

    if "cgan_mnist5k" in args.experiments:
        # The domain classifier of the metrics is trained once and cached; train it now if it is missing, so that
        # its training does not count in the run.
        from gan_lightning.metrics.classifier import get_classifier

        get_classifier("mnist5k")
    try:
        if side_by_side:
            with ThreadPoolExecutor(len(args.experiments)) as pool:
                results = list(pool.map(one, args.experiments))
        else:
            results = [one(name) for name in args.experiments]
        for result in results:
            plot(result, Path(args.results) / f"{result.experiment.name}_quality_vs_time.png")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
