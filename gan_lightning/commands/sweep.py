"""``python -m gan_lightning sweep``: one experiment over a grid of LightningCLI overrides and several seeds, offline.

Every point of the grid and every seed is a normal ``fit`` run, launched as a subprocess
(``python -m gan_lightning fit --config ... --<key>=<value> ... --seed_everything=<s> --run_dir=<dir>``), one
after another or ``--parallel N`` at a time, with ``GAN_LIGHTNING_SWEEP=<name>`` in its environment. Run
directories are fixed by the sweep, the point and the seed: ``runs/<experiment>/sweep-<name>/<point>-seed<s>/``,
each with its output in ``fit.log``; ``sweep.json`` next to them records every run's command and outcome.

The grid comes from ``--grid KEY=V1,V2`` (repeatable) and ``--seeds``, or from a W&B sweep file
(``--sweep_file experiments/sweeps/<name>.yaml``: its ``values`` lists become the grid, ``seed_everything``
the seeds, and the ``--config`` files and fixed options of its ``command`` are used as they are), so the same
file serves ``wandb agent`` and offline sweeps. Arguments the sweep does not know go to every run.

With ``--parallel N`` on a machine with GPUs, each of the N slots gets its own GPUs: the visible ones
(``CUDA_VISIBLE_DEVICES`` if set, else every CUDA device) split into N equal, disjoint sets, one per slot, given
to the slot's runs as ``CUDA_VISIBLE_DEVICES``; with fewer GPUs than slots, slots share them round-robin.

Running a sweep again skips the runs that finished (``sweep.json`` says ok and the command is unchanged), resumes
an unfinished run (stopped by Ctrl-C, a kill or a preemption) from its ``checkpoints/last.ckpt`` with
``--ckpt_path`` when its command is unchanged, and runs the others again from scratch; ``--overwrite`` runs
everything again from scratch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from gan_lightning.commands.parsing import OneLineParser
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.runtime.files import atomic_write

ENV_VAR = "GAN_LIGHTNING_SWEEP"
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
# Options the sweep sets on every run itself.
RESERVED = ("seed_everything", "run_dir", "config")


@dataclass
class Run:
    """One run of the sweep: a grid point (ordered overrides) and a seed."""

    point: dict[str, str]  # LightningCLI key -> value, as passed on the command line.
    point_name: str        # Folder-safe name of the point, e.g. "n_critic=2,lr=0.001".
    seed: int              # --seed_everything of the run.
    run_dir: str           # Run directory (also --run_dir).
    command: list[str]     # The full fit command line.
    status: str = "pending"  # pending | ok | failed | skipped | interrupted
    returncode: Optional[int] = None  # Exit code of the fit process.
    seconds: float = 0.0   # Wall seconds of the run.
    resume_from: Optional[str] = None  # The unfinished attempt's last.ckpt this run continues from.
    gpus: Optional[str] = None  # CUDA_VISIBLE_DEVICES of the slot it ran in (None: unchanged).

    @property
    def log(self) -> str:
        return os.path.join(self.run_dir, "fit.log")

    @property
    def last_ckpt(self) -> str:
        return os.path.join(self.run_dir, "checkpoints", "last.ckpt")

    @property
    def argv(self) -> list[str]:
        """The command line launched: ``command``, plus ``--ckpt_path`` when it resumes."""
        return self.command + (["--ckpt_path", self.resume_from] if self.resume_from else [])

    def record(self) -> dict[str, Any]:
        return {"point": self.point, "seed": self.seed, "run_dir": self.run_dir, "log": self.log,
                "command": self.command, "resumed_from": self.resume_from, "gpus": self.gpus,
                "status": self.status, "returncode": self.returncode, "seconds": round(self.seconds, 2)}


def split_values(text: str) -> list[str]:
    """``"1,2,[0.5,0.9]"`` -> ``["1", "2", "[0.5,0.9]"]``: commas inside brackets or quotes do not split."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def _check_key(key: str, where: str) -> None:
    if not KEY_RE.match(key):
        raise UserError(f"{where}: {key!r} is not a LightningCLI option key; write it dotted, e.g. model.n_critic")
    if key in RESERVED:
        hint = "use --seeds" if key == "seed_everything" else "the sweep sets it for every run"
        raise UserError(f"{where}: {key} cannot be swept ({hint})")


def parse_grid(spec: str) -> tuple[str, list[str]]:
    """``"model.n_critic=1,2"`` -> ``("model.n_critic", ["1", "2"])``; a bad spec is a ``UserError`` naming it."""
    key, sep, rest = spec.partition("=")
    key = key.strip()
    key = key[2:] if key.startswith("--") else key
    where = f"--grid {spec!r}"
    if not sep or not key or not rest.strip():
        raise UserError(f"{where}: expected KEY=V1,V2,... (e.g. --grid model.n_critic=1,2)")
    _check_key(key, where)
    values = split_values(rest)
    if any(v == "" for v in values):
        raise UserError(f"{where}: empty value; separate values with single commas, e.g. {key}=1,2")
    if len(set(values)) != len(values):
        raise UserError(f"{where}: a value is repeated")
    return key, values


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The shortest distinct dotted suffixes of the keys, without ``init_args``:
    ``model.g_optimizer.init_args.lr`` and ``model.d_optimizer.init_args.lr`` -> ``g_optimizer.lr``, ``d_optimizer.lr``."""
    parts = {k: [p for p in k.split(".") if p != "init_args"] for k in keys}
    names = {}
    for key, own in parts.items():
        n = 1
        while n < len(own) and any(o != key and other[-n:] == own[-n:] for o, other in parts.items()):
            n += 1
        names[key] = ".".join(own[-n:])
    return names if len(set(names.values())) == len(names) else {k: k for k in keys}


def _safe(text: str) -> str:
    """A value as a folder-name piece: brackets, quotes and spaces dropped, commas and other signs as ``-``."""
    text = re.sub(r"[\[\]{}()'\" ]", "", text)
    return re.sub(r"[^A-Za-z0-9._+=-]", "-", text) or "empty"


def point_names(points: Sequence[dict[str, str]]) -> list[str]:
    """Deterministic, distinct folder names of the grid points, e.g. ``n_critic=2,lr=0.001``; ``base`` for none."""
    keys = list(points[0]) if points else []
    short = short_names(keys)
    names = [",".join(f"{short[k]}={_safe(v)}" for k, v in p.items()) or "base" for p in points]
    if len(set(names)) != len(names):
        names = [f"{n}-p{i}" for i, n in enumerate(names)]
    return names


def sweep_value(value: Any) -> str:
    """A sweep-file value as the command-line text ``wandb agent`` gives it (``${args}`` writes ``--key=str(value)``)."""
    return str(value)


def read_sweep_file(path: str) -> dict[str, Any]:
    """A W&B sweep file as ``{"name", "configs", "grid", "fixed", "seeds", "args"}`` for an offline sweep."""
    if not os.path.isfile(path):
        raise DataNotFound(f"--sweep_file: no file at {path!r}")
    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise UserError(f"--sweep_file: {path!r} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("parameters"), dict):
        raise UserError(f"--sweep_file: {path!r} needs a 'parameters' mapping (W&B sweep format)")
    command = [str(c) for c in spec.get("command") or []]
    if "fit" not in command:
        raise UserError(f"--sweep_file: {path!r}: 'command' must run `python -m gan_lightning fit ... ${{args}}`")
    configs, args, tokens = [], [], iter(command[command.index("fit") + 1:])
    for token in tokens:
        if token.startswith("${"):
            continue
        if token == "--config":
            configs.append(next(tokens, ""))
        elif token.startswith("--config="):
            configs.append(token.split("=", 1)[1])
        else:
            args.append(token)
    grid: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    seeds: Optional[list[int]] = None
    for key, param in spec["parameters"].items():
        where = f"--sweep_file {path}: parameters.{key}"
        if not isinstance(param, dict) or not ("values" in param or "value" in param):
            raise UserError(f"{where}: only 'values: [...]' or 'value: ...' can run offline")
        values = param["values"] if "values" in param else [param["value"]]
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: 'values' must be a non-empty list")
        if key == "seed_everything":
            try:
                seeds = [int(v) for v in values]
            except (TypeError, ValueError):
                raise UserError(f"{where}: seeds must be integers, got {values}") from None
            continue
        _check_key(key, where)
        if "values" in param:
            grid[key] = [sweep_value(v) for v in values]
        else:
            fixed[key] = sweep_value(param["value"])
    return {"name": spec.get("name") or Path(path).stem, "configs": configs, "grid": grid, "fixed": fixed,
            "seeds": seeds, "args": args}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m gan_lightning sweep", allow_abbrev=False,
        description="Run an experiment over a grid of overrides and seeds, offline; unknown arguments "
                    "(e.g. --trainer.max_steps=100 --wandb=disabled) go to every run.")
    parser.add_argument("--config", action="append", default=[],
                        help="Experiment config (repeatable, merged in order), e.g. experiments/toy_ring.yaml.")
    parser.add_argument("--sweep_file", default=None,
                        help="W&B sweep file (experiments/sweeps/<name>.yaml): grid, seeds and config from it.")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="A LightningCLI key and its values (repeatable; the grid is their product).")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="Seeds of every point (default: the sweep file's, else 0).")
    parser.add_argument("--name", default=None,
                        help="Sweep name (default: the sweep file's name, else the swept keys).")
    parser.add_argument("--experiment", default=None, help="Experiment name (default: the first config's stem).")
    parser.add_argument("--runs_root", default="runs", help="Root of the run directories.")
    parser.add_argument("--parallel", type=int, default=1, help="Runs at a time.")
    parser.add_argument("--dry_run", action="store_true", help="Print the commands and run nothing.")
    parser.add_argument("--overwrite", action="store_true", help="Run again the runs that already finished.")
    return parser


def plan(argv: Sequence[str]) -> tuple[argparse.Namespace, str, str, list[Run]]:
    """Parse the arguments into ``(args, name, sweep_dir, runs)``; nothing is run or written."""
    argv = list(argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args, unknown = build_parser().parse_known_args(argv)
    extra = unknown + passthrough
    for token in extra:
        option = token[2:].split("=", 1)[0] if token.startswith("--") else ""
        if option in RESERVED:
            hint = {"seed_everything": "--seeds", "run_dir": "--runs_root and --name"}.get(option, "--config")
            raise UserError(f"--{option}: the sweep sets it for every run; use {hint} instead")
    if args.parallel < 1:
        raise UserError(f"--parallel: must be >= 1, got {args.parallel}")

    from_file: dict[str, Any] = read_sweep_file(args.sweep_file) if args.sweep_file else {}
    configs = list(from_file.get("configs", [])) + list(args.config)
    if not configs:
        raise UserError("--config: name the experiment, e.g. --config experiments/toy_ring.yaml (or --sweep_file)")
    for config in configs:
        if not os.path.isfile(config):
            raise DataNotFound(f"--config: no file at {config!r}; experiments live in experiments/<name>.yaml")
    grid: dict[str, list[str]] = dict(from_file.get("grid", {}))
    for spec in args.grid:
        key, values = parse_grid(spec)
        grid[key] = values
    fixed: dict[str, str] = {k: v for k, v in from_file.get("fixed", {}).items() if k not in grid}
    seeds = args.seeds if args.seeds is not None else (from_file.get("seeds") or [0])
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: a seed is repeated in {seeds}")

    experiment = args.experiment or Path(configs[0]).stem
    short = short_names(list(grid))
    name = args.name or from_file.get("name") or ("-".join(short[k] for k in grid) if grid else "seeds")
    name = _safe(str(name))
    sweep_dir = os.path.join(args.runs_root, experiment, f"sweep-{name}")

    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    runs = []
    for point, point_name in zip(points, point_names(points)):
        for seed in seeds:
            run_dir = os.path.join(sweep_dir, f"{point_name}-seed{seed}")
            command = [sys.executable, "-m", "gan_lightning", "fit"]
            for config in configs:
                command += ["--config", config]
            if args.experiment:
                command.append(f"--experiment={args.experiment}")
            command += list(from_file.get("args", [])) + extra
            command += [f"--{k}={v}" for k, v in {**fixed, **point}.items()]
            command += [f"--seed_everything={seed}", f"--run_dir={run_dir}"]
            runs.append(Run(point, point_name, seed, run_dir, command))
    return args, name, sweep_dir, runs


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.read().replace("\r", "\n").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if not errors:
        return lines[-1][:200] if lines else ""
    i = errors[-1]
    text = lines[i] + (" " + lines[i + 1].lstrip("- ") if lines[i].endswith(":") and i + 1 < len(lines) else "")
    return text[:200]


def _write_json(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def _previous(sweep_dir: str) -> dict[str, dict[str, Any]]:
    try:
        with open(os.path.join(sweep_dir, "sweep.json")) as f:
            return {r["run_dir"]: r for r in json.load(f).get("runs", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs the runs may use, as ``CUDA_VISIBLE_DEVICES`` entries: the ones ``CUDA_VISIBLE_DEVICES`` lists
    when it is set (indices or UUIDs, up to the first empty or negative entry, as CUDA reads it), else
    ``0 .. n-1`` for the n CUDA devices torch sees (none on a machine without CUDA)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        gpus = []
        for entry in environ["CUDA_VISIBLE_DEVICES"].split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):
                break
            gpus.append(entry)
        return gpus
    import torch  # only here: the sweep itself needs no torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slots(gpus: Sequence[str], parallel: int) -> list[Optional[str]]:
    """``CUDA_VISIBLE_DEVICES`` of each of the ``parallel`` slots: ``len(gpus) // parallel`` GPUs of their own per
    slot (disjoint, in order; the remainder unused, so every run gets the same number), or, with fewer GPUs than
    slots, one GPU each round-robin (slots share). None (leave the variable as it is) without GPUs or with one
    slot, whose runs see every visible GPU."""
    if not gpus or parallel == 1:
        return [None] * parallel
    if len(gpus) < parallel:
        return [gpus[i % len(gpus)] for i in range(parallel)]
    k = len(gpus) // parallel
    return [",".join(gpus[i * k:(i + 1) * k]) for i in range(parallel)]


def execute(runs: list[Run], parallel: int, env: dict[str, str], on_change: Any = None,
            slots: Sequence[Optional[str]] = ()) -> None:
    """Run the pending runs, ``parallel`` at a time, each writing to its ``fit.log`` (appended to when it resumes);
    a failure stops nothing. A run takes a free slot and gives it back when it ends; with ``slots`` (one
    ``CUDA_VISIBLE_DEVICES`` value or None per slot, :func:`gpu_slots`) it runs with its slot's GPUs."""
    pending = [r for r in runs if r.status == "pending"]
    free = list(range(parallel))
    devices = list(slots) or [None] * parallel
    active: list[tuple[Run, subprocess.Popen, Any, float, int]] = []
    total, started = len(pending), 0
    try:
        while pending or active:
            while pending and len(active) < parallel:
                run, slot = pending.pop(0), free.pop(0)
                started += 1
                os.makedirs(run.run_dir, exist_ok=True)
                log = open(run.log, "a" if run.resume_from else "w")
                run_env = dict(env)
                run.gpus = devices[slot]
                if run.gpus is not None:
                    run_env["CUDA_VISIBLE_DEVICES"] = run.gpus
                what = f"resume {run.run_dir} from {run.resume_from}" if run.resume_from else f"start {run.run_dir}"
                gpus = f" (CUDA_VISIBLE_DEVICES={run.gpus})" if run.gpus is not None else ""
                print(f"[{started}/{total}] {what}{gpus}", flush=True)
                if run.resume_from:
                    log.write(f"\n# sweep: resuming from {run.resume_from}\n")
                    log.flush()
                proc = subprocess.Popen(run.argv, stdout=log, stderr=subprocess.STDOUT, env=run_env,
                                        stdin=subprocess.DEVNULL)
                active.append((run, proc, log, time.perf_counter(), slot))
            time.sleep(0.2)
            for item in list(active):
                run, proc, log, start, slot = item
                if proc.poll() is None:
                    continue
                log.close()
                active.remove(item)
                free.append(slot)
                free.sort()
                run.returncode, run.seconds = proc.returncode, time.perf_counter() - start
                run.status = "ok" if proc.returncode == 0 else "failed"
                print(f"      {run.status:<6} {run.seconds:7.1f}s {run.run_dir}", flush=True)
                if on_change:
                    on_change()
    except KeyboardInterrupt:
        for run, proc, log, start, _ in active:
            proc.terminate()  # SIGTERM: fit's Preemption writes last.ckpt, from which the next sweep resumes
        for run, proc, log, start, _ in active:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            run.status, run.returncode, run.seconds = "interrupted", proc.returncode, time.perf_counter() - start
        for run in pending:
            run.status = "interrupted"
        if on_change:
            on_change()
        raise


def summary(name: str, sweep_dir: str, runs: list[Run]) -> str:
    counts = {s: sum(r.status == s for r in runs) for s in ("ok", "skipped", "failed", "interrupted")}
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines = [f"sweep {name}: {head} ({sweep_dir})"]
    for run in runs:
        detail = f"{run.seconds:7.1f}s" if run.status in ("ok", "failed") else " " * 8
        line = f"  {run.status:<11} {detail} {run.log}" + ("  (resumed)" if run.resume_from else "")
        if run.status == "failed":
            line += f"  [exit {run.returncode}] {_last_line(run.log)}"
        lines.append(line)
    return "\n".join(lines)


def run_env(name: str, parallel: int) -> dict[str, str]:
    """The runs' environment: this one plus ``GAN_LIGHTNING_SWEEP=<name>``, and with several runs at a time
    ``OMP_NUM_THREADS`` = cores / parallel unless it is set already."""
    env = dict(os.environ, **{ENV_VAR: name})
    if parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    return env


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the sweep; 0 when every run succeeded (or finished before), 1 when any failed."""
    args, name, sweep_dir, runs = plan(sys.argv[1:] if argv is None else argv)
    env = run_env(name, args.parallel)
    slots = gpu_slots(visible_gpus(), args.parallel) if args.parallel > 1 else [None]
    previous = {} if args.overwrite else _previous(sweep_dir)
    for run in runs:
        before = previous.get(run.run_dir)
        if before and before.get("status") in ("ok", "skipped") and before.get("command") == run.command \
                and os.path.isfile(os.path.join(run.run_dir, "config.yaml")):
            run.status, run.returncode, run.seconds = "skipped", before.get("returncode"), before.get("seconds") or 0.0
        elif not args.overwrite and os.path.isfile(run.last_ckpt) \
                and (before is None or before.get("command") == run.command):
            run.resume_from = run.last_ckpt  # an unfinished attempt of this exact run

    if args.dry_run:
        prefix = " ".join(f"{k}={shlex.quote(env[k])}" for k in (ENV_VAR, "OMP_NUM_THREADS")
                          if env.get(k) != os.environ.get(k))
        for i, run in enumerate(runs):
            done = "# finished before, skipped: " if run.status == "skipped" else ""
            gpus = f" CUDA_VISIBLE_DEVICES={shlex.quote(slots[i % len(slots)])}" if slots[i % len(slots)] else ""
            print(f"{done}{prefix}{gpus} {shlex.join(run.argv)} > {shlex.quote(run.log)} 2>&1")
        return 0

    for run in runs:
        if run.status == "pending" and not run.resume_from and os.path.exists(run.run_dir):
            shutil.rmtree(run.run_dir)  # an earlier attempt that left no checkpoint, or ran another command
    if any(s is not None for s in slots):
        print("GPUs per slot: " + ", ".join(f"{i + 1}: CUDA_VISIBLE_DEVICES={s}" for i, s in enumerate(slots)),
              flush=True)

    record = {"name": name, "sweep_dir": sweep_dir, "parallel": args.parallel,
              "started": _dt.datetime.now().isoformat(timespec="seconds")}

    def save() -> None:
        _write_json(os.path.join(sweep_dir, "sweep.json"), {**record, "runs": [r.record() for r in runs]})

    save()
    try:
        execute(runs, args.parallel, env, save, slots)
    except KeyboardInterrupt:
        print(summary(name, sweep_dir, runs))
        return 130
    save()
    print(summary(name, sweep_dir, runs))
    return 1 if any(r.status != "ok" and r.status != "skipped" for r in runs) else 0


if __name__ == "__main__":  # python -m gan_lightning.commands.sweep: the same as python -m gan_lightning sweep
    from gan_lightning.commands import main as cli_main

    sys.exit(cli_main(["sweep", *sys.argv[1:]]))
