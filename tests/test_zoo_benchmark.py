"""``benchmarks/zoo.py``: ``markdown`` lays fabricated results out cell by cell; the training overlay and the
``max_time`` string are what the runs are given; ``--quick`` trains and judges every architecture end to end (slow).
No timings or qualities are asserted."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from bench_helpers import BENCHMARKS, REPO, table  # and benchmarks/ on sys.path

import zoo  # noqa: E402

HEADER = "| architecture | G / D |"


def _fabricated() -> dict:
    return {
        "budget_seconds": 240, "num": 5000, "num_reference": None, "threads": 1, "quick": False,
        "machine": [("CPU", "Test CPU, 2 cores"), ("threads used", "1"), ("software", "Python 3.11")],
        "load_end": 1.25, "date": "2026-01-02 03:04 UTC", "command": ".venv/bin/python benchmarks/zoo.py",
        "runs": [
            {"arch": "dcgan", "config": "experiments/cgan_mnist5k.yaml", "batch": 64, "n_critic": 1,
             "ema_start": 1000, "command": "python -m gan_lightning fit --config experiments/cgan_mnist5k.yaml ...",
             "rc": 0, "wall_s": 250.0, "g_params": 1234567, "d_params": 89012, "steps": 4800,
             "train_seconds": 240.5, "metrics": {"fid_mnist": 3.456, "accuracy": 0.98765}, "grid_file": "zoo_dcgan.png"},
            {"arch": "stylegan2", "config": "experiments/stylegan2_mnist5k.yaml", "batch": 32, "n_critic": 1,
             "ema_start": 500, "command": "python ...", "rc": 0, "wall_s": 251.0, "g_params": 200000,
             "d_params": 150000, "steps": 320, "train_seconds": 240.0,
             "metrics": {"fid_mnist": float("inf"), "accuracy": 0.1}},
            {"arch": "biggan", "config": "experiments/biggan_mnist5k.yaml", "batch": 32, "n_critic": 2,
             "ema_start": 600, "command": "python ...", "rc": 0, "wall_s": 250.0, "g_params": 1000, "d_params": 2000,
             "steps": 700, "train_seconds": 241.0, "eval_error": "RuntimeError: boom"},
            {"arch": "r3gan", "config": "experiments/r3gan_mnist5k.yaml", "batch": 32, "n_critic": 1, "ema_start": 100,
             "command": "python ...", "rc": 1, "wall_s": 12.0, "error": "Traceback ...\nValueError: bad"},
        ],
    }


def test_markdown_cells():
    text = zoo.markdown(_fabricated())
    assert text.startswith("## Model zoo at equal CPU time (4 min per architecture)\n")
    assert "- **CPU**: Test CPU, 2 cores" in text
    assert "- **command**: `.venv/bin/python benchmarks/zoo.py`" in text
    assert "- **date**: 2026-01-02 03:04 UTC" in text
    assert "- **load average (1 min) at the end**: 1.25" in text
    assert "`OMP_NUM_THREADS=1`" in text and "--num 5000 --metrics [fid,accuracy]" in text
    assert "--quick" not in text
    header, rows = table(text, HEADER)
    assert header == list(zoo.HEADERS)
    assert rows[0] == ["dcgan (`cgan_mnist5k.yaml`)", zoo.ARCHS["dcgan"].what, "1,234,567", "89,012", "64 × 1", "4,800",
                       "240.5", f"{240.5 / 4800:.3f}", "from step 1,000", "3.46", "98.8%"]
    # Fewer steps than ema_start: the EMA is still a copy of G; an infinite FID is shown as such.
    assert rows[1] == ["stylegan2 (`stylegan2_mnist5k.yaml`)", zoo.ARCHS["stylegan2"].what, "200,000", "150,000",
                       "32 × 1", "320", "240.0", "0.750", "copy of G (starts at 500)", "inf", "10.0%"]
    assert rows[2][2:] == ["1,000", "2,000", "32 × 2", "700", "241.0", f"{241 / 700:.3f}", "from step 600",
                           "evaluation failed", "evaluation failed"]
    assert rows[3][2:] == ["—", "—", "32 × 1", "failed (exit 1)", "—", "—", "—", "—", "—"]
    assert len(rows) == 4
    # The grid (a file beside the report) is linked; runs without one get no line.
    assert "- dcgan: ![dcgan](zoo_dcgan.png)" in text
    assert "- stylegan2: ![" not in text


def test_markdown_quick_and_short_budget():
    results = _fabricated()
    results.update(quick=True, budget_seconds=2, num=200, num_reference=500)
    text = zoo.markdown(results)
    assert text.startswith("## Model zoo at equal CPU time (2 s per architecture)\n")
    assert "> `--quick`:" in text
    assert "200 samples, seed 0, 500 reference digits" in text


def test_max_time_strings():
    assert zoo.max_time(240) == "00:00:04:00"
    assert zoo.max_time(2) == "00:00:00:02"
    assert zoo.max_time(90061) == "01:01:01:01"
    with pytest.raises(ValueError):
        zoo.max_time(0)


def test_overlay_and_recipes():
    callbacks = zoo.overlay()["trainer"]["callbacks"]
    assert callbacks[0] == {"class_path": "zoo.BudgetClock"}
    assert callbacks[1] == {"class_path": "gan_lightning.metrics.SampleGrid", "init_args": {"every_n_steps": 0}}
    for arch in zoo.ARCHS.values():
        config = yaml.safe_load((REPO / arch.config).read_text())
        assert config["data"]["init_args"]["labels"] == "class"  # every architecture is class-conditional
        assert config["data"]["class_path"] == "gan_lightning.data.EmbeddedMNIST"
        recipe = zoo.recipe(arch)
        assert recipe["batch"] == config["data"]["init_args"]["batch_size"]
        assert recipe["n_critic"] == config["model"].get("n_critic", 1)
    assert zoo.recipe(zoo.ARCHS["biggan"])["n_critic"] == 2


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    import subprocess
    import time

    out = tmp_path / "zoo.md"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "zoo.py"), "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 90, f"--quick took {seconds:.0f} s"
    results = json.loads(out.with_suffix(".json").read_text())
    assert [r["arch"] for r in results["runs"]] == list(zoo.ARCHS)
    assert results["budget_seconds"] == zoo.QUICK_BUDGET_S and results["quick"] is True
    for run in results["runs"]:
        assert run["rc"] == 0 and run["steps"] >= 1 and run["g_params"] > 0 and run["d_params"] > 0
        assert run["train_seconds"] >= zoo.QUICK_BUDGET_S  # max_time stops after the first step past the budget
        assert run["metrics"]["num_samples"] == zoo.QUICK_NUM and run["metrics"]["num_reference"] == zoo.QUICK_REFERENCE
        assert run["metrics"]["fid_mnist"] >= 0 and 0 <= run["metrics"]["accuracy"] <= 1
        assert run["grid_file"] == f"zoo_{run['arch']}.png" and (tmp_path / run["grid_file"]).is_file()
    text = out.read_text()
    assert text == proc.stdout
    _, rows = table(text, HEADER)
    assert [r[0].split()[0] for r in rows] == list(zoo.ARCHS)
