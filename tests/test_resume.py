"""Exact resume through the real command line: a run checkpointed after N generator steps and resumed to 2N ends
bit-identical to the uninterrupted run — weights, buffers (batch norm, spectral-norm vectors), EMA, optimizer
and scheduler states, step counters, augmentation state, the random streams and the data order.

The uninterrupted run keeps its step-N checkpoint (``--checkpoint.save_top_k=-1``); a second run resumes from it
with the same config. Variants: the default experiment (class-conditional, spectral norm, EMA, metric callbacks),
a toy experiment with its learning-rate schedule and R1, ``n_critic = 2`` with adaptive augmentation, and a
2-process ``gan_ddp`` run on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gan_lightning.commands import main

REPO = Path(__file__).resolve().parents[1]
N = 6


def _config(tmp: Path, experiment: str, edit=None) -> Path:
    config = yaml.safe_load((REPO / "experiments" / f"{experiment}.yaml").read_text())
    config["trainer"]["max_steps"] = 2 * N
    config["trainer"]["accelerator"] = "cpu"
    config["trainer"]["log_every_n_steps"] = 1
    for cb in config["trainer"].get("callbacks", []):
        name = cb["class_path"].rsplit(".", 1)[-1]
        if name in ("SampleGrid", "ToyMetrics", "ImageMetrics"):
            cb.setdefault("init_args", {})["every_n_steps"] = N
        if name == "ImageMetrics":
            cb["init_args"].update(num_samples=50, num_reference=60)
        if name == "ToyMetrics":
            cb["init_args"]["num_samples"] = 200
    if edit is not None:
        edit(config)
    path = tmp / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(config: Path, run_dir: Path, *extra: str) -> None:
    argv = ["fit", "--config", str(config), "--wandb=disabled", f"--run_dir={run_dir}",
            "--trainer.enable_progress_bar=false", f"--checkpoint.every_n_train_steps={N}",
            "--checkpoint.save_top_k=-1", *extra]
    assert main(argv) == 0


def _checkpoint_at(run_dir: Path, step: int) -> Path:
    (path,) = [p for p in (run_dir / "checkpoints").glob(f"*step={step}.ckpt")]
    return path


def assert_same_state(a: Path, b: Path) -> None:
    ca, cb = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
    assert ca["global_step"] == cb["global_step"] == 2 * N
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    differ = [k for k in ca["state_dict"] if not (torch.equal(ca["state_dict"][k], cb["state_dict"][k])
                                                  if torch.is_tensor(ca["state_dict"][k])
                                                  else ca["state_dict"][k] == cb["state_dict"][k])]
    assert differ == [], f"{len(differ)} of {len(ca['state_dict'])} tensors differ, first {differ[:3]}"
    for sa, sb in zip(ca["optimizer_states"], cb["optimizer_states"]):
        for pid, state in sa["state"].items():
            for key, value in state.items():
                other = sb["state"][pid][key]
                assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (pid, key)
    assert [s["last_epoch"] for s in ca.get("lr_schedulers", [])] == [s["last_epoch"] for s in cb.get("lr_schedulers", [])]
    assert ca["loops"]["fit_loop"]["epoch_loop.state_dict"] == cb["loops"]["fit_loop"]["epoch_loop.state_dict"]
    # The random streams continue identically too (the next step would draw the same noise).
    for ra, rb in zip(ca["rng_states"], cb["rng_states"]):
        assert torch.equal(ra["torch"], rb["torch"])
    for key in ca["callbacks"]:
        if "ImageMetrics" in key or "ToyMetrics" in key:
            assert ca["callbacks"][key]["last"] == cb["callbacks"][key]["last"]


def _resume_case(tmp_path: Path, experiment: str, edit=None, *extra: str) -> None:
    config = _config(tmp_path, experiment, edit)
    _fit(config, tmp_path / "full", *extra)
    _fit(config, tmp_path / "resumed", *extra, f"--ckpt_path={_checkpoint_at(tmp_path / 'full', N)}")
    assert_same_state(_checkpoint_at(tmp_path / "full", 2 * N), _checkpoint_at(tmp_path / "resumed", 2 * N))


@pytest.mark.slow
def test_default_experiment_resumes_exactly(tmp_path, monkeypatch, classifier_cache):
    monkeypatch.chdir(tmp_path)
    _resume_case(tmp_path, "cgan_mnist5k")
    # The metric callback's values at the end agree as well.
    full = (tmp_path / "full" / "metrics.json").read_text()
    assert full == (tmp_path / "resumed" / "metrics.json").read_text()


@pytest.mark.slow
def test_toy_experiment_with_lr_schedule_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _resume_case(tmp_path, "toy_ring")


@pytest.mark.slow
def test_n_critic_2_with_adaptive_augmentation_resumes_exactly(tmp_path, monkeypatch):
    def edit(config):
        config["model"]["n_critic"] = 2
        config["model"]["augment"] = {"class_path": "gan_lightning.objectives.AdaptiveAugment",
                                      "init_args": {"p_init": 0.2, "interval": 2, "speed_kimg": 1.0}}
        config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"]
                                          if not c["class_path"].endswith("ImageMetrics")]

    monkeypatch.chdir(tmp_path)
    _resume_case(tmp_path, "cgan_mnist5k", edit)
    ckpt = torch.load(_checkpoint_at(tmp_path / "resumed", 2 * N), weights_only=False)
    assert float(ckpt["state_dict"]["augment.p"]) != 0.2  # the adaptive p moved and was carried over


@pytest.mark.slow
def test_two_process_gan_ddp_resumes_exactly(tmp_path):
    """Each process has its own noise stream and its own share of the data; both continue exactly."""
    def edit(config):
        config["trainer"]["callbacks"] = []

    config = _config(tmp_path, "toy_ring", edit)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def fit(run_dir: Path, *extra: str) -> None:
        cmd = [sys.executable, "-m", "gan_lightning", "fit", "--config", str(config), "--wandb=disabled",
               f"--run_dir={run_dir}", "--trainer.enable_progress_bar=false", "--trainer.strategy=gan_ddp",
               "--trainer.devices=2", f"--checkpoint.every_n_train_steps={N}", "--checkpoint.save_top_k=-1", *extra]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    fit(tmp_path / "full")
    fit(tmp_path / "resumed", f"--ckpt_path={_checkpoint_at(tmp_path / 'full', N)}")
    assert_same_state(_checkpoint_at(tmp_path / "full", 2 * N), _checkpoint_at(tmp_path / "resumed", 2 * N))
    ckpt = torch.load(_checkpoint_at(tmp_path / "full", 2 * N), weights_only=False)
    assert len(ckpt["rng_states"]) == 2 and not torch.equal(ckpt["rng_states"][0]["torch"], ckpt["rng_states"][1]["torch"])


# ------------------------------------------------------------------------------------------------ divergence
def test_divergence_stops_with_the_step_and_loss_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    """An absurd learning rate: the run stops with one line naming the step and the loss, exits 2, and
    last.ckpt (written every step until then) is the last good step's, loadable and finite."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    rc = main(["fit", "--config", str(REPO / "experiments" / "toy_ring.yaml"), "--wandb=disabled", f"--run_dir={run}",
               "--trainer.callbacks=null", "--trainer.max_steps=50", "--trainer.log_every_n_steps=1",
               "--trainer.enable_progress_bar=false", "--checkpoint.every_n_train_steps=1",
               "--model.g_optimizer.init_args.lr=1e6", "--model.d_optimizer.init_args.lr=1e6"])
    err = capsys.readouterr().err
    assert rc == 2
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and "Traceback" not in err
    step = int(line[0].split("training diverged at step ")[1].split(":")[0])
    assert "train/" in line[0] and ("= nan" in line[0] or "= inf" in line[0])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == step - 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if torch.is_tensor(v) and v.is_floating_point())


def test_no_checkpoint_is_written_from_non_finite_weights(make_trainer, tmp_path):
    """Weights that turn NaN between two logged steps are caught when a checkpoint is about to be written: the
    save is refused with the parameter's name and the previous checkpoint stays."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gan_lightning.data import ToyDataModule
    from gan_lightning.nets import MLPDiscriminator, MLPGenerator
    from gan_lightning.runtime.resume import DivergenceError
    from gan_lightning.training.system import GAN

    class Poison(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step == 3:
                with torch.no_grad():
                    pl_module.discriminator.head.weight[0, 0] = float("nan")

    torch.manual_seed(0)
    model = GAN(MLPGenerator(hidden=[8]), MLPDiscriminator(hidden=[8], maxout_pieces=2))
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = make_trainer(6, callbacks=[Poison(), ckpt], enable_checkpointing=True, log_every_n_steps=50)
    with pytest.raises(DivergenceError, match=r"by step 3: discriminator\.head\.weight holds NaN or Inf"):
        trainer.fit(model, ToyDataModule(num_samples=256, batch_size=16))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2


@pytest.mark.slow
def test_same_seed_gives_bit_identical_weights(tmp_path, monkeypatch):
    """Two runs of one config and seed on CPU end with identical weights, buffers and optimizer states; another
    seed does not."""
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, "toy_ring", lambda c: c["trainer"].update(callbacks=[]))
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        _fit(config, tmp_path / name, f"--seed_everything={seed}")
    a, b, c = (torch.load(_checkpoint_at(tmp_path / n, 2 * N), weights_only=True)["state_dict"] for n in "abc")
    tensors = [k for k in a if torch.is_tensor(a[k])]  # and R1's extra state: its count of D steps
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if k in tensors else a[k] == b[k] for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in tensors)
