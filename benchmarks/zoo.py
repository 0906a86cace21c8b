"""The model zoo at equal CPU time: each architecture trained class-conditionally on the embedded 5,000-digit MNIST
subset for the same wall-clock budget, then judged by the same metrics.

Architectures (``--archs``), each its committed class-conditional experiment on the embedded digits:

- ``dcgan``: ``experiments/cgan_mnist5k.yaml`` (the default experiment: DCGAN with conditional BN in G, a
  spectral-norm projection D with an auxiliary class head);
- ``sngan``: ``experiments/sngan_mnist5k.yaml`` (SNGAN's ResNet G with conditional BN and spectral-norm ResNet D
  with projection, Miyato & Koyama 2018, narrowed for a CPU);
- ``biggan``: ``experiments/biggan_mnist5k.yaml`` (Brock et al. 2019);
- ``stylegan2``: ``experiments/stylegan2_mnist5k.yaml`` (Karras et al. 2020, class-conditional as StyleGAN2-ADA);
- ``r3gan``: ``experiments/r3gan_mnist5k.yaml`` (Huang et al. 2024).

Each one is trained through the command line, one after another (never side by side), with ``OMP_NUM_THREADS`` =
``--threads`` (1)::

    python -m gan_lightning fit --config experiments/<name>.yaml --config <overlay> --trainer.max_time=00:00:04:00
        --trainer.max_steps=-1 --trainer.accelerator=cpu --wandb=disabled --run_dir=<tmp>/<arch>

Lightning's ``max_time`` stops training after the first step that ends past the budget (``--budget_minutes``,
default 4), which it counts from the start of training, so start-up and data loading are outside it. The overlay
replaces the experiment's callbacks with a sample grid at the end only (no metric callback spends the budget) and
``BudgetClock``, which writes the networks' parameter counts, the generator steps reached and the seconds from
the start to the end of training to ``<run_dir>/zoo_clock.json``. Everything else is the experiment's own:
networks, loss, regularizers, optimizers, batch size, D steps per G step, EMA (an EMA that starts averaging later
than the run reaches, ``model.ema_start``, is still a copy of G: the table says so). One generator step is
``n_critic`` D steps and one G step.

The final EMA generator (``<run_dir>/checkpoints/last.ckpt``) is then judged as ``python -m gan_lightning evaluate
--ckpt_path <run_dir>/checkpoints/last.ckpt --num N --metrics [fid,accuracy]`` judges it (its function is called
in this process): ``fid_mnist`` is FID on the features of the mnist5k domain classifier (not Inception's, not
comparable with published FIDs) between ``--num`` samples (default 5000, seed 0, classes in turn) and the
embedded digits; ``accuracy`` is the conditional accuracy (the classifier's class of a sample is the one it was
drawn for). The domain classifier is trained beforehand when it is not cached.

``--quick`` checks the pipeline in about a minute: a budget of 2 seconds per architecture, 200 samples against 500
reference digits; its figures mean nothing.

    .venv/bin/python benchmarks/zoo.py [--budget_minutes 4] [--num 5000] [--archs dcgan sngan biggan stylegan2 r3gan]
        [--quick] [--out FILE.md] [--threads 1] [--keep DIR]

The Markdown is printed; it is written to ``--out`` (default ``benchmarks/results/zoo.md``) with the raw results
beside it (same name, ``.json``) and each architecture's final sample grid (``<stem>_<arch>.png``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import lightning.pytorch as pl  # noqa: E402
import yaml  # noqa: E402

from bench_common import REPO, RESULTS, command_line, machine, now, subprocess_env, table, write_atomic  # noqa: E402

TITLE = "Model zoo at equal CPU time ({budget} per architecture)"
CLOCK_FILE = "zoo_clock.json"
QUICK_BUDGET_S = 2
QUICK_NUM = 200
QUICK_REFERENCE = 500


@dataclass(frozen=True)
class Arch:
    name: str    # as in --archs and the table
    config: str  # the committed experiment
    what: str    # one line for the table


ARCHS = {
    "dcgan": Arch("dcgan", "experiments/cgan_mnist5k.yaml", "DCGAN, conditional BN / projection + class head"),
    "sngan": Arch("sngan", "experiments/sngan_mnist5k.yaml", "SNGAN ResNet, conditional BN / projection"),
    "biggan": Arch("biggan", "experiments/biggan_mnist5k.yaml", "BigGAN, shared embedding + hier. z / projection"),
    "stylegan2": Arch("stylegan2", "experiments/stylegan2_mnist5k.yaml",
                      "StyleGAN2, label embedding / mapped projection"),
    "r3gan": Arch("r3gan", "experiments/r3gan_mnist5k.yaml", "R3GAN, class embedding / projection"),
}


class BudgetClock(pl.Callback):
    """Writes ``<run dir>/zoo_clock.json`` when training ends: the generator's and the discriminator's parameter
    counts, the generator steps reached, and the seconds from the start to the end of training (the span
    Lightning's ``max_time`` counts; the final sample grid and checkpoint come after it)."""

    def __init__(self) -> None:
        self.start: Optional[float] = None
        self.params: dict[str, int] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.start = time.perf_counter()
        self.params = {"g_params": sum(p.numel() for p in pl_module.generator.parameters()),
                       "d_params": sum(p.numel() for p in pl_module.discriminator.parameters())}

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero or self.start is None:
            return
        clock = {**self.params, "steps": int(trainer.global_step), "train_seconds": time.perf_counter() - self.start}
        with open(os.path.join(trainer.default_root_dir, CLOCK_FILE), "w") as f:
            json.dump(clock, f, indent=2)


# ------------------------------------------------------------------------------------------------ runs
def max_time(seconds: int) -> str:
    """Lightning's ``max_time`` string ``DD:HH:MM:SS`` of a whole number of seconds."""
    if seconds < 1:
        raise ValueError("the budget must be at least one second")
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def recipe(arch: Arch) -> dict[str, Any]:
    """What the experiment fixes that the table shows: batch size, D steps per G step, when the EMA starts."""
    config = yaml.safe_load((REPO / arch.config).read_text())
    model, data = config.get("model") or {}, (config.get("data") or {}).get("init_args") or {}
    return {"batch": int(data.get("batch_size", 64)), "n_critic": int(model.get("n_critic", 1)),
            "ema_start": int(model.get("ema_start", 0))}


def overlay() -> dict[str, Any]:
    """The config merged after the experiment's: its callbacks replaced by ``BudgetClock`` (first, so that its
    clock stops before the others' end-of-training work) and a sample grid at the end only."""
    return {"trainer": {"callbacks": [{"class_path": "zoo.BudgetClock"},
                                      {"class_path": "gan_lightning.metrics.SampleGrid",
                                       "init_args": {"every_n_steps": 0}}]}}


def train(arch: Arch, budget_s: int, workdir: Path, threads: int) -> dict[str, Any]:
    """One training run of ``arch`` through the CLI for ``budget_s`` seconds; what it reached, or its error."""
    run_dir = workdir / arch.name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the CLI refuses to overwrite a run directory's config.yaml
    extra = workdir / "zoo-overlay.yaml"
    extra.write_text(yaml.safe_dump(overlay(), sort_keys=False))
    cmd = [sys.executable, "-m", "gan_lightning", "fit", "--config", arch.config, "--config", str(extra),
           f"--trainer.max_time={max_time(budget_s)}", "--trainer.max_steps=-1", "--trainer.accelerator=cpu",
           "--wandb=disabled", f"--run_dir={run_dir}"]
    shown = " ".join(shlex.quote(a) for a in ["python", *cmd[1:]]).replace(str(workdir), "<tmp>")
    print(f"# {arch.name}: training for {budget_s} s ({shown}) ...", file=sys.stderr, flush=True)
    log = workdir / f"{arch.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(cmd, cwd=REPO, env=subprocess_env(threads), stdout=out, stderr=subprocess.STDOUT)
    result: dict[str, Any] = {"arch": arch.name, "config": arch.config, **recipe(arch), "command": shown, "rc": rc,
                              "wall_s": time.perf_counter() - t0, "run_dir": str(run_dir)}
    clock, ckpt = run_dir / CLOCK_FILE, run_dir / "checkpoints" / "last.ckpt"
    if rc == 0 and clock.is_file() and ckpt.is_file():
        result.update(json.loads(clock.read_text()))
        result["ckpt"] = str(ckpt)
        grids = sorted((run_dir / "samples").glob("step_*.png"))
        if grids:
            result["grid"] = str(grids[-1])
    else:
        lines = log.read_text(errors="replace").replace("\r", "\n").strip().splitlines()
        result["error"] = "\n".join(lines[-8:])
        print(f"# {arch.name}: FAILED (exit {rc}):\n{result['error']}", file=sys.stderr, flush=True)
    return result


def evaluate(ckpt: str, num: int, num_reference: Optional[int], out: Path) -> dict[str, Any]:
    """``python -m gan_lightning evaluate --ckpt_path CKPT --num NUM --metrics [fid,accuracy]`` in this process
    (its JSON, also written to ``out``)."""
    from gan_lightning.commands.evaluate import evaluate_main

    argv = ["--ckpt_path", ckpt, "--num", str(num), "--metrics", "[fid,accuracy]", "--out", str(out), "--quiet"]
    if num_reference is not None:
        argv += ["--num_reference", str(num_reference)]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the JSON it writes
        evaluate_main(argv)
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------ output
def _count(n: Optional[int]) -> str:
    return "—" if n is None else f"{n:,}"


def _fid(value: Any) -> str:
    if value is None:
        return "—"
    value = float(value)
    return f"{value:.2f}" if math.isfinite(value) else "inf"


def _accuracy(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"


def _ema(run: dict[str, Any]) -> str:
    start, steps = run.get("ema_start", 0), run.get("steps")
    if steps is not None and steps <= start:
        return f"copy of G (starts at {start:,})"
    return f"from step {start:,}"


def row(run: dict[str, Any]) -> tuple[str, ...]:
    """One table row of a run (trained and evaluated, or failed)."""
    arch = ARCHS.get(run["arch"])
    name = f"{run['arch']} (`{Path(run['config']).name}`)"
    what = arch.what if arch else ""
    recipe_cell = f"{run['batch']} × {run['n_critic']}"
    if "error" in run:
        failed = f"failed (exit {run['rc']})"
        return (name, what, "—", "—", recipe_cell, failed, "—", "—", "—", "—", "—")
    steps, seconds = run["steps"], run["train_seconds"]
    per_step = f"{seconds / steps:.3f}" if steps else "—"
    metrics = run.get("metrics") or {}
    if "eval_error" in run:
        fid = accuracy = "evaluation failed"
    else:
        fid, accuracy = _fid(metrics.get("fid_mnist")), _accuracy(metrics.get("accuracy"))
    return (name, what, _count(run["g_params"]), _count(run["d_params"]), recipe_cell, f"{steps:,}",
            f"{seconds:.1f}", per_step, _ema(run), fid, accuracy)


HEADERS = ("architecture", "G / D", "G params", "D params", "batch × D steps", "G steps", "train s", "s / G step",
           "EMA", "fid_mnist", "accuracy")


def markdown(results: dict[str, Any]) -> str:
    """The section: title, machine, command and date, the method, the table, and the final sample grids (their
    files beside the report)."""
    budget = results["budget_seconds"]
    label = f"{budget / 60:g} min" if budget >= 60 else f"{budget} s"
    lines = [f"## {TITLE.format(budget=label)}", ""]
    lines += [f"- **{k}**: {v}" for k, v in results["machine"]]
    if "load_end" in results:
        lines.append(f"- **load average (1 min) at the end**: {results['load_end']:.2f}")
    lines += [f"- **command**: `{results['command']}`", f"- **date**: {results['date']}", ""]
    if results.get("quick"):
        lines += ["> `--quick`: a few seconds of training to check the pipeline; the figures mean nothing.", ""]
    example = next((r["command"] for r in results["runs"]), None)
    num_ref = results.get("num_reference")
    reference = f"{num_ref:,} reference digits" if num_ref else "the embedded digits as reference"
    lines.append(
        f"Each architecture is its committed class-conditional experiment on the embedded 5,000-digit MNIST subset, "
        f"trained for the same {label} of wall-clock time (Lightning's `max_time`, counted from the start of "
        f"training) through the command line, one after another, with `OMP_NUM_THREADS={results['threads']}` and "
        f"no metric callback during training"
        + (f": `{example}`" if example else "") + ". The final EMA generator of `last.ckpt` is judged as "
        f"`python -m gan_lightning evaluate --ckpt_path <run>/checkpoints/last.ckpt --num {results['num']} "
        f"--metrics [fid,accuracy]` judges it ({results['num']:,} samples, seed 0, {reference}): `fid_mnist` is "
        f"FID on the mnist5k domain classifier's features (not Inception's, not comparable with published FIDs), "
        f"`accuracy` the conditional accuracy. Parameter counts are of G and D as trained (EMA copy not counted); "
        f"`batch × D steps`: the batch size and the D steps per G step; `train s`: from the start to the end of "
        f"training; `EMA`: the step from which the EMA averages G (before it, it is a copy of G). Single runs, seed "
        f"0. `benchmarks/zoo.py`.")
    lines += ["", table(HEADERS, [row(r) for r in results["runs"]])]
    grids = [(r["arch"], r["grid_file"]) for r in results["runs"] if r.get("grid_file")]
    if grids:
        lines += ["", "Final samples (EMA generator, one row per class, fixed noise):", ""]
        lines += [f"- {name}: ![{name}]({path})" for name, path in grids]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/zoo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget_minutes", type=float, default=4.0, help="training wall time per architecture")
    p.add_argument("--num", type=int, default=5000, help="generated samples for the metrics")
    p.add_argument("--archs", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_BUDGET_S} s of training each, {QUICK_NUM} samples (pipeline check; figures mean nothing)")
    p.add_argument("--out", default=None, help="Markdown file (default: benchmarks/results/zoo.md); the JSON beside it")
    p.add_argument("--threads", type=int, default=1, help="torch threads here and OMP_NUM_THREADS of the runs")
    p.add_argument("--keep", default=None, help="keep the run directories and logs under this folder")
    return p


def run_all(args: argparse.Namespace, argv: list[str], out: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    warnings.filterwarnings("ignore")
    budget_s = QUICK_BUDGET_S if args.quick else int(round(60 * args.budget_minutes))
    num = QUICK_NUM if args.quick else args.num
    num_reference = QUICK_REFERENCE if args.quick else None
    if budget_s < 1:
        raise SystemExit("--budget_minutes: must give at least one second")
    if num < 2:
        raise SystemExit("--num: must be >= 2")
    results: dict[str, Any] = {"budget_seconds": budget_s, "num": num, "num_reference": num_reference,
                               "threads": args.threads, "quick": args.quick, "machine": machine(args.threads),
                               "date": now(), "command": command_line("benchmarks/zoo.py", argv), "runs": []}
    # The metrics' domain classifier is trained once and cached: train it now if it is missing, outside any run.
    from gan_lightning.metrics.classifier import get_classifier

    get_classifier("mnist5k")
    started = time.perf_counter()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="zoo_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.archs:
            run = train(ARCHS[name], budget_s, workdir, args.threads)
            if "ckpt" in run:
                try:
                    metrics = evaluate(run["ckpt"], num, num_reference, workdir / f"{name}-metrics.json")
                    run["metrics"] = {k: metrics.get(k) for k in ("fid_mnist", "accuracy", "num_samples",
                                                                   "num_reference")}
                except Exception as err:  # noqa: BLE001 - one architecture's failure must not lose the others
                    run["eval_error"] = f"{type(err).__name__}: {err}"
                if run.get("grid"):
                    copy = out.parent / f"{out.stem}_{name}.png"
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(run["grid"], copy)
                    run["grid_file"] = copy.name  # beside the report
            run.pop("ckpt", None)
            run.pop("run_dir", None)
            run.pop("grid", None)
            print(f"# {name}: {run.get('steps')} steps in {run.get('train_seconds', math.nan):.1f} s, "
                  f"{run.get('metrics') or run.get('eval_error') or run.get('error')}", file=sys.stderr, flush=True)
            results["runs"].append(run)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_end"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started
    return results


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    out = Path(args.out) if args.out else RESULTS / "zoo.md"
    results = run_all(args, argv, out)
    text = markdown(results)
    print(text, flush=True)
    write_atomic(out, text + "\n")
    write_atomic(out.with_suffix(".json"), json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}; {results['seconds']:.0f} s in all", file=sys.stderr)
    failed = any("error" in r or "eval_error" in r for r in results["runs"])
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
