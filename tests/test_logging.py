"""What a run logs and at which step: ``train/*`` values at the generator step just completed, every
``log_every_n_steps`` and at the end of the run, on the same step axis as ``val/*`` evaluations."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from gan_lightning.data import ToyDataModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.runtime.loggers import MetricsCSV, log_at_step
from gan_lightning.training.system import GAN

BATCH = 16
TRAIN_KEYS = {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "progress/kimg"}


def tiny_gan() -> GAN:
    torch.manual_seed(0)
    return GAN(MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8]), MLPDiscriminator(in_shape=[2], hidden=[8]))


class EvaluateEvery(pl.Callback):
    """Logs ``val/step_seen`` (the generator steps done) every ``every`` steps, as the metric callbacks do."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step % self.every == 0:
            log_at_step(trainer, {"val/step_seen": float(trainer.global_step)})


def fit_rows(tmp_path: Path, max_steps: int, every: int, callbacks=()) -> list[dict[str, str]]:
    trainer = pl.Trainer(max_steps=max_steps, log_every_n_steps=every, logger=MetricsCSV(str(tmp_path)),
                         callbacks=list(callbacks), enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=str(tmp_path))
    trainer.fit(tiny_gan(), ToyDataModule(name="ring", batch_size=BATCH))
    with open(tmp_path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_shorter_than_the_logging_cadence_logs_its_last_step(tmp_path):
    rows = fit_rows(tmp_path, max_steps=10, every=50)
    train = [r for r in rows if r.get("train/g_loss")]
    assert [int(r["step"]) for r in train] == [10]
    assert TRAIN_KEYS <= set(train[0])
    assert all(math.isfinite(float(train[0][k])) for k in TRAIN_KEYS)
    # The step value is the number of generator steps done: 10 steps of BATCH real samples.
    assert round(float(train[0]["progress/kimg"]) * 1000) == 10 * BATCH


def test_train_and_val_values_of_one_generator_step_share_its_step_value(tmp_path):
    rows = fit_rows(tmp_path, max_steps=10, every=4, callbacks=[EvaluateEvery(5)])
    train = [(int(r["step"]), round(float(r["progress/kimg"]) * 1000)) for r in rows if r.get("train/g_loss")]
    val = [(int(r["step"]), float(r["val/step_seen"])) for r in rows if r.get("val/step_seen")]
    # Logged every 4 generator steps and at the end; each row's step is the generator steps done when logged.
    assert train == [(4, 4 * BATCH), (8, 8 * BATCH), (10, 10 * BATCH)]
    assert val == [(5, 5.0), (10, 10.0)]


def test_logged_values_reach_the_callbacks_as_the_loggers_get_them(tmp_path):
    class Record(pl.Callback):
        seen: list[tuple[int, float]] = []

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            value = trainer.callback_metrics.get("train/g_loss")
            if value is not None:
                self.seen.append((trainer.global_step, float(value)))

    rows = fit_rows(tmp_path, max_steps=6, every=3, callbacks=[Record()])
    logged = {int(r["step"]): float(r["train/g_loss"]) for r in rows if r.get("train/g_loss")}
    assert sorted(logged) == [3, 6]
    # The value a callback reads at a logging step is the value the logger wrote for that step.
    seen = dict(Record.seen)
    assert seen[3] == pytest.approx(logged[3]) and seen[6] == pytest.approx(logged[6])


def test_the_progress_bar_counts_generator_steps_and_shows_the_losses(tmp_path, capsys):
    from gan_lightning.training.progress import StepProgressBar

    bar = StepProgressBar()
    trainer = pl.Trainer(max_steps=12, log_every_n_steps=5, logger=False, callbacks=[bar], enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=str(tmp_path))
    # 12 generator steps span several epochs of a 5-batch loader: the bar counts steps, not batches of an epoch.
    trainer.fit(tiny_gan(), ToyDataModule(name="ring", num_samples=5 * BATCH, batch_size=BATCH))
    assert trainer.current_epoch >= 2
    assert bar.train_progress_bar.total == 12 and bar.train_progress_bar.n == 12
    shown = bar.get_metrics(trainer, trainer.lightning_module)
    assert {"d_loss", "g_loss", "D(x)", "D(G(z))", "kimg"} <= set(shown)
    assert shown["kimg"] == pytest.approx(12 * BATCH / 1000)
    out = capsys.readouterr()
    assert "12/12" in out.out + out.err and "g_loss=" in out.out + out.err
