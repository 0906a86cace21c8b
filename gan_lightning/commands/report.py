"""``python -m gan_lightning report``: compare runs from the files their run directories keep, without W&B.

Sources are experiment names (every run under ``runs/<name>/``), sweep directories, any folder holding runs,
or run directories; a run directory is one holding ``config.yaml``, ``metrics.json`` or ``metrics.csv``. Into
``--out`` (default ``reports/<name>/``) it writes:

- ``report.csv``: one row per run: its final metrics (``metrics.json``; keys it lacks from the last ``val/*``
  values of ``metrics.csv``, plus the final ``progress/seconds`` and ``progress/kimg`` as ``seconds``, ``kimg``)
  and the config values that differ between the runs (``config.yaml`` flattened to dotted keys, bookkeeping
  such as ``run_dir`` and ``experiment`` left out), with the run's group;
- ``groups.csv``: runs that differ only by seed grouped, with each metric's mean, sample standard deviation
  (``ddof=1``) and count over the group's finite values;
- ``curves_step.png`` and ``curves_time.png``: ``val/fid`` (or the toy ``val/modes``, ``val/high_quality``),
  ``train/d_real``, ``train/d_fake``, ``train/d_loss``, ``train/g_loss`` from ``metrics.csv`` against generator
  step and wall time (``progress/seconds``), one line per group (mean, shaded ± one standard deviation) or per run;
- ``report.md``: both tables, the plots and notes on anything missing.

Nothing is run again: only files already in the run directories are read. Missing files or columns are noted in
one line each (printed and listed in the report), never fatal.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from gan_lightning.commands.parsing import OneLineParser
from gan_lightning.errors import DataNotFound

RUN_FILES = ("config.yaml", "metrics.json", "metrics.csv")
# Config keys that name or place a run rather than configure it.
BOOKKEEPING = ("run_dir", "experiment", "trainer.default_root_dir", "checkpoint.dirpath", "ckpt_path", "wandb",
               "wandb_project", "config", "seed_everything")
IMAGE_CURVES = ("val/fid",)
TOY_CURVES = ("val/modes", "val/high_quality")
TRAIN_CURVES = ("train/d_real", "train/d_fake", "train/d_loss", "train/g_loss")
SECONDS, KIMG = "progress/seconds", "progress/kimg"


@dataclass
class Series:
    """One run's ``metrics.csv``: per column, the generator steps and values of the rows that hold it."""

    columns: list[str]
    data: dict[str, tuple[np.ndarray, np.ndarray]]

    def get(self, key: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
        return self.data.get(key)

    def seconds_at(self, steps: np.ndarray) -> Optional[np.ndarray]:
        """Wall seconds at the given steps, interpolated between the rows that logged ``progress/seconds`` and
        extrapolated past them at the rate of the last (first) two."""
        known = self.data.get(SECONDS)
        if known is None or len(known[0]) == 0:
            return None
        s, t = known
        out = np.interp(steps, s, t)
        if len(s) > 1:
            after, before = steps > s[-1], steps < s[0]
            out[after] = t[-1] + (steps[after] - s[-1]) * (t[-1] - t[-2]) / (s[-1] - s[-2])
            out[before] = t[0] - (s[0] - steps[before]) * (t[1] - t[0]) / (s[1] - s[0])
        return np.maximum(out, 0.0)


@dataclass
class RunInfo:
    path: Path
    name: str = ""
    config: Optional[dict[str, Any]] = None     # flattened config.yaml, None without one
    seed: Optional[int] = None
    experiment: str = ""
    step: Optional[int] = None
    metrics: dict[str, float] = field(default_factory=dict)
    series: Optional[Series] = None
    group: str = ""


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

def flatten(obj: Any, prefix: str = "", out: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Nested mappings as dotted keys; lists of mappings by index (``trainer.callbacks.1.init_args.every_n_steps``);
    other lists stay values."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for key, value in obj.items():
            flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        for i, value in enumerate(obj):
            flatten(value, f"{prefix}.{i}", out)
    elif prefix:
        out[prefix] = obj
    return out


def _number(text: Optional[str]) -> Optional[float]:
    """A CSV cell as a number; None when empty or not a number."""
    try:
        return float(text) if text is not None and text.strip() else None
    except ValueError:
        return None


def read_csv(path: Path) -> Series:
    """``metrics.csv`` (Lightning CSVLogger: a ``step`` column, empty cells where a key was not logged) as series
    sorted by step; a step logged twice (a resumed run) keeps its last value."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in (reader.fieldnames or []) if c]
        rows = list(reader)
    if "step" not in columns:
        raise ValueError("no 'step' column")
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column in columns:
        if column == "step":
            continue
        points: dict[float, float] = {}
        for row in rows:
            step, value = _number(row.get("step")), _number(row.get(column))
            if step is not None and value is not None:
                points[step] = value
        if points:
            steps = np.array(sorted(points), dtype=float)
            data[column] = (steps, np.array([points[s] for s in steps], dtype=float))
    return Series(columns, data)


def read_run(path: Path, notes: list[str]) -> RunInfo:
    run = RunInfo(path=path)
    config_file, json_file, csv_file = (path / f for f in RUN_FILES)
    if config_file.is_file():
        with open(config_file) as f:
            raw = yaml.safe_load(f) or {}
        run.config = flatten(raw)
        seed = raw.get("seed_everything") if isinstance(raw, dict) else None
        run.seed = int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None
        run.experiment = str(raw.get("experiment") or "") if isinstance(raw, dict) else ""
    else:
        note(notes, f"{path}: no config.yaml; its config columns are left empty and it forms its own group")
    if run.seed is None:
        found = re.search(r"seed(\d+)$", path.name)
        run.seed = int(found.group(1)) if found else None
    if not run.experiment:  # runs/<experiment>/<run> or runs/<experiment>/sweep-<name>/<run>
        parent = path.parent.parent if path.parent.name.startswith("sweep-") else path.parent
        run.experiment = parent.name
    if json_file.is_file():
        try:
            with open(json_file) as f:
                final = json.load(f)
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
        except (ValueError, csv.Error) as err:
            note(notes, f"{csv_file}: unreadable ({err}); its curves are left out")
    if run.series is not None:
        for column, (steps, values) in run.series.data.items():
            if column.startswith("val/") and column[4:] not in run.metrics:
                run.metrics[column[4:]] = float(values[-1])
        for column, key in ((SECONDS, "seconds"), (KIMG, "kimg")):
            if column in run.series.data:
                run.metrics.setdefault(key, float(run.series.data[column][1][-1]))
        if run.step is None:
            steps = [s[-1] for s, _ in run.series.data.values() if len(s)]
            run.step = int(max(steps)) if steps else None
    if not json_file.is_file() and not csv_file.is_file():
        note(notes, f"{path}: no metrics.json or metrics.csv; its metrics are left empty")
    return run


# ---------------------------------------------------------------------------------------------------- tables

_MISSING = object()
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _text(value: Any) -> str:
    """A config value as table text (YAML-like flow style); empty where the run does not have the key."""
    if value is _MISSING:
        return ""
    if isinstance(value, str):  # an object's repr differs by its memory address only: not a config difference
        return _ADDRESS.sub("", value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def differing_keys(runs: list[RunInfo]) -> list[str]:
    """Config keys whose values are not the same in every run that has a config (bookkeeping keys left out)."""
    configs = [r.config for r in runs if r.config is not None]
    keys: list[str] = []
    for config in configs:
        keys += [k for k in config if k not in keys]
    return [k for k in keys
            if not any(k == b or k.startswith(b + ".") for b in BOOKKEEPING)
            and len({_text(c.get(k, _MISSING)) + ("" if k in c else "\0") for c in configs}) > 1]


def assign_groups(runs: list[RunInfo], keys: list[str]) -> list[tuple[str, list[RunInfo]]]:
    """Runs with the same values of ``keys`` (so differing only by seed), in order of first appearance."""
    groups: dict[Any, list[RunInfo]] = {}
    for run in runs:
        if run.config is None:
            ident: Any = ("<no config>", str(run.path))
        else:
            ident = tuple(_text(run.config.get(k, _MISSING)) for k in keys)
        groups.setdefault(ident, []).append(run)
    named = []
    for i, members in enumerate(groups.values()):
        for run in members:
            run.group = f"g{i + 1}"
        named.append((f"g{i + 1}", members))
    return named


def stats(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (``ddof=1``; NaN for one value) and count of the finite values."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(finite) == 0:
        return float("nan"), float("nan"), 0
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
    return float(np.mean(finite)), std, len(finite)


def _num(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _short(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


def short_keys(keys: list[str]) -> dict[str, str]:
    """Config keys without ``init_args`` where that keeps them distinct (for the Markdown tables)."""
    short = {k: ".".join(p for p in k.split(".") if p != "init_args") for k in keys}
    return short if len(set(short.values())) == len(short) else {k: k for k in keys}


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    return ["| " + " | ".join(esc[0]) + " |", "|" + "|".join(" --- " for _ in header) + "|"] + \
        ["| " + " | ".join(r) + " |" for r in esc[1:]]


# ---------------------------------------------------------------------------------------------------- plots

def curve_keys(runs: list[RunInfo], notes: list[str]) -> list[str]:
    """The curves to draw: ``val/fid`` and/or the toy metrics, whichever the runs logged, then the training values."""
    logged: set[str] = set()
    for run in runs:
        if run.series is not None:
            logged |= set(run.series.data)
    quality = [k for k in IMAGE_CURVES + TOY_CURVES if k in logged]
    if not quality:
        note(notes, f"no run's metrics.csv has a {' or '.join(IMAGE_CURVES + TOY_CURVES)} column; no quality curve")
    keys = quality + [k for k in TRAIN_CURVES if k in logged]
    for k in TRAIN_CURVES:
        if k not in logged:
            note(notes, f"no run's metrics.csv has a {k} column; not plotted")
    return keys


def _aggregate(members: list[RunInfo], key: str, time_axis: bool
               ) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """x, mean and standard deviation of ``key`` over the runs, on the union of their logged steps (each run
    interpolated inside its own logged range); x is the step or the mean wall time at that step."""
    series = []
    for run in members:
        found = run.series.get(key) if run.series is not None else None
        if found is not None and np.isfinite(found[1]).any():  # NaN/inf points (a diverged run) are left out
            finite = np.isfinite(found[1])
            series.append((run.series, (found[0][finite], found[1][finite])))
    if time_axis:
        series = [(s, kv) for s, kv in series if s.seconds_at(kv[0]) is not None]
    if not series:
        return None
    steps = np.unique(np.concatenate([kv[0] for _, kv in series]))
    values = np.full((len(series), len(steps)), np.nan)
    xs = np.full((len(series), len(steps)), np.nan)
    for i, (s, (st, va)) in enumerate(series):
        inside = (steps >= st[0]) & (steps <= st[-1])
        values[i, inside] = np.interp(steps[inside], st, va)
        xs[i, inside] = s.seconds_at(steps[inside]) if time_axis else steps[inside]
    count = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(values, axis=0)
        x = np.nanmean(xs, axis=0)
        std = np.where(count > 1, np.nanstd(values, axis=0, ddof=1) if len(series) > 1 else np.nan, np.nan)
    return x, mean, std


def plot_curves(runs: list[RunInfo], groups: list[tuple[str, list[RunInfo]]], labels: dict[str, str],
                keys: list[str], out: Path, by_group: bool, notes: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = groups if by_group else [(r.name, [r]) for r in runs]
    written = []
    for axis, file in (("step", "curves_step.png"), ("time", "curves_time.png")):
        time_axis = axis == "time"
        if time_axis and not any(r.series is not None and r.series.get(SECONDS) is not None for r in runs):
            note(notes, f"no run's metrics.csv has a {SECONDS} column; no plot against wall time")
            continue
        ncols = min(3, len(keys))
        nrows = math.ceil(len(keys) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows + 0.3 * math.ceil(len(lines) / 3)),
                                 squeeze=False, layout="constrained")
        for ax, key in zip(axes.flat, keys):
            for i, (name, members) in enumerate(lines):
                agg = _aggregate(members, key, time_axis)
                if agg is None:
                    continue
                x, mean, std = agg
                color = f"C{i % 10}"
                label = labels.get(name, name) if by_group else name
                ax.plot(x, mean, color=color, lw=1.4, label=label, marker="o" if len(x) < 3 else None, ms=3)
                band = ~np.isnan(std)
                if band.any():
                    ax.fill_between(x, mean - np.where(band, std, 0), mean + np.where(band, std, 0),
                                    where=band, color=color, alpha=0.2, lw=0)
            ax.set_title(key, fontsize=10)
            ax.set_xlabel("generator step" if not time_axis else "wall time (s)")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        for ax in axes.flat:
            if len(ax.get_legend_handles_labels()[0]) > len(handles):
                handles, names = ax.get_legend_handles_labels()
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
    parents = [str(p.resolve().parent) for p in paths]
    common = Path(os.path.commonpath(parents))
    for run in runs:
        run.name = str(run.path.resolve().relative_to(common))
    keys = differing_keys(runs)
    groups = assign_groups(runs, keys)
    metrics: list[str] = []
    for run in runs:
        metrics += [m for m in run.metrics if m not in metrics]
    short = short_keys(keys)

    # report.csv: one row per run.
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "group", "experiment", "seed", "step", *keys, *metrics, "path"])
        for run in runs:
            config = run.config or {}
            writer.writerow([run.name, run.group, run.experiment, "" if run.seed is None else run.seed,
                             "" if run.step is None else run.step,
                             *[_text(config.get(k, _MISSING)) for k in keys],
                             *[_num(run.metrics.get(m, float("nan"))) for m in metrics], str(run.path)])
    # groups.csv: runs differing only by seed.
    group_stats = {g: {m: stats([r.metrics.get(m, float("nan")) for r in members]) for m in metrics}
                   for g, members in groups}
    with open(out / "groups.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "runs", "seeds", *keys, *[f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")]])
        for g, members in groups:
            config = members[0].config or {}
            writer.writerow([g, len(members), " ".join(str(r.seed) for r in members if r.seed is not None),
                             *[_text(config.get(k, _MISSING)) for k in keys],
                             *[v for m in metrics for v in (_num(group_stats[g][m][0]), _num(group_stats[g][m][1]),
                                                            group_stats[g][m][2])]])

    labels = {}
    for g, members in groups:
        config = members[0].config
        described = ", ".join(f"{short[k]}={_text(config.get(k, _MISSING))}" for k in keys) if config is not None \
            else members[0].name
        labels[g] = f"{g}: {described}" if described else g
    by_group = args.by == "group" or (args.by == "auto" and any(len(m) > 1 for _, m in groups))
    have_csv = [r for r in runs if r.series is not None]
    plots: list[Path] = []
    if not have_csv:
        note(notes, "no run has a metrics.csv; no curves plotted")
    else:
        for run in runs:
            if run.series is None:
                note(notes, f"{run.path}: no metrics.csv; left out of the curves")
        keys_to_plot = curve_keys(runs, notes)
        if keys_to_plot:
            plots = plot_curves(runs, groups, labels, keys_to_plot, out, by_group, notes)

    # report.md
    md = [f"# Report: {name}", "", f"{len(runs)} runs from {', '.join(f'`{s}`' for s in args.sources)}; "
          f"config values that differ between them; groups = runs that differ only by seed "
          "(mean ± sample standard deviation, count).", "", "## Runs", ""]
    md += _md_table(["run", "group", "seed", "step", *[short[k] for k in keys], *metrics],
                    [[f"`{r.name}`", r.group, "" if r.seed is None else str(r.seed),
                      "" if r.step is None else str(r.step),
                      *[_text((r.config or {}).get(k, _MISSING)) for k in keys],
                      *[_short(r.metrics.get(m, float("nan"))) for m in metrics]] for r in runs])
    md += ["", "## Groups", ""]
    md += _md_table(["group", "runs", *[short[k] for k in keys], *metrics],
                    [[g, str(len(members)), *[_text((members[0].config or {}).get(k, _MISSING)) for k in keys],
                      *[(f"{_short(group_stats[g][m][0])} ± {_short(group_stats[g][m][1])} (n={group_stats[g][m][2]})"
                         if group_stats[g][m][2] else "—") for m in metrics]] for g, members in groups])
    if plots:
        md += ["", "## Curves", "", f"One line per {'group (mean, band ± one standard deviation)' if by_group else 'run'}.", ""]
        md += [f"![{p.stem}]({p.name})" for p in plots]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    (out / "report.md").write_text("\n".join(md) + "\n")
    written = [out / "report.md", out / "report.csv", out / "groups.csv", *plots]
    print(f"report of {len(runs)} runs in {len(groups)} groups: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":  # python -m gan_lightning.commands.report: the same as python -m gan_lightning report
    from gan_lightning.commands import main as cli_main

    sys.exit(cli_main(["report", *sys.argv[1:]]))
