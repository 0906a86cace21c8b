"""No W&B run for a ``fit`` that fails while it is being set up: W&B creates its run when Lightning first asks a
logger for it, before the data, networks and callbacks are set up, so ``fit`` adds its W&B logger only when
training starts (``RunConfig.on_train_start``).

The command runs for real (``python -m gan_lightning fit`` in a subprocess, offline, with no key anywhere and every
W&B folder under the test's temporary folder); a run that trains is the control: it does get its offline run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scrubbed_env import scrubbed_env

REPO = Path(__file__).resolve().parents[1]
TOY = str(REPO / "experiments" / "toy_ring.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def fit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = scrubbed_env(tmp_path)
    return subprocess.run([sys.executable, "-m", "gan_lightning", "fit", "--config", TOY, "--wandb=offline",
                           f"--run_dir={tmp_path / 'run'}", *QUIET, *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def wandb_runs(tmp_path: Path) -> list[Path]:
    """Every W&B run folder anywhere under ``tmp_path`` (offline runs are ``offline-run-<time>-<id>``)."""
    return sorted(p for p in tmp_path.rglob("*-run-*") if p.is_dir())


FAILURES = {
    # GAN.setup: the data's shape is not the generator's.
    "shapes in GAN.setup": (["--data=gan_lightning.data.EmbeddedMNIST", "--data.labels=none"],
                            "error: data: samples of shape (1, 28, 28) but the generator makes (2,)"),
    # The data loader, built after setup and before the first step: a batch larger than the data.
    "batch larger than the data": (["--data.init_args.num_samples=50", "--data.init_args.batch_size=64"],
                                   "error: data.batch_size: 64 samples per step"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FAILURES))
def test_a_fit_that_fails_in_setup_leaves_no_wandb_run(case, tmp_path):
    args, message = FAILURES[case]
    out = fit(tmp_path, *args)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines()[-1].startswith(message), out.stderr[-2000:]
    assert wandb_runs(tmp_path) == [] and not (tmp_path / "run" / "wandb").exists()
    assert "wandb:" not in out.stdout + out.stderr


@pytest.mark.slow
def test_a_fit_that_trains_gets_its_offline_run(tmp_path):
    out = fit(tmp_path, "--trainer.max_steps=2")
    assert out.returncode == 0, out.stderr[-2000:]
    runs = wandb_runs(tmp_path)
    assert len(runs) == 1 and runs[0].parent == tmp_path / "run" / "wandb"
    assert list(runs[0].glob("run-*.wandb"))  # the transaction log wandb sync uploads
