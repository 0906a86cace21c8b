"""Sweeps and run reports (``gan_lightning.commands.sweep``, ``gan_lightning.commands.report``) and their Makefile targets.

The sweep is checked through its printed commands (``--dry_run``), through fake commands for the runner, and
through one real tiny sweep on the toy ring (2 seeds x 2 losses plus a loss that fails to parse), launched
exactly as ``make sweep`` launches it. Reports are checked on fabricated run directories in the format ``fit``
writes (``config.yaml``, ``metrics.json``, Lightning's CSVLogger ``metrics.csv`` with sparse rows), where every
number is known, and on the real sweep's runs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from gan_lightning.commands import report, sweep
from gan_lightning.errors import DataNotFound, UserError

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))


def make_command(target: str, **variables: str) -> list[str]:
    """The command line ``make <target>`` runs with these variables (from ``make -n``), as argv."""
    args = ["make", "-s", "-n", target] + [f"{k}={v}" for k, v in variables.items()]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if "-m gan_lightning" in line]
    assert len(lines) == 1, out
    return shlex.split(lines[0])


def run_command(argv: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    if env is None:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop(sweep.ENV_VAR, None)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kwargs)


# ------------------------------------------------------------------------------------------------ sweep: planning

def test_parse_grid():
    assert sweep.parse_grid("model.n_critic=1,2") == ("model.n_critic", ["1", "2"])
    assert sweep.parse_grid("--model.g_optimizer.init_args.betas=[0.5,0.9],[0.0,0.99]") == \
        ("model.g_optimizer.init_args.betas", ["[0.5,0.9]", "[0.0,0.99]"])
    for bad in ("model.n_critic", "model.n_critic=", "=1,2", "model.n_critic=1,,2", "model..x=1", "a b=1",
                "model.n_critic=1,1", "seed_everything=1,2", "run_dir=a,b"):
        with pytest.raises(UserError, match=r"^--grid '"):
            sweep.parse_grid(bad)


def test_point_names_short_and_distinct():
    keys = ["model.g_optimizer.init_args.lr", "model.d_optimizer.init_args.lr", "model.n_critic"]
    assert sweep.short_names(keys) == {keys[0]: "g_optimizer.lr", keys[1]: "d_optimizer.lr", keys[2]: "n_critic"}
    points = [{"model.n_critic": "1", "model.loss": "hinge"}, {"model.n_critic": "2", "model.loss": "hinge"}]
    assert sweep.point_names(points) == ["n_critic=1,loss=hinge", "n_critic=2,loss=hinge"]
    assert sweep.point_names([{"model.x": "[0.5, 0.9]"}]) == ["x=0.5-0.9"]
    assert sweep.point_names([{}]) == ["base"]


def test_sweep_dry_run_commands(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = tmp_path / "runs"
    code = sweep.main(["--config", "experiments/toy_ring.yaml", "--grid", "model.n_critic=1,2",
                       "--grid", "model.g_optimizer.init_args.lr=1e-3,2e-4", "--seeds", "0", "1", "2",
                       "--runs_root", str(root), "--name", "demo", "--dry_run",
                       "--trainer.max_steps=100", "--wandb=disabled"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 * 2 * 3
    seen = set()
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "GAN_LIGHTNING_SWEEP=demo"
        assert argv[1:6] == [sys.executable, "-m", "gan_lightning", "fit", "--config"]
        assert argv[6] == "experiments/toy_ring.yaml"
        assert "--trainer.max_steps=100" in argv and "--wandb=disabled" in argv
        critic = [a for a in argv if a.startswith("--model.n_critic=")]
        lr = [a for a in argv if a.startswith("--model.g_optimizer.init_args.lr=")]
        seed = [a for a in argv if a.startswith("--seed_everything=")]
        run_dir = [a for a in argv if a.startswith("--run_dir=")]
        assert len(critic) == len(lr) == len(seed) == len(run_dir) == 1
        c, l, s = critic[0].split("=")[1], lr[0].split("=")[1], seed[0].split("=")[1]
        expected_dir = root / "toy_ring" / "sweep-demo" / f"n_critic={c},lr={l}-seed{s}"
        assert run_dir[0] == f"--run_dir={expected_dir}"
        assert argv[-3:] == [">", str(expected_dir / "fit.log"), "2>&1"]
        seen.add((c, l, s))
    assert seen == {(c, l, s) for c in ("1", "2") for l in ("1e-3", "2e-4") for s in ("0", "1", "2")}
    assert not root.exists()  # a dry run writes nothing


def test_sweep_rejects_user_mistakes(tmp_path: Path):
    base = ["--config", "experiments/toy_ring.yaml", "--runs_root", str(tmp_path), "--dry_run"]
    with pytest.raises(UserError, match=r"^--grid 'model.n_critic'"):
        sweep.main(base + ["--grid", "model.n_critic"])
    with pytest.raises(UserError, match=r"^--seed_everything: .*--seeds"):
        sweep.main(base + ["--seed_everything=3"])
    with pytest.raises(UserError, match=r"--parallel"):
        sweep.main(base + ["--parallel", "0"])
    with pytest.raises(UserError, match=r"--seeds"):
        sweep.main(base + ["--seeds", "1", "1"])
    with pytest.raises(DataNotFound, match=r"^--config: no file at 'experiments/nope.yaml'"):
        sweep.main(["--config", "experiments/nope.yaml", "--dry_run"])
    with pytest.raises(UserError, match=r"^--config"):
        sweep.main(["--dry_run"])


def test_sweep_runner_env_logs_and_failures(tmp_path: Path):
    """Every run gets the sweep's name in its environment and its output in fit.log; a failing run stops none."""
    script = ("import os, sys; print('sweep', os.environ['GAN_LIGHTNING_SWEEP'], 'threads', "
              "os.environ.get('OMP_NUM_THREADS')); sys.exit(int(sys.argv[1]))")
    runs = [sweep.Run({"x": str(rc)}, f"x={rc}", 0, str(tmp_path / f"x={rc}-seed0"),
                      [sys.executable, "-c", script, str(rc)]) for rc in (0, 3, 0)]
    env = sweep.run_env("demo", parallel=2)
    sweep.execute(runs, parallel=2, env=env)
    assert [r.status for r in runs] == ["ok", "failed", "ok"]
    assert [r.returncode for r in runs] == [0, 3, 0]
    threads = env["OMP_NUM_THREADS"]
    for r in runs:
        assert Path(r.log).read_text().strip() == f"sweep demo threads {threads}"
    text = sweep.summary("demo", str(tmp_path), runs)
    assert text.splitlines()[0] == f"sweep demo: 2 ok, 1 failed ({tmp_path})"
    assert re.search(r"failed .*x=3-seed0/fit.log  \[exit 3\]", text)


def test_gpu_slots_give_each_slot_its_own_gpus():
    """N slots split the visible GPUs into N equal disjoint sets, in order (a remainder stays unused so every run
    gets as many); fewer GPUs than slots are shared round-robin; no GPUs or one slot change nothing."""
    gpus = ["0", "1", "2", "3", "4"]
    assert sweep.gpu_slots(gpus[:4], 2) == ["0,1", "2,3"]
    assert sweep.gpu_slots(gpus, 2) == ["0,1", "2,3"]
    assert sweep.gpu_slots(gpus, 5) == gpus
    assert sweep.gpu_slots(gpus[:2], 3) == ["0", "1", "0"]
    assert sweep.gpu_slots(["GPU-a1", "GPU-b2"], 2) == ["GPU-a1", "GPU-b2"]
    assert sweep.gpu_slots([], 3) == [None, None, None]
    assert sweep.gpu_slots(gpus, 1) == [None]
    for parallel in range(1, 7):  # disjoint whenever there are enough GPUs
        slots = [s for s in sweep.gpu_slots(gpus, parallel) if s is not None]
        ids = [g for s in slots for g in s.split(",")]
        if parallel > 1 and parallel <= len(gpus):
            assert len(ids) == len(set(ids)) == parallel * (len(gpus) // parallel)


def test_visible_gpus_follow_cuda_visible_devices():
    import torch

    assert sweep.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert sweep.visible_gpus({"CUDA_VISIBLE_DEVICES": " GPU-a1 , GPU-b2"}) == ["GPU-a1", "GPU-b2"]
    assert sweep.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]  # CUDA stops at an invalid entry
    assert sweep.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert sweep.visible_gpus({}) == [str(i) for i in range(torch.cuda.device_count())]


def test_sweep_runner_gives_concurrent_runs_different_gpus(tmp_path: Path):
    """Five runs, two slots with two GPUs each: every run sees its slot's CUDA_VISIBLE_DEVICES, runs that overlap
    in time never share a slot, and both slots are used."""
    script = ("import os, sys, time; print(os.environ.get('CUDA_VISIBLE_DEVICES'), time.time(), flush=True); "
              "time.sleep(float(sys.argv[1])); print(time.time())")
    runs = [sweep.Run({"x": str(i)}, f"x={i}", 0, str(tmp_path / f"x={i}-seed0"),
                      [sys.executable, "-c", script, str(0.3 + 0.2 * (i % 2))]) for i in range(5)]
    sweep.execute(runs, parallel=2, env=dict(os.environ), slots=sweep.gpu_slots(["0", "1", "2", "3"], 2))
    assert [r.status for r in runs] == ["ok"] * 5
    spans = []
    for r in runs:
        first, second = Path(r.log).read_text().split("\n")[:2]
        devices, start = first.split()
        assert devices == r.gpus and devices in ("0,1", "2,3")
        spans.append((float(start), float(second), devices))
    assert {d for _, _, d in spans} == {"0,1", "2,3"}
    for i, (s1, e1, d1) in enumerate(spans):
        for s2, e2, d2 in spans[i + 1:]:
            if s1 < e2 and s2 < e1:
                assert d1 != d2, spans


# ------------------------------------------------------------------------------------------------ W&B sweep files

def agent_command(spec: dict, params: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` runs for one parameter set, built with wandb's own argument formatting."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    formats = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    formats.update(env=[], interpreter=[sys.executable])
    command = []
    for token in spec["command"]:
        token = str(token)
        command += formats[token[2:-1]] if token.startswith("${") else [token]
    return command


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_wandb_sweep_file_is_valid(path: Path, capsys: pytest.CaptureFixture):
    """The file is a W&B grid sweep whose parameters are LightningCLI options: the command ``wandb agent`` builds
    parses (``fit --print_config`` through the CLI's entry point) and sets every parameter to its value;
    ``sweep`` reads the same grid."""
    from gan_lightning.commands import main as cli_main

    spec = yaml.safe_load(path.read_text())
    assert spec["method"] == "grid" and spec["metric"]["name"].startswith("val/")
    assert spec["command"][:5] == ["${env}", "${interpreter}", "-m", "gan_lightning", "fit"]
    assert "${args}" in spec["command"]
    params = spec["parameters"]
    assert all(isinstance(p["values"], list) and p["values"] for p in params.values())
    for pick in (0, -1):  # first and last value of every parameter
        chosen = {k: p["values"][pick] for k, p in params.items()}
        command = agent_command(spec, chosen) + ["--print_config"]
        assert command[:4] == [sys.executable, "-m", "gan_lightning", "fit"]
        capsys.readouterr()
        try:
            code = cli_main(command[3:])
        except SystemExit as exited:  # --print_config exits once it has printed
            code = exited.code
        assert code in (0, None), capsys.readouterr().err[-2000:]
        printed = yaml.safe_load(capsys.readouterr().out)
        for key, value in chosen.items():
            node = printed
            for part in key.split("."):
                node = node[part]
            assert node == value, key
    _, name, sweep_dir, runs = sweep.plan(["--sweep_file", str(path), "--runs_root", "R"])
    grid = {k: p["values"] for k, p in params.items() if k != "seed_everything"}
    assert name == spec["name"] and sweep_dir == os.path.join("R", Path(runs[0].command[5]).stem, f"sweep-{name}")
    assert len(runs) == math.prod(len(v) for v in grid.values()) * len(params["seed_everything"]["values"])
    assert {r.seed for r in runs} == set(params["seed_everything"]["values"])
    for r in runs:
        for key, value in r.point.items():
            assert f"--{key}={value}" in r.command and float(value) in grid[key]


# ------------------------------------------------------------------------------------------------ fabricated runs

CSV_COLUMNS = ["epoch", "step", "train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/modes",
               "val/high_quality", "progress/seconds", "progress/kimg"]


def fabricate_run(path: Path, experiment: str, seed: int, n_critic: int, data: str, curves: dict[str, np.ndarray],
                  final: dict[str, float] | None, steps: np.ndarray, seconds: np.ndarray,
                  columns: list[str] = CSV_COLUMNS) -> None:
    """A run directory as ``fit`` writes it: config.yaml, metrics.json (if ``final``), and metrics.csv whose
    training values and progress sit on one row per logged step and whose val/ values sit on rows of their own."""
    path.mkdir(parents=True)
    config = {
        "seed_everything": seed,
        "trainer": {"max_steps": int(steps[-1]), "default_root_dir": str(path),
                    # an object the config could not serialize: its repr differs by memory address only
                    "plugins": [f"Unable to serialize instance <a.B object at 0x{abs(hash(str(path))):x}>"],
                    "callbacks": [{"class_path": "gan_lightning.metrics.ToyMetrics",
                                   "init_args": {"every_n_steps": 100}}]},
        "model": {"loss": "non_saturating", "n_critic": n_critic,
                  "g_optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001, "betas": [0.5, 0.99]}}},
        "data": {"class_path": "gan_lightning.data.ToyDataModule", "init_args": {"name": data, "batch_size": 100}},
        "experiment": experiment, "run_dir": str(path), "wandb": "offline",
        "checkpoint": {"dirpath": str(path / "checkpoints"), "save_last": True},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if final is not None:
        (path / "metrics.json").write_text(json.dumps({"step": int(steps[-1]), **final}))
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in CSV_COLUMNS if c in columns])
        writer.writeheader()
        for i, step in enumerate(steps):
            row = {"epoch": 0, "step": int(step), "progress/seconds": seconds[i], "progress/kimg": step * 0.1}
            row.update({k: curves[k][i] for k in curves if k.startswith("train/")})
            writer.writerow({k: v for k, v in row.items() if k in columns})
            if i % 2 == 1:  # val/ metrics every other logged step, on a row of their own
                writer.writerow({k: v for k, v in {"step": int(step), "val/modes": curves["val/modes"][i],
                                                   "val/high_quality": curves["val/high_quality"][i]}.items()
                                 if k in columns})


STEPS = np.array([50, 100, 150, 200])
# Final metrics of the four runs: experiment toy_a (n_critic 1, ring) and toy_b (n_critic 2, grid), seeds 0 and 1.
FINAL = {
    ("toy_a", 0): {"modes": 8.0, "high_quality": 0.92, "reverse_kl": 0.011},
    ("toy_a", 1): {"modes": 7.0, "high_quality": 0.81, "reverse_kl": 0.204},
    ("toy_b", 0): {"modes": 21.0, "high_quality": 0.55, "reverse_kl": 0.43},
    ("toy_b", 1): {"modes": 24.0, "high_quality": 0.71, "reverse_kl": None},  # reverse KL not finite
}


def curves_for(exp: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([ord(exp[-1]), seed])
    out = {k: rng.uniform(0.1, 2.0, len(STEPS)) for k in ("train/d_loss", "train/g_loss")}
    out["train/d_real"] = rng.uniform(0.5, 0.9, len(STEPS))
    out["train/d_fake"] = rng.uniform(0.1, 0.5, len(STEPS))
    final = FINAL[(exp, seed)]
    out["val/modes"] = np.concatenate([rng.uniform(0, 5, len(STEPS) - 1), [final["modes"]]])
    out["val/high_quality"] = np.concatenate([rng.uniform(0, 0.5, len(STEPS) - 1), [final["high_quality"]]])
    return out


@pytest.fixture
def fabricated(tmp_path: Path) -> dict[tuple[str, int], Path]:
    """runs/toy_a/<id>-seed{0,1} and runs/toy_b/<id>-seed{0,1}; toy_b seed 1 has no metrics.json (final values come
    from the last val/ rows of its metrics.csv)."""
    runs = {}
    for exp, n_critic, data in (("toy_a", 1, "ring"), ("toy_b", 2, "grid")):
        for seed in (0, 1):
            path = tmp_path / "runs" / exp / f"20260101-000000-seed{seed}"
            final = None if (exp, seed) == ("toy_b", 1) else FINAL[(exp, seed)]
            fabricate_run(path, exp, seed, n_critic, data, curves_for(exp, seed), final, STEPS,
                          seconds=STEPS * (0.05 + 0.01 * seed))
            runs[(exp, seed)] = path
    return runs


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 10_000, path
    with Image.open(path) as img:
        img.load()
        assert img.width >= 600 and img.height >= 300
        pixels = np.asarray(img.convert("RGB"), dtype=float)
    assert pixels.std() > 10  # drawn on, not a blank canvas


def test_report_on_fabricated_runs(tmp_path: Path, fabricated: dict, capsys: pytest.CaptureFixture):
    out = tmp_path / "report"
    capsys.readouterr()
    code = report.main([str(tmp_path / "runs" / "toy_a"), str(tmp_path / "runs" / "toy_b"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    rows = read_csv_rows(out / "report.csv")
    assert len(rows) == 4
    by_run = {(r["experiment"], int(r["seed"])): r for r in rows}
    assert set(by_run) == set(FINAL)
    # Only the config values that differ (init_args left out of the names); plumbing (run_dir, experiment, seed,
    # paths, wandb, plugins whose repr differs by address) left out.
    config_columns = [c for c in rows[0] if "." in c]
    assert config_columns == ["model.n_critic", "data.name"]
    for (exp, seed), row in by_run.items():
        assert row["model.n_critic"] == ("1" if exp == "toy_a" else "2")
        assert row["data.name"] == ("ring" if exp == "toy_a" else "grid")
        assert row["run"] == f"{exp}/20260101-000000-seed{seed}" and row["step"] == "200"
        for metric, value in FINAL[(exp, seed)].items():
            if (exp, seed) == ("toy_b", 1) and metric == "reverse_kl":
                assert row[metric] == ""  # not in metrics.csv, no metrics.json
            elif value is None:
                assert row[metric] == ""
            else:
                assert float(row[metric]) == pytest.approx(value, rel=1e-12)
        assert float(row["seconds"]) == pytest.approx(200 * (0.05 + 0.01 * seed))
        assert float(row["kimg"]) == pytest.approx(20.0)
        assert row["group"] == ("g1" if exp == "toy_a" else "g2")

    groups = {g["group"]: g for g in read_csv_rows(out / "groups.csv")}
    assert set(groups) == {"g1", "g2"}
    for g, exp in (("g1", "toy_a"), ("g2", "toy_b")):
        assert groups[g]["runs"] == "2" and groups[g]["seeds"] == "0 1"
        for metric in ("modes", "high_quality", "reverse_kl"):
            values = np.array([FINAL[(exp, s)][metric] for s in (0, 1) if FINAL[(exp, s)][metric] is not None])
            assert int(groups[g][f"{metric}_n"]) == len(values)
            assert float(groups[g][f"{metric}_mean"]) == pytest.approx(np.mean(values), rel=1e-12)
            if len(values) > 1:
                assert float(groups[g][f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-12)
            else:
                assert groups[g][f"{metric}_std"] == ""

    md = (out / "report.md").read_text()
    for exp in ("toy_a", "toy_b"):
        for seed in (0, 1):
            assert f"`{exp}/20260101-000000-seed{seed}`" in md
    # Two experiments: their differing settings are listed once per experiment, not repeated on every row.
    metric_header = "modes | high_quality | reverse_kl | seconds | kimg |"
    assert f"| run | group | seed | step | {metric_header}" in md
    assert f"| group | experiment | runs | {metric_header}" in md
    assert "| setting | toy_a | toy_b |\n| --- | --- | --- |\n| model.n_critic | 1 | 2 |\n" \
           "| data.name | ring | grid |\n" in md
    modes_a = [FINAL[("toy_a", s)]["modes"] for s in (0, 1)]
    group_a = f"{np.mean(modes_a):.4g} ± {np.std(modes_a, ddof=1):.4g} (n=2)"
    assert f"| g1 | toy_a | 2 | {group_a} |" in md
    assert re.search(r"^g1 +toy_a +2 +" + re.escape(group_a), printed, re.M)
    assert re.search(r"^model.n_critic +1 +2$", printed, re.M)
    *tables, last = printed.splitlines()
    assert max(len(line) for line in tables) <= report.WIDTH
    assert last == f"report of 4 runs in 2 groups: {out}{os.sep} (report.md, report.csv, groups.csv, " \
                   "curves_step.png, curves_time.png)"
    assert "![curves_step](curves_step.png)" in md and "![curves_time](curves_time.png)" in md
    check_png(out / "curves_step.png")
    check_png(out / "curves_time.png")


def resolved_config(experiment: str, capsys: pytest.CaptureFixture) -> dict[str, Any]:
    """The config ``fit --config experiments/<experiment>.yaml`` resolves (every class's defaults filled in)."""
    from gan_lightning.commands import main as cli_main

    capsys.readouterr()
    with pytest.raises(SystemExit):  # --print_config exits once it has printed
        cli_main(["fit", "--config", str(REPO / "experiments" / f"{experiment}.yaml"), "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


PLUMBING_WORDS = ("callbacks", "run_dir", "default_root_dir", "checkpoint", "wandb", "logger", "plugins", "seed",
                  "root", "cache_dir", "experiment")


@pytest.mark.slow
def test_report_of_two_different_experiments_fits_on_a_screen(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Two experiments that differ in almost everything (a conditional DCGAN on MNIST with its sample and metric
    callbacks, a ResNet SNGAN on CIFAR-10), two seeds each, with the config.yaml fit writes (resolved, run
    directory and checkpoint folder filled in): the printed tables fit in WIDTH columns; the group table is group,
    experiment, runs and one column per metric; the model and data settings that differ are listed once per
    experiment; no table or CSV column shows plumbing (callbacks, paths, loggers, seeds)."""
    fids = {("cgan_mnist5k", 0): 31.5, ("cgan_mnist5k", 1): 35.5, ("sngan_proj_cifar10", 0): 20.25,
            ("sngan_proj_cifar10", 1): 24.0}
    for experiment in ("cgan_mnist5k", "sngan_proj_cifar10"):
        config = resolved_config(experiment, capsys)
        for seed in (0, 1):
            run = tmp_path / "runs" / experiment / f"2026010{seed}-000000-seed{seed}"
            run.mkdir(parents=True)
            config.update(seed_everything=seed, experiment=experiment, run_dir=str(run), wandb="auto")
            config["trainer"]["default_root_dir"] = str(run)
            config["checkpoint"]["dirpath"] = str(run / "checkpoints")
            (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            (run / "metrics.json").write_text(json.dumps({"step": 4000, "fid": fids[(experiment, seed)]}))
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "runs" / "cgan_mnist5k"), str(tmp_path / "runs" / "sngan_proj_cifar10"),
                        "--out", str(out)]) == 0
    *tables, _ = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in tables) <= report.WIDTH
    md = (out / "report.md").read_text()
    fid = {e: f"{np.mean(v):.4g} ± {np.std(v, ddof=1):.4g} (n=2)"
           for e in ("cgan_mnist5k", "sngan_proj_cifar10") for v in [[fids[(e, s)] for s in (0, 1)]]}
    assert "| group | experiment | runs | fid |\n| --- | --- | --- | --- |\n" \
           f"| g1 | cgan_mnist5k | 2 | {fid['cgan_mnist5k']} |\n" \
           f"| g2 | sngan_proj_cifar10 | 2 | {fid['sngan_proj_cifar10']} |\n" in md
    settings = md.split("## Settings")[1].split("## Runs")[0]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("| ").split(" | ")]
                                               for line in settings.splitlines() if line.startswith("| "))}
    assert rows["setting"] == ["cgan_mnist5k", "sngan_proj_cifar10"]
    assert rows["model.generator"] == ["DCGANGenerator", "ResNetGenerator"]
    assert rows["data"] == ["EmbeddedMNIST", "TorchvisionImages"]
    assert len(rows) > 10  # many settings differ, each on a line of its own
    setting_columns = [c for c in read_csv_rows(out / "report.csv")[0]
                       if c not in ("run", "group", "experiment", "seed", "step", "fid", "path")]
    assert set(setting_columns) == set(rows) - {"setting", "---"}
    for key in setting_columns:
        assert not any(word in key for word in PLUMBING_WORDS), key


def test_report_curves_mean_and_band(fabricated: dict):
    """A group's curve is the per-step mean over its runs, its band the sample standard deviation; against wall
    time, x is the runs' mean seconds at each step."""
    notes: list[str] = []
    runs = [report.read_run(fabricated[("toy_a", s)], notes) for s in (0, 1)]
    assert notes == []
    for key in ("train/d_loss", "train/d_real"):
        stacked = np.stack([curves_for("toy_a", s)[key] for s in (0, 1)])
        agg = report.aggregate(runs, key, time_axis=False)
        np.testing.assert_array_equal(agg["x"], STEPS)
        np.testing.assert_allclose(agg["mean"], stacked.mean(0), rtol=1e-12)
        np.testing.assert_allclose(agg["std"], stacked.std(0, ddof=1), rtol=1e-12)
        agg = report.aggregate(runs, key, time_axis=True)
        np.testing.assert_allclose(agg["x"], STEPS * np.mean([0.05, 0.06]), rtol=1e-12)
        single = report.aggregate(runs[:1], key, time_axis=False)  # one run: its values, no band
        np.testing.assert_allclose(single["mean"], stacked[0], rtol=1e-12)
        assert single["std"].isna().all()
    agg = report.aggregate(runs, "val/modes", time_axis=False)  # logged every other step
    np.testing.assert_array_equal(agg["x"], STEPS[1::2])
    modes = np.stack([curves_for("toy_a", s)["val/modes"][1::2] for s in (0, 1)])
    np.testing.assert_allclose(agg["mean"], modes.mean(0))


def test_report_wall_time_of_a_step(tmp_path: Path):
    """Rows without progress/seconds (val/ rows) get the time of their step: interpolated between the rows that
    have it, extrapolated past them at the last rate, never below 0."""
    (tmp_path / "metrics.csv").write_text("step,progress/seconds,val/modes\n1,0.5,\n3,0.9,\n5,,2.0\n2,,1.0\n")
    series = report.read_csv(tmp_path / "metrics.csv")
    np.testing.assert_array_equal(series["val/modes"].dropna().index, [2, 5])
    np.testing.assert_allclose(report.seconds_at(series, np.array([0.0, 1.0, 2.0, 5.0])), [0.3, 0.5, 0.7, 1.3])
    np.testing.assert_allclose(report.seconds_at(series, np.array([-10.0])), [0.0])


def test_report_tolerates_missing_files_and_columns(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = tmp_path / "runs" / "toy_c"
    cols = [c for c in CSV_COLUMNS if c not in ("train/d_real", "progress/seconds")]
    fabricate_run(root / "r-seed0", "toy_c", 0, 1, "ring", curves_for("toy_a", 0), FINAL[("toy_a", 0)], STEPS,
                  STEPS * 0.1, columns=cols)
    fabricate_run(root / "r-seed1", "toy_c", 1, 1, "ring", curves_for("toy_a", 1), FINAL[("toy_a", 1)], STEPS,
                  STEPS * 0.1, columns=cols)
    (root / "r-seed1" / "metrics.csv").unlink()
    (root / "r-seed2").mkdir()
    (root / "r-seed2" / "metrics.json").write_text(json.dumps({"step": 10, "modes": 3.0}))  # no config.yaml
    out = tmp_path / "out"
    assert report.main([str(root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    expected = [f"{root / 'r-seed1'}: no metrics.csv; left out of the curves",
                "no run's metrics.csv has a train/d_real column; not plotted",
                "no run's metrics.csv has a progress/seconds column; no plot against wall time",
                f"{root / 'r-seed2'}: no config.yaml; its config columns are left empty and it forms its own group"]
    for line in expected:
        assert f"note: {line}\n" in err
        assert f"- {line}" in (out / "report.md").read_text()
    rows = read_csv_rows(out / "report.csv")
    assert [r["run"] for r in rows] == ["r-seed0", "r-seed1", "r-seed2"]
    assert [r["group"] for r in rows] == ["g1", "g1", "g2"]
    assert [r["modes"] for r in rows] == ["8.0", "7.0", "3.0"]
    check_png(out / "curves_step.png")
    assert not (out / "curves_time.png").exists()


def test_report_rejects_unknown_source(tmp_path: Path):
    with pytest.raises(DataNotFound, match=r"^'nope': no such run directory"):
        report.main(["nope", "--runs_root", str(tmp_path), "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFound, match=r"no run directories"):
        report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_make_report_target(tmp_path: Path, fabricated: dict):
    """``make report RUNS=... OUT=...`` runs the report with those sources and writes its documented files."""
    out = tmp_path / "made"
    argv = make_command("report", RUNS=f"{tmp_path / 'runs' / 'toy_a'} {tmp_path / 'runs' / 'toy_b'}", OUT=str(out))
    assert argv[1:4] == ["-m", "gan_lightning", "report"]
    done = run_command(argv)
    assert done.returncode == 0, done.stderr
    assert len(read_csv_rows(out / "report.csv")) == 4 and len(read_csv_rows(out / "groups.csv")) == 2
    assert (out / "report.md").is_file()
    check_png(out / "curves_step.png")
    check_png(out / "curves_time.png")
    # EXP= alone reports runs/<EXP> into the default folder.
    assert make_command("report", EXP="toy_ring")[-1] == "runs/toy_ring"


def test_make_help_lists_workflow_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert re.search(r"^\s+sweep\s+\S", out, re.M) and re.search(r"^\s+report\s+\S", out, re.M)


def test_make_clean_keeps_runs_and_clean_runs_removes_them(tmp_path: Path):
    """``make clean`` (run on a scratch folder) removes wandb/, lightning_logs/ and the caches but keeps runs/ and
    its checkpoints; only the explicit ``make clean-runs`` removes runs/."""
    ckpt = tmp_path / "runs" / "toy_ring" / "r-seed0" / "checkpoints" / "last.ckpt"
    for folder in ("wandb/offline-run-1", "lightning_logs/version_0", ".pytest_cache/v", "pkg/__pycache__"):
        (tmp_path / folder).mkdir(parents=True)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    (tmp_path / "pkg" / "module.py").write_text("x = 1\n")
    make = ["make", "-s", "-f", str(REPO / "Makefile"), "-C", str(tmp_path)]
    subprocess.run(make + ["clean"], capture_output=True, text=True, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg", "runs"]
    assert ckpt.read_bytes() == b"weights" and [p.name for p in (tmp_path / "pkg").iterdir()] == ["module.py"]
    subprocess.run(make + ["clean-runs"], capture_output=True, text=True, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


# ------------------------------------------------------------------------------------------------ a real sweep

@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> dict[str, Any]:
    """``make sweep`` on the toy ring: 2 seeds x losses non_saturating, hinge and foo (not a loss: fails to parse),
    5 steps each (training values logged every 2), 2 at a time, into a temporary runs root."""
    root = tmp_path_factory.mktemp("sweep") / "runs"
    argv = make_command("sweep", EXP="toy_ring", SEEDS="0 1", GRID="model.loss=non_saturating,hinge,foo",
                        PARALLEL="2", ARGS=f"--trainer.max_steps=5 --trainer.log_every_n_steps=2 --wandb=disabled "
                                       f"--runs_root {root} --name t")
    assert argv[1:4] == ["-m", "gan_lightning", "sweep"]
    done = run_command(argv)
    return {"root": root, "argv": argv, "done": done, "dir": root / "toy_ring" / "sweep-t"}


@pytest.mark.slow
def test_real_sweep_runs_every_point_and_reports_failures(real_sweep: dict):
    done, sweep_dir = real_sweep["done"], real_sweep["dir"]
    assert done.returncode == 1, done.stdout + done.stderr  # one point failed
    records = json.loads((sweep_dir / "sweep.json").read_text())["runs"]
    status = {(r["point"]["model.loss"], r["seed"]): r["status"] for r in records}
    assert status == {(loss, s): ("failed" if loss == "foo" else "ok")
                      for loss in ("non_saturating", "hinge", "foo") for s in (0, 1)}
    for (loss, seed), state in status.items():
        run_dir = sweep_dir / f"loss={loss}-seed{seed}"
        log = (run_dir / "fit.log").read_text()
        if state == "ok":
            assert (run_dir / "checkpoints" / "last.ckpt").is_file()
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert config["seed_everything"] == seed and config["model"]["loss"] == loss
            assert config["trainer"]["max_steps"] == 5 and config["run_dir"] == str(run_dir)
            assert json.loads((run_dir / "metrics.json").read_text())["step"] == 5
            assert (run_dir / "metrics.csv").is_file()
        else:
            assert re.search(r"^error: .*model\.loss.*foo", log, re.M), log[-2000:]
            assert re.search(rf"failed .*loss=foo-seed{seed}/fit.log  \[exit 2\] error: .*model\.loss", done.stdout)
    assert "sweep t: 4 ok, 2 failed" in done.stdout
    # Again: the finished runs are skipped, the failed ones would run again.
    again = run_command(real_sweep["argv"] + ["--dry_run"])
    skipped = [line for line in again.stdout.splitlines() if line.startswith("# finished before, skipped")]
    assert len(skipped) == 4 and not any("loss=foo" in line for line in skipped)


@pytest.mark.slow
def test_interrupted_sweep_resumes_its_unfinished_run_from_last_ckpt(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture):
    """A one-run sweep (toy ring, small nets, 200 steps, a checkpoint every 20) gets Ctrl-C once the run has written
    its first checkpoint: the run is stopped by SIGTERM, writes last.ckpt of its step N and the sweep exits 130.
    Started again, the sweep resumes that run with --ckpt_path last.ckpt (Lightning restores it, the metrics.csv
    rows below N are the first attempt's) and it finishes at step 200; a third start would skip it."""
    import torch

    root = tmp_path / "runs"
    args = ["--config", "experiments/toy_ring.yaml", "--seeds", "0", "--runs_root", str(root), "--name", "r",
            "--trainer.max_steps=200", "--checkpoint.every_n_train_steps=20", "--trainer.log_every_n_steps=20",
            "--wandb=disabled", "--trainer.enable_progress_bar=false",
            # 50 ms per step: the run cannot finish its 200 steps before the interrupt reaches it.
            "--trainer.callbacks=[{class_path: user_extensions.Pace, init_args: {seconds: 0.05}}]",
            "--model.generator.init_args.hidden=[32]", "--model.discriminator.init_args.hidden=[32]"]
    argv = [sys.executable, "-m", "gan_lightning", "sweep", *args]
    run_dir = root / "toy_ring" / "sweep-r" / "base-seed0"
    last = run_dir / "checkpoints" / "last.ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{REPO}")
    env.pop(sweep.ENV_VAR, None)
    # Ctrl-C as in a terminal: SIGINT at its default even where this test runs with it ignored (a background job
    # of a shell without job control), which Python would otherwise keep ignoring in the sweep.
    first = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "the run wrote no checkpoint"
        first.send_signal(signal.SIGINT)
        out = first.communicate(timeout=120)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, out
    [record] = json.loads((run_dir.parent / "sweep.json").read_text())["runs"]
    assert record["status"] == "interrupted" and record["returncode"] == 143  # fit's preemption exit code
    step = torch.load(last, weights_only=False)["global_step"]
    assert 20 <= step < 200
    assert f"preempted at step {step}: saved {last}" in (run_dir / "fit.log").read_text()
    rows_before = [r for r in read_csv_rows(run_dir / "metrics.csv") if int(r["step"]) < step]
    assert rows_before

    again = run_command(argv, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resume {run_dir} from {last}" in again.stdout and "sweep r: 1 ok" in again.stdout
    [record] = json.loads((run_dir.parent / "sweep.json").read_text())["runs"]
    assert record["status"] == "ok" and record["resumed_from"] == str(last) and "--ckpt_path" not in record["command"]
    log = (run_dir / "fit.log").read_text()
    earlier, _, resumed = log.partition(f"# sweep: resuming from {last}")
    assert f"preempted at step {step}" in earlier and f"Restoring states from the checkpoint path at {last}" in resumed
    assert torch.load(last, weights_only=False)["global_step"] == 200
    rows = read_csv_rows(run_dir / "metrics.csv")
    assert [r for r in rows if int(r["step"]) < step] == rows_before  # kept, not logged again
    assert max(int(r["step"]) for r in rows) == 200

    capsys.readouterr()
    assert sweep.main([*args, "--dry_run"]) == 0
    assert capsys.readouterr().out.startswith("# finished before, skipped: ")


@pytest.mark.slow
def test_report_on_real_sweep(real_sweep: dict, tmp_path: Path):
    out = tmp_path / "report"
    done = run_command(make_command("report", RUNS=str(real_sweep["dir"]), OUT=str(out)))
    assert done.returncode == 0, done.stderr
    for seed in (0, 1):  # the failed runs hold only their fit.log
        line = f"{real_sweep['dir'] / f'loss=foo-seed{seed}'}: only a fit.log (the run failed before writing anything)"
        assert f"note: {line}" in done.stderr and f"- {line}" in (out / "report.md").read_text()
    rows = read_csv_rows(out / "report.csv")
    assert sorted((r["model.loss"], r["seed"]) for r in rows) == \
        sorted((loss, str(s)) for loss in ("non_saturating", "hinge") for s in (0, 1))
    config_columns = [c for c in rows[0] if "." in c]
    assert config_columns == ["model.loss"]
    for row in rows:
        final = json.loads((Path(row["path"]) / "metrics.json").read_text())
        assert float(row["modes"]) == final["modes"] and float(row["high_quality"]) == final["high_quality"]
        logged = [r for r in read_csv_rows(Path(row["path"]) / "metrics.csv") if r.get("progress/seconds")]
        assert float(row["seconds"]) == float(max(logged, key=lambda r: int(r["step"]))["progress/seconds"])
    groups = read_csv_rows(out / "groups.csv")
    assert sorted(g["model.loss"] for g in groups) == ["hinge", "non_saturating"]
    for g in groups:
        members = [float(r["high_quality"]) for r in rows if r["model.loss"] == g["model.loss"]]
        assert float(g["high_quality_mean"]) == pytest.approx(np.mean(members))
        assert g["high_quality_n"] == "2"
    assert "note: no run's metrics.csv" not in done.stderr  # every curve found its column
    check_png(out / "curves_step.png")
    check_png(out / "curves_time.png")
