"""``python -m gan_lightning report``: compare runs from the files their run directories keep, without W&B.

Sources are experiment names (every run under ``runs/<name>/``), sweep directories, any folder holding runs,
or run directories; a run directory is one holding ``config.yaml``, ``metrics.json`` or ``metrics.csv``.

The tables show what was varied, not plumbing: the settings of ``config.yaml`` (flattened to dotted keys,
``class_path``/``init_args`` written as the class name and its arguments) that are not the same in every run,
leaving out where files go, loggers, callbacks, progress bars and seeds (:data:`PLUMBING`). Settings varied within
an experiment (a sweep's keys) are columns; those that differ only between experiments are listed once per
experiment. Runs that differ only by seed form a group. Into ``--out`` (default ``reports/<name>/``) it writes:

- ``report.csv``: one row per run: group, experiment, seed, step, the varied settings, the final metrics
  (``metrics.json``; keys it lacks from the last ``val/*`` values of ``metrics.csv``, plus the final
  ``progress/seconds`` and ``progress/kimg`` as ``seconds``, ``kimg``) and the path;
- ``groups.csv``: per group, each metric's mean, sample standard deviation (``ddof=1``) and count over the
  group's finite values;
- ``curves_step.png`` and ``curves_time.png``: ``val/fid*`` (or the toy ``val/modes``, ``val/high_quality``),
  ``train/d_real``, ``train/d_fake``, ``train/d_loss``, ``train/g_loss`` from ``metrics.csv`` against generator
  step and wall time (``progress/seconds``), one line per group (mean, shaded ± one standard deviation) or per run;
- ``report.md``: the groups, the settings per experiment, the runs, the plots and notes on anything missing;

and prints the groups and settings tables, at most :data:`WIDTH` characters wide. Nothing is run again: only files
already in the run directories are read. Missing files or columns are noted in one line each (printed and listed
in the report), never fatal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import yaml

from gan_lightning.commands.parsing import OneLineParser
from gan_lightning.errors import DataNotFound

RUN_FILES = ("config.yaml", "metrics.json", "metrics.csv")
# Settings that place, log or watch a run rather than change what it trains (a setting or any key below it).
PLUMBING = ("run_dir", "experiment", "config", "ckpt_path", "wandb", "wandb_project", "seed_everything", "checkpoint",
            "trainer.default_root_dir", "trainer.callbacks", "trainer.logger", "trainer.plugins",
            "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.enable_checkpointing",
            "trainer.log_every_n_steps", "trainer.num_sanity_val_steps", "trainer.profiler")
# Last parts of keys that locate data or tune its loading, wherever they are (data.root, ...cache_dir).
PLUMBING_NAMES = ("root", "dirpath", "cache_dir", "download", "num_workers", "pin_memory", "persistent_workers")
IMAGE_CURVES = ("val/fid",)  # and every feature space's FID: val/fid_mnist, val/fid_fashion, ...
TOY_CURVES = ("val/modes", "val/high_quality", "val/modes_refined", "val/high_quality_refined")
TRAIN_CURVES = ("train/d_real", "train/d_fake", "train/d_loss", "train/g_loss")
SECONDS, KIMG = "progress/seconds", "progress/kimg"
WIDTH = 120  # printed tables wrap their columns at this width
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass
class RunInfo:
    path: Path
    name: str = ""
    config: Optional[dict[str, str]] = None  # flattened config.yaml as table text, None without one
    seed: Optional[int] = None
    experiment: str = ""
    step: Optional[int] = None
    metrics: dict[str, float] = field(default_factory=dict)
    series: Optional[pd.DataFrame] = None  # metrics.csv: one row per logged step, NaN where a key was not logged


def note(notes: list[str], text: str) -> None:
    notes.append(text)
    print(f"note: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- finding runs

def is_run_dir(path: Path) -> bool:
    return any((path / f).is_file() for f in RUN_FILES)


def find_runs(source: str, runs_root: str, notes: Optional[list[str]] = None) -> list[Path]:
    """The run directories a source names: a run directory itself, every run below a folder (not descending
    into runs), or, for a name that is not a path, every run under ``<runs_root>/<name>``. A folder holding only
    a ``fit.log`` (a run that failed before writing anything) is noted and left out."""
    path = Path(source)
    if not path.exists() and os.sep not in source and (Path(runs_root) / source).is_dir():
        path = Path(runs_root) / source
    if not path.is_dir():
        raise DataNotFound(f"{source!r}: no such run directory, folder or experiment under {runs_root}/; "
                           "name an experiment, a sweep folder or run directories")
    if is_run_dir(path):
        return [path]
    found: list[Path] = []
    for root, dirs, _files in os.walk(path):
        dirs.sort()
        keep = []
        for d in dirs:
            sub = Path(root) / d
            if is_run_dir(sub):
                found.append(sub)
            elif (sub / "fit.log").is_file():
                if notes is not None:
                    note(notes, f"{sub}: only a fit.log (the run failed before writing anything); left out")
            elif d not in ("wandb", "checkpoints", "samples"):
                keep.append(d)
        dirs[:] = keep
    return found


# ---------------------------------------------------------------------------------------------------- reading runs

def text(value: Any) -> str:
    """A config value as table text: YAML-like flow style, a ``class_path``/``init_args`` mapping as
    ``Name(arg=value, ...)``, an object's repr without its memory address (not a config difference)."""
    if isinstance(value, dict):
        if "class_path" in value:
            args = value.get("init_args") or {}
            name = str(value["class_path"]).rsplit(".", 1)[-1]
            return f"{name}({', '.join(f'{k}={text(v)}' for k, v in args.items())})"
        return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(text(v) for v in value) + "]"
    if isinstance(value, str):
        return _ADDRESS.sub("", value)
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def flatten(obj: Any, prefix: str = "", out: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Nested mappings as dotted keys with text values; a ``class_path``/``init_args`` mapping as its class name
    under its own key and its arguments below it (``model.generator: DCGANGenerator``,
    ``model.generator.ngf: 64``); lists as one value (``model.regularizers: [R1(gamma=0.1)]``)."""
    out = {} if out is None else out
    if isinstance(obj, dict) and "class_path" in obj and prefix:
        out[prefix] = str(obj["class_path"]).rsplit(".", 1)[-1]
        obj = obj.get("init_args") or {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif prefix:
        out[prefix] = text(obj)
    return out


def is_plumbing(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in PLUMBING) or key.rsplit(".", 1)[-1] in PLUMBING_NAMES


def read_csv(path: Path) -> pd.DataFrame:
    """``metrics.csv`` (Lightning's CSVLogger format: a ``step`` column, empty cells where a key was not logged) as
    numbers indexed by step, sorted; a step logged twice (a resumed run) keeps each key's last value there."""
    frame = pd.read_csv(path)
    if "step" not in frame.columns:
        raise ValueError("no 'step' column")
    frame = frame.apply(pd.to_numeric, errors="coerce").dropna(subset=["step"])
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed")])
    return frame.groupby("step").last().sort_index().dropna(axis=1, how="all")


def seconds_at(series: pd.DataFrame, steps: np.ndarray) -> Optional[np.ndarray]:
    """Wall seconds at ``steps``, interpolated between the rows that logged ``progress/seconds`` and extrapolated
    past them at the rate of the last (first) two; never below 0. None when the run logged no time."""
    known = series[SECONDS].dropna() if SECONDS in series else pd.Series(dtype=float)
    if known.empty:
        return None
    s, t = known.index.to_numpy(float), known.to_numpy(float)
    out = np.interp(steps, s, t)
    if len(s) > 1:
        after, before = steps > s[-1], steps < s[0]
        out[after] = t[-1] + (steps[after] - s[-1]) * (t[-1] - t[-2]) / (s[-1] - s[-2])
        out[before] = t[0] - (s[0] - steps[before]) * (t[1] - t[0]) / (s[1] - s[0])
    return np.maximum(out, 0.0)


def read_run(path: Path, notes: list[str]) -> RunInfo:
    run = RunInfo(path=path)
    config_file, json_file, csv_file = (path / f for f in RUN_FILES)
    raw: Any = {}
    if config_file.is_file():
        with open(config_file) as f:
            raw = yaml.safe_load(f) or {}
        run.config = flatten(raw)
    else:
        note(notes, f"{path}: no config.yaml; its config columns are left empty and it forms its own group")
    raw = raw if isinstance(raw, dict) else {}
    seed, found = raw.get("seed_everything"), re.search(r"seed(\d+)$", path.name)
    if isinstance(seed, (int, float)) and not isinstance(seed, bool):
        run.seed = int(seed)
    elif found:
        run.seed = int(found.group(1))
    # runs/<experiment>/<run> or runs/<experiment>/sweep-<name>/<run>
    run.experiment = str(raw.get("experiment") or "") or \
        (path.parent.parent if path.parent.name.startswith("sweep-") else path.parent).name
    if json_file.is_file():
        try:
            final = json.loads(json_file.read_text())
        except ValueError:
            note(notes, f"{json_file}: not valid JSON; ignored")
            final = {}
        for key, value in final.items():
            if key == "step":
                run.step = int(value) if isinstance(value, (int, float)) else None
            elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                run.metrics[key] = float("nan") if value is None else float(value)
    if csv_file.is_file():
        try:
            run.series = read_csv(csv_file)
        except ValueError as err:  # pandas' parser errors are ValueErrors
            note(notes, f"{csv_file}: unreadable ({err}); its curves are left out")
    if run.series is not None and not run.series.empty:
        last = run.series.ffill().iloc[-1]
        for column in run.series.columns:
            if column.startswith("val/"):
                run.metrics.setdefault(column[4:], float(last[column]))
        for column, key in ((SECONDS, "seconds"), (KIMG, "kimg")):
            if column in run.series:
                run.metrics.setdefault(key, float(last[column]))
        if run.step is None:
            run.step = int(run.series.index[-1])
    if not json_file.is_file() and not csv_file.is_file():
        note(notes, f"{path}: no metrics.json or metrics.csv; its metrics are left empty")
    return run


# ---------------------------------------------------------------------------------------------------- tables

def varied_settings(runs: list[RunInfo]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The runs' settings (a row per run, "" where a run lacks a key), the keys varied within an experiment and
    those that differ only between experiments; plumbing left out, runs without a config ignored."""
    settings = pd.DataFrame([r.config or {} for r in runs], index=[r.name for r in runs], dtype=object).fillna("")
    configured = settings[[r.config is not None for r in runs]]
    experiments = pd.Series([r.experiment for r in runs if r.config is not None], index=configured.index)
    varied = [k for k in settings.columns if not is_plumbing(k) and configured[k].nunique() > 1]
    within = [k for k in varied if (configured[k].groupby(experiments).nunique() > 1).any()]
    return settings, within, [k for k in varied if k not in within]


def assign_groups(runs: list[RunInfo], settings: pd.DataFrame, keys: list[str]) -> pd.Series:
    """``g1``, ``g2``, ...: runs with the same values of ``keys`` (so differing only by seed), in order of first
    appearance; a run without a config forms its own group."""
    ident = ["\x1f".join(settings.loc[r.name, keys]) if r.config is not None else f"\x00{r.path}" for r in runs]
    return pd.Series([f"g{c + 1}" for c in pd.factorize(pd.Series(ident))[0]], index=settings.index, name="group")


def _short(value: float) -> str:
    return "—" if pd.isna(value) or not math.isfinite(value) else f"{value:.4g}"


def md_table(frame: pd.DataFrame) -> list[str]:
    """A DataFrame of text as a Markdown table, its index as the first column."""
    rows = [[str(frame.index.name or ""), *map(str, frame.columns)]] + \
        [[str(i), *map(str, row)] for i, row in zip(frame.index, frame.to_numpy())]
    rows = [[c.replace("|", "\\|") for c in row] for row in rows]
    return ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(" --- " for _ in rows[0]) + "|"] + \
        ["| " + " | ".join(r) + " |" for r in rows[1:]]


# ---------------------------------------------------------------------------------------------------- plots

def curve_keys(runs: list[RunInfo], notes: list[str]) -> list[str]:
    """The curves to draw: ``val/fid`` and/or the toy metrics, whichever the runs logged, then the training values."""
    logged = set().union(*(set(r.series.columns) for r in runs if r.series is not None))
    quality = sorted(k for k in logged if k.startswith(IMAGE_CURVES)) + [k for k in TOY_CURVES if k in logged]
    if not quality:
        note(notes, f"no run's metrics.csv has a {' or '.join(IMAGE_CURVES + TOY_CURVES)} column; no quality curve")
    for k in TRAIN_CURVES:
        if k not in logged:
            note(notes, f"no run's metrics.csv has a {k} column; not plotted")
    return quality + [k for k in TRAIN_CURVES if k in logged]


def aggregate(members: list[RunInfo], key: str, time_axis: bool) -> Optional[pd.DataFrame]:
    """Per step of the union of the runs' logged steps: ``x`` (the step, or the runs' mean wall time there),
    ``mean`` and ``std`` (``ddof=1``, NaN below two runs) of ``key``, each run interpolated linearly inside its own
    logged range; NaN/inf points (a diverged run) left out."""
    values = {i: run.series[key].replace([np.inf, -np.inf], np.nan).dropna() for i, run in enumerate(members)
              if run.series is not None and key in run.series
              and not (time_axis and seconds_at(run.series, np.zeros(1)) is None)}
    values = {i: v for i, v in values.items() if not v.empty}
    if not values:
        return None
    table = pd.DataFrame(values).sort_index().interpolate(method="index", limit_area="inside")
    steps = table.index.to_numpy(float)
    x = pd.Series(steps, index=table.index)
    if time_axis:  # each run's wall time at the steps inside its range, averaged
        x = pd.DataFrame({i: seconds_at(members[i].series, steps) for i in values}, index=table.index) \
            .where(table.notna()).mean(axis=1)
    return pd.DataFrame({"x": x, "mean": table.mean(axis=1), "std": table.std(axis=1)})


def plot_curves(lines: list[tuple[str, list[RunInfo]]], keys: list[str], out: Path, notes: list[str]) -> list[Path]:
    """One panel per key, one line (mean, band ± std) per entry of ``lines``, against step and wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for _, members in lines for r in members]
    written = []
    for file, time_axis in (("curves_step.png", False), ("curves_time.png", True)):
        if time_axis and not any(r.series is not None and SECONDS in r.series for r in runs):
            note(notes, f"no run's metrics.csv has a {SECONDS} column; no plot against wall time")
            continue
        ncols = min(3, len(keys))
        nrows = math.ceil(len(keys) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows + 0.3 * math.ceil(len(lines) / 3)),
                                 squeeze=False, layout="constrained")
        for ax, key in zip(axes.flat, keys):
            for i, (label, members) in enumerate(lines):
                agg = aggregate(members, key, time_axis)
                if agg is None:
                    continue
                color = f"C{i % 10}"
                ax.plot(agg["x"], agg["mean"], color=color, lw=1.4, label=label,
                        marker="o" if len(agg) < 3 else None, ms=3)
                band = agg["std"].notna()
                if band.any():
                    ax.fill_between(agg["x"], agg["mean"] - agg["std"], agg["mean"] + agg["std"], where=band,
                                    color=color, alpha=0.2, lw=0)
            ax.set_title(key, fontsize=10)
            ax.set_xlabel("wall time (s)" if time_axis else "generator step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        handles, names = max((ax.get_legend_handles_labels() for ax in axes.flat), key=lambda h: len(h[0]))
        if handles:
            fig.legend(handles, names, loc="outside lower center", ncol=min(3, len(names)), fontsize=8)
        fig.savefig(out / file, dpi=90)
        plt.close(fig)
        written.append(out / file)
    return written


# ---------------------------------------------------------------------------------------------------- main

def default_name(sources: Sequence[str], runs_root: str) -> str:
    parts = []
    for source in sources:
        path = Path(source).resolve()
        root = Path(runs_root).resolve()
        rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        parts.append(str(rel).replace(os.sep, "-") or "runs")
    name = parts[0] if len(parts) == 1 else "+".join(parts[:3]) + (f"+{len(parts) - 3}more" if len(parts) > 3 else "")
    return re.sub(r"[^A-Za-z0-9._+=-]", "-", name)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m gan_lightning report", allow_abbrev=False,
                           description="Tables and curves comparing runs, from the files in their run directories.")
    parser.add_argument("sources", nargs="+",
                        help="Experiment names (runs/<name>/), sweep folders, folders of runs or run directories.")
    parser.add_argument("--out", default=None, help="Output folder (default: reports/<name>/).")
    parser.add_argument("--name", default=None, help="Report name (default: from the sources).")
    parser.add_argument("--runs_root", default="runs", help="Where experiment names are looked up.")
    parser.add_argument("--by", choices=("auto", "group", "run"), default="auto",
                        help="One curve per group of seeds or per run (auto: per group when a group has 2+ runs).")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Write the report; 0 on success."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    notes: list[str] = []
    paths: list[Path] = []
    for source in args.sources:
        found = find_runs(source, args.runs_root, notes)
        if not found:
            raise DataNotFound(f"{source!r}: no run directories (folders with {', '.join(RUN_FILES)}) found in it")
        paths += [p for p in found if p.resolve() not in {q.resolve() for q in paths}]
    name = args.name or default_name(args.sources, args.runs_root)
    out = Path(args.out) if args.out else Path("reports") / name
    out.mkdir(parents=True, exist_ok=True)

    runs = [read_run(p, notes) for p in paths]
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    for run in runs:
        run.name = str(run.path.resolve().relative_to(common))
    settings, swept, between = varied_settings(runs)
    group = assign_groups(runs, settings, swept + between)
    metrics = pd.DataFrame([r.metrics for r in runs], index=settings.index, dtype=float)
    finite = metrics.replace([np.inf, -np.inf], np.nan)
    info = pd.DataFrame({"group": group, "experiment": [r.experiment for r in runs],
                         "seed": pd.array([r.seed for r in runs], dtype="Int64"),
                         "step": pd.array([r.step for r in runs], dtype="Int64")}, index=settings.index)
    several = info["experiment"].nunique() > 1

    # report.csv: one row per run; groups.csv: per group, mean, std and count of every metric.
    per_run = pd.concat([info, settings[swept + between], finite], axis=1)
    per_run.assign(path=[str(r.path) for r in runs]).rename_axis("run").to_csv(out / "report.csv")
    by_group = finite.groupby(group, sort=False)
    mean, std, count = by_group.mean(), by_group.std(ddof=1), by_group.count()
    firsts = ~group.duplicated()
    groups = pd.DataFrame({"runs": group.value_counts(sort=False),
                           "seeds": info.groupby("group", sort=False)["seed"].agg(
                               lambda s: " ".join(str(v) for v in s.dropna())),
                           "experiment": info.groupby("group", sort=False)["experiment"].agg(
                               lambda s: ",".join(dict.fromkeys(s)))})
    groups = groups.join(settings.loc[firsts, swept + between].set_axis(group[firsts]))
    stats = pd.DataFrame({f"{m}_{s}": v[m] for m in metrics for s, v in (("mean", mean), ("std", std), ("n", count))},
                         index=groups.index)
    groups.join(stats).rename_axis("group").to_csv(out / "groups.csv")

    # The tables people read: group results with what was swept; settings per experiment; runs.
    cells = pd.DataFrame({m: [f"{_short(mean.loc[g, m])} ± {_short(std.loc[g, m])} (n={count.loc[g, m]})"
                              if count.loc[g, m] else "—" for g in groups.index] for m in metrics},
                         index=groups.index, dtype=object)
    shown = (["experiment"] if several else []) + swept
    group_table = groups[shown + ["runs"]].join(cells).rename_axis("group")
    setting_table = None
    if between:
        configured = settings.loc[[r.config is not None for r in runs], between]
        setting_table = configured.groupby(info["experiment"], sort=False).first().T.rename_axis("setting")
    run_table = pd.concat([info[["group", "seed", "step"]].astype(str).replace("<NA>", ""),
                           settings[swept], finite.map(_short)], axis=1)
    run_table.index = [f"`{n}`" for n in run_table.index]
    run_table = run_table.rename_axis("run")

    by_group_lines = args.by == "group" or (args.by == "auto" and (group.value_counts() > 1).any())
    # A group's line is labelled with what tells it apart: its experiment and its swept settings.
    labels = {g: ", ".join([groups.loc[g, "experiment"]] * several + [f"{k}={groups.loc[g, k]}" for k in swept])
              for g in groups.index}
    lines = [(f"{g}: {labels[g]}".rstrip(": "), [r for r in runs if group[r.name] == g]) for g in groups.index] \
        if by_group_lines else [(r.name, [r]) for r in runs]
    plots: list[Path] = []
    if not any(r.series is not None for r in runs):
        note(notes, "no run has a metrics.csv; no curves plotted")
    else:
        for run in runs:
            if run.series is None:
                note(notes, f"{run.path}: no metrics.csv; left out of the curves")
        keys = curve_keys(runs, notes)
        if keys:
            plots = plot_curves(lines, keys, out, notes)

    md = [f"# Report: {name}", "", f"{len(runs)} runs from {', '.join(f'`{s}`' for s in args.sources)}. Groups are "
          "runs that differ only by seed: mean ± sample standard deviation (n = runs with a finite value). Columns "
          "show the settings varied within an experiment; those that differ between experiments are listed under "
          "Settings.", "", "## Groups", "", *md_table(group_table)]
    if setting_table is not None:
        md += ["", "## Settings", "", "Settings that differ between the experiments (callbacks, paths, loggers "
               "and seeds left out).", "", *md_table(setting_table)]
    md += ["", "## Runs", "", *md_table(run_table)]
    if plots:
        line = "group (mean, band ± one standard deviation)" if by_group_lines else "run"
        md += ["", "## Curves", "", f"One line per {line}.", "", *(f"![{p.stem}]({p.name})" for p in plots)]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    (out / "report.md").write_text("\n".join(md) + "\n")

    print(group_table.to_string(line_width=WIDTH, max_colwidth=40))
    if setting_table is not None:
        print("\n" + setting_table.to_string(line_width=WIDTH, max_colwidth=48))
    written = ["report.md", "report.csv", "groups.csv", *(p.name for p in plots)]
    print(f"report of {len(runs)} runs in {len(groups)} groups: {out}{os.sep} ({', '.join(written)})")
    return 0


if __name__ == "__main__":  # python -m gan_lightning.commands.report: the same as python -m gan_lightning report
    from gan_lightning.commands import main as cli_main

    sys.exit(cli_main(["report", *sys.argv[1:]]))
