"""Reliability: checkpoints that survive a kill mid-write, a clean checkpointed stop on SIGTERM/SIGUSR1
(in process, on 2 processes, and through the real command line), SLURM's requeue after that stop and the requeued
job's resume, and pickling of parametrized (spectral-norm) networks, which ``gan_ddp_spawn`` needs.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from lightning.pytorch.plugins.environments import SLURMEnvironment
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal, spectral_norm

import ddp_helpers as H
from gan_lightning.runtime.checkpointing import (
    PREEMPTED_EXIT_CODE,
    AtomicCheckpointIO,
    Preemption,
    resume_hint,
    was_preempted,
)
from gan_lightning.conditioning import ConditionalBatchNorm, Projection
from gan_lightning.errors import UserError
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, ResNetDiscriminator, ResNetGenerator
from gan_lightning.runtime.parametrized import StrippedModule, restore_parametrizations, strip_parametrizations
from gan_lightning.training.strategies import RankConsistency
from gan_lightning.training.system import GAN

REPO = Path(__file__).resolve().parents[1]


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Keys whose values differ (tensors bitwise, dtype and shape included; a module's extra state, such as a
    regularizer's step count, by equality); the key lists must be equal, in order."""
    assert list(a) == list(b), f"different keys: {sorted(set(a) ^ set(b))}"

    def differ(x: object, y: object) -> bool:
        if isinstance(x, torch.Tensor):
            return not isinstance(y, torch.Tensor) or x.dtype != y.dtype or not torch.equal(x, y)
        return x != y

    return [k for k in a if differ(a[k], b[k])]


# ------------------------------------------------------------------------------------------------ atomic saves
def test_a_save_killed_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """torch.save writes half of the new checkpoint and fails. At that moment (where a SIGKILL would leave
    things) the target still holds the previous checkpoint; afterwards it still does, the error propagates and
    no temporary file is left behind. The next save replaces the target."""
    ckpt_io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    ckpt_io.save_checkpoint({"step": 1, "w": torch.arange(1000.0)}, target)
    real_save = torch.save
    seen_mid_write = []

    def half_then_fail(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        partial = [p for p in target.parent.iterdir() if p != target]
        assert len(partial) == 1 and partial[0].stat().st_size == len(data) // 2  # the half-written file
        seen_mid_write.append(torch.load(target)["step"])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        ckpt_io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, target)
    monkeypatch.undo()
    assert seen_mid_write == [1]
    loaded = torch.load(target)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], torch.arange(1000.0))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]

    ckpt_io.save_checkpoint({"step": 3, "w": torch.ones(10)}, target)
    assert torch.load(target)["step"] == 3
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions of any new file
    ckpt_io.remove_checkpoint(target)
    assert not target.exists()


# ------------------------------------------------------------------------------------------------ preemption
class SignalAt(pl.Callback):
    """Sends ``signum`` to its own process at the end of generator step ``step`` on ``rank``, and notes which
    handler was in effect then (put it before Preemption in ``callbacks``)."""

    def __init__(self, step: int, signum: int, rank: int = 0) -> None:
        self.step, self.signum, self.rank = step, signum, rank
        self.handler: Any = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            self.handler = signal.getsignal(self.signum)
            os.kill(os.getpid(), self.signum)


def test_preemption_checkpoints_the_current_step_and_stops(tmp_path, capsys):
    """SIGTERM at the end of step 3 of a 50-step run: the Preemption handler (not Lightning's) is the one in
    effect during training, the run stops after step 3 without SIGTERMException, last.ckpt holds step 3 and
    exactly the weights the model ends with, one line names it, and the handlers of before fit are back."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    model = H.mlp_gan(g_norm="none", ema_decay=0.9)
    probe, preemption = SignalAt(3, signal.SIGTERM), Preemption()
    trainer = H.trainer(tmp_path, 50, callbacks=[probe, preemption], plugins=[AtomicCheckpointIO()])
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    trainer.fit(model, H.OrderedToy(num_samples=256, batch_size=8))

    assert probe.handler == preemption._handler
    assert trainer.global_step == 3 and not trainer.received_sigterm
    assert preemption.preempted and preemption.signum == signal.SIGTERM and was_preempted(trainer)
    path = tmp_path / "checkpoints" / "last.ckpt"
    assert preemption.path == str(path)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["global_step"] == 3
    assert same_state(ckpt["state_dict"], model.state_dict()) == []
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("preempted")]
    assert lines == [f"preempted at step 3: saved {path}; resume with: trainer.fit(..., ckpt_path={str(path)!r})"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_run_without_a_signal_is_not_preempted(tmp_path):
    """No signal: the run reaches max_steps, writes nothing and does not count as preempted; signal names are
    checked."""
    preemption = Preemption(signals=["sigusr2"])
    trainer = H.trainer(tmp_path, 3, callbacks=[preemption])
    trainer.fit(H.mlp_gan(g_norm="none"), H.OrderedToy(num_samples=256, batch_size=8))
    assert trainer.global_step == 3 and not preemption.preempted and not was_preempted(trainer)
    assert preemption.signals == [signal.SIGUSR2] and not (tmp_path / "checkpoints").exists()
    with pytest.raises(UserError, match=r"Preemption.signals: 'SIGKILL' is not a signal that can be caught"):
        Preemption(signals=["SIGKILL"])


@pytest.mark.slow
def test_preemption_on_two_processes_stops_every_rank_at_the_same_step(tmp_path, capfd):
    """Only rank 1 gets SIGUSR1, after step 3: both ranks stop after step 3 with identical weights, rank 0
    writes last.ckpt of step 3, only rank 0 prints, and the launching process learns of the preemption."""
    preemption = Preemption()
    rec = H.Recorder(str(tmp_path), per_step=False)
    trainer = H.trainer(tmp_path, 50, strategy="gan_ddp_fork", devices=2,
                        callbacks=[SignalAt(3, signal.SIGUSR1, rank=1), preemption, rec])
    trainer.fit(H.mlp_gan(g_norm="batch", ema_decay=0.9), H.OrderedToy(num_samples=512, batch_size=8))
    r0, r1 = H.load_ranks(tmp_path, 2)
    assert r0["global_step"] == r1["global_step"] == 3
    assert same_state(r0["final"], r1["final"]) == []
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["global_step"] == 3 and len(ckpt["rng_states"]) == 2
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in r0["final"].items())
    err = capfd.readouterr().err
    assert err.count("preempted at step") == 1 and f"preempted at step 3: saved {path}" in err
    assert was_preempted(trainer) and int(trainer.callback_metrics["preemption/signal"]) == signal.SIGUSR1


SLURM_JOB = {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "gan", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of a one-task SLURM batch job launched with ``srun`` (what ``SLURMEnvironment.detect``
    reads), and an ``scontrol`` first on PATH that appends its arguments to the returned file instead of requeueing."""
    for key in ("SLURM_ARRAY_JOB_ID", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in SLURM_JOB.items():
        monkeypatch.setenv(key, value)
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


class StartState(pl.Callback):
    """The step and a copy of the weights at the start of training (after any checkpoint was restored)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.step = trainer.global_step
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.parametrize("requeue_signal", [None, "SIGUSR2"], ids=["detected-usr1", "plugin-usr2"])
def test_slurm_requeue_follows_the_preemption_checkpoint_and_the_requeued_job_resumes(tmp_path, monkeypatch, capsys,
                                                                                      requeue_signal):
    """A SLURM job (fake environment; ``scontrol`` intercepted) gets its requeue signal after step 3: SIGUSR1 with
    the environment Lightning detects by itself, or SIGUSR2 given to ``SLURMEnvironment(requeue_signal=...)`` and to
    ``Preemption(signals=...)``. The run stops after step 3 with last.ckpt, then Lightning's auto-requeue, chained by
    Preemption, writes hpc_ckpt_1.ckpt of the same step and weights and runs ``scontrol requeue 4242`` once. The
    requeued job (a second fit in the same directory, no ckpt_path) starts from that checkpoint: step 3 and the
    weights the first job stopped with, and runs on to max_steps."""
    calls = fake_slurm(tmp_path, monkeypatch)
    run = tmp_path / "run"
    sig = signal.SIGUSR1 if requeue_signal is None else signal.Signals[requeue_signal]
    plugins: list[Any] = [AtomicCheckpointIO()]
    if requeue_signal is not None:
        plugins.append(SLURMEnvironment(auto_requeue=True, requeue_signal=sig))
    assert SLURMEnvironment.detect()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, sig)}

    model = H.mlp_gan(g_norm="none")
    probe = SignalAt(3, sig)
    preemption = Preemption() if requeue_signal is None else Preemption(signals=["SIGTERM", requeue_signal])
    trainer = H.trainer(run, 50, callbacks=[probe, preemption], plugins=plugins)
    trainer.fit(model, H.OrderedToy(num_samples=256, batch_size=8))

    assert probe.handler == preemption._handler  # ours during training; Lightning's requeue ran after the save
    assert trainer.global_step == 3 and was_preempted(trainer) and preemption.signum == sig
    assert calls.read_text() == "requeue 4242\n"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    hpc = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=False)
    assert last["global_step"] == hpc["global_step"] == 3
    assert same_state(hpc["state_dict"], model.state_dict()) == []
    assert same_state(last["state_dict"], model.state_dict()) == []
    assert {s: signal.getsignal(s) for s in before} == before
    assert sum(line.startswith("preempted at step 3:") for line in capsys.readouterr().err.splitlines()) == 1

    # The requeued job: same job id and directory, a fresh process state, no ckpt_path.
    start = StartState()
    again = H.trainer(run, 6, callbacks=[start, Preemption()], plugins=plugins[1:])
    again.fit(H.mlp_gan(g_norm="none", seed=1), H.OrderedToy(num_samples=256, batch_size=8))
    assert again.ckpt_path == str(run / "hpc_ckpt_1.ckpt")
    assert start.step == 3 and same_state(start.state, hpc["state_dict"]) == []
    assert again.global_step == 6 and not was_preempted(again)
    assert calls.read_text() == "requeue 4242\n"  # no signal, no second requeue


def test_without_slurm_sigusr1_neither_requeues_nor_writes_an_hpc_checkpoint(tmp_path, monkeypatch):
    """Outside SLURM nothing is chained: SIGUSR1 only checkpoints and stops, as SIGTERM does."""
    calls = fake_slurm(tmp_path, monkeypatch)
    for key in SLURM_JOB:
        monkeypatch.delenv(key)
    trainer = H.trainer(tmp_path / "run", 50, callbacks=[SignalAt(2, signal.SIGUSR1), Preemption()])
    trainer.fit(H.mlp_gan(g_norm="none"), H.OrderedToy(num_samples=256, batch_size=8))
    assert trainer.global_step == 2 and was_preempted(trainer)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not list((tmp_path / "run").glob("hpc_ckpt_*")) and not calls.exists()


def test_resume_hint_repeats_the_command_line_without_an_old_ckpt_path():
    main = str(REPO / "gan_lightning" / "__main__.py")
    argv = [main, "fit", "--config", "my exp.yaml", "--ckpt_path", "old.ckpt", "--seed_everything=3",
            "--ckpt_path=older.ckpt"]
    assert resume_hint("/r/last.ckpt", argv) == \
        "python -m gan_lightning fit --config 'my exp.yaml' --seed_everything=3 --ckpt_path /r/last.ckpt"
    assert resume_hint("x.ckpt", ["/venv/bin/gan-lightning", "fit", "-c", "a.yaml"]) == \
        "python -m gan_lightning fit -c a.yaml --ckpt_path x.ckpt"
    assert resume_hint("x.ckpt", ["train.py", "fit"]) == "python train.py fit --ckpt_path x.ckpt"
    assert resume_hint("x.ckpt", ["pytest", "-q"]) == "trainer.fit(..., ckpt_path='x.ckpt')"


@pytest.mark.slow
def test_sigterm_to_a_real_fit_saves_resumable_checkpoint_and_exits_143(tmp_path):
    """``python -m gan_lightning fit`` on a small toy ring with the Preemption callback: once the run has written
    its first checkpoint (step 10), SIGTERM. The process prints one line naming last.ckpt and the step N, the
    checkpoint holds step N and loads as a GAN, and the exit code is 143 (PREEMPTED_EXIT_CODE). Resumed from it
    to N + 7 steps, the run ends bit-identical to one that ran N + 7 steps without interruption."""
    from gan_lightning.commands.checkpoints import load_gan

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "gan_lightning", "fit", "--config", str(REPO / "experiments" / "toy_ring.yaml"),
           "--trainer.max_steps=100000", "--wandb=disabled", "--run_dir", str(run_dir),
           "--trainer.callbacks+=gan_lightning.runtime.checkpointing.Preemption", "--trainer.enable_progress_bar=false",
           "--model.generator.init_args.hidden=[32]", "--model.discriminator.init_args.hidden=[32]",
           "--model.g_lr_scheduler=null", "--model.d_lr_scheduler=null",  # the math must not depend on max_steps
           "--checkpoint.every_n_train_steps=10"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    last = run_dir / "checkpoints" / "last.ckpt"
    with open(tmp_path / "stderr.txt", "w+") as err:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert last.exists(), "the run wrote no checkpoint"
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        err.seek(0)
        stderr = err.read()
    found = re.findall(r"^preempted at step (\d+): saved (\S+); resume with: (.*)$", stderr, re.MULTILINE)
    assert len(found) == 1, stderr[-3000:]
    step, saved, hint = int(found[0][0]), Path(found[0][1]), found[0][2]
    assert saved == last and step >= 10
    assert hint.startswith("python -m gan_lightning fit --config ") and hint.endswith(f" --ckpt_path {last}")
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == step
    model = load_gan(str(last), trust=True)
    assert same_state(model.state_dict(), ckpt["state_dict"]) == []
    assert code == PREEMPTED_EXIT_CODE == 143, f"exit code {code}"

    # Resuming from the preemption checkpoint continues to the same result as a run never interrupted.
    target = step + 7
    base = [a for a in cmd[3:] if not a.startswith("--trainer.max_steps") and a != "--run_dir" and a != str(run_dir)]
    for name, extra in (("resumed", ["--ckpt_path", str(last)]), ("uninterrupted", [])):
        done = subprocess.run([*cmd[:3], *base, f"--trainer.max_steps={target}", "--run_dir", str(tmp_path / name),
                               *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    resumed, uninterrupted = (torch.load(tmp_path / n / "checkpoints" / "last.ckpt", weights_only=True)
                              for n in ("resumed", "uninterrupted"))
    assert resumed["global_step"] == uninterrupted["global_step"] == target
    assert same_state(resumed["state_dict"], uninterrupted["state_dict"]) == []


@pytest.mark.slow
def test_slurm_job_through_the_cli_is_requeued_and_the_requeued_job_resumes(tmp_path, monkeypatch):
    """``python -m gan_lightning fit`` as ``srun`` starts it in a SLURM job (fake environment, ``scontrol``
    intercepted), SIGUSR1 once the first checkpoint is written: exit code 143, last.ckpt and hpc_ckpt_1.ckpt of the
    same step N in the run directory named from the job id, and one ``scontrol requeue``. The same command line
    started again (the requeued job; only max_steps lowered so that it ends) resumes from hpc_ckpt_1.ckpt by itself
    and ends at its max_steps without requeueing again."""
    calls = fake_slurm(tmp_path, monkeypatch)
    cmd = [sys.executable, "-m", "gan_lightning", "fit", "--config", str(REPO / "experiments" / "toy_ring.yaml"),
           f"--trainer.default_root_dir={tmp_path / 'runs'}", "--wandb=disabled", "--trainer.enable_progress_bar=false",
           "--trainer.callbacks=[]", "--model.generator.init_args.hidden=[32]",
           "--model.discriminator.init_args.hidden=[32]", "--checkpoint.every_n_train_steps=10"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "runs" / "toy_ring" / "4242-seed0"
    last = run_dir / "checkpoints" / "last.ckpt"
    with open(tmp_path / "first.log", "w+") as log:
        proc = subprocess.Popen([*cmd, "--trainer.max_steps=100000"], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert last.exists(), "the run wrote no checkpoint"
            proc.send_signal(signal.SIGUSR1)
            code = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
        log.seek(0)
        first = log.read()
    assert code == PREEMPTED_EXIT_CODE, first[-3000:]
    step = int(re.findall(r"^preempted at step (\d+): saved (\S+);", first, re.MULTILINE)[0][0])
    assert torch.load(last, weights_only=False)["global_step"] == step >= 10
    assert torch.load(run_dir / "hpc_ckpt_1.ckpt", weights_only=False)["global_step"] == step
    assert calls.read_text() == "requeue 4242\n"

    target = step + 5
    again = subprocess.run([*cmd, f"--trainer.max_steps={target}"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {run_dir / 'hpc_ckpt_1.ckpt'}" in again.stdout + again.stderr
    assert torch.load(last, weights_only=False)["global_step"] == target
    assert calls.read_text() == "requeue 4242\n"


# ------------------------------------------------------------------------------------------------ pickling
class PicklableGAN(GAN):
    """The GAN with the two methods that make parametrized networks picklable."""

    def __getstate__(self) -> dict[str, Any]:
        return strip_parametrizations(super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(restore_parametrizations(state))


def _networks(name: str) -> tuple[nn.Module, nn.Module, Any]:
    torch.manual_seed(0)
    if name == "dcgan-spectral":
        g = DCGANGenerator(latent_dim=8, channels=1, image_size=28, ngf=4)
        d = DCGANDiscriminator(channels=1, image_size=28, ndf=4, norm="spectral")
        return g, d, None
    g = ResNetGenerator(latent_dim=8, channels=1, image_size=28, ngf=8, num_classes=3,
                        conditioning=ConditionalBatchNorm())
    d = ResNetDiscriminator(channels=1, image_size=28, ndf=8, num_classes=3, conditioning=Projection())
    return g, d, torch.tensor([0, 1, 2, 1])


def _outputs(model: GAN, z: torch.Tensor, x: torch.Tensor, y: Any) -> list[torch.Tensor]:
    return [model.discriminator(x, y), model.generator(z, y), model.generator_ema(z, y)]


@pytest.mark.parametrize("name", ["dcgan-spectral", "resnet-projection"])
def test_pickled_gan_is_the_same_parametrized_model(name):
    """A spectral-norm DCGAN D, and a ResNet D with spectral norm in every block and on the Projection
    embedding (with an EMA generator): the networks alone cannot be pickled; the GAN with the two methods can,
    and the copy has the same state_dict (keys in order, bit-identical values, spectral-norm vectors included),
    gives the same outputs in train and eval mode, continues the power iteration from the same vectors, and the
    pickled model itself is unchanged."""
    g, d, y = _networks(name)
    with pytest.raises(RuntimeError, match="Serialization of parametrized modules"):
        pickle.dumps(d)
    model = PicklableGAN(g, d, ema_decay=0.9)
    z, x = torch.randn(4, 8), torch.rand(4, 1, 28, 28) * 2 - 1
    _outputs(model, z, x, y)  # move the power-iteration vectors away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(k.endswith("._u") for k in before) and any(k.endswith("._v") for k in before)
    if name == "resnet-projection":
        assert "discriminator.conditioning.embed.parametrizations.weight.0._u" in before

    data = pickle.dumps(model)
    assert same_state(model.state_dict(), before) == []
    assert parametrize.is_parametrized(model.discriminator.body[0] if name == "dcgan-spectral"
                                       else model.discriminator.blocks[0].conv1, "weight")
    copy = pickle.loads(data)
    assert type(copy) is PicklableGAN
    assert same_state(copy.state_dict(), before) == []
    for training in (True, False, True, True):
        model.train(training)
        copy.train(training)
        for a, b in zip(_outputs(model, z, x, y), _outputs(copy, z, x, y)):
            assert torch.equal(a, b)
    after = model.state_dict()
    moved = [k for k in after if not torch.equal(after[k], before[k])]
    assert any(k.endswith("._u") for k in moved) and any(k.endswith("._v") for k in moved)  # iterations ran
    assert same_state(copy.state_dict(), after) == []
    assert [n for n, _ in copy.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(p.requires_grad for p in copy.discriminator.parameters())


class _Split(nn.Module):
    """A parametrization over two tensors: ``weight = a + b``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def right_inverse(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 0.25 * w, 0.75 * w


class _Double(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / 2


class _Holder(nn.Module):
    def __getstate__(self) -> dict[str, Any]:
        return strip_parametrizations(super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(restore_parametrizations(state))


def test_round_trip_is_exact_for_any_parametrization():
    """Parametrizations whose right_inverse is not the identity (torch's orthogonal, which also rewrites its own
    buffer), several on one tensor, two tensors of one module, two original tensors, and a module shared by two
    children: all come back bit-identical and still shared."""
    torch.manual_seed(0)
    m = _Holder()
    m.ortho = orthogonal(nn.Linear(4, 4))
    m.stack = spectral_norm(nn.Linear(4, 4))
    parametrize.register_parametrization(m.stack, "weight", _Double())
    parametrize.register_parametrization(m.stack, "bias", _Double())
    m.split = nn.Linear(4, 4)
    parametrize.register_parametrization(m.split, "weight", _Split())
    with torch.no_grad():
        m.split.parametrizations.weight.original1.add_(1.0)  # originals that right_inverse would not give
    m.shared = m.stack
    state = strip_parametrizations(nn.Module.__getstate__(m))
    assert isinstance(state["_modules"]["stack"], StrippedModule) and state["_modules"]["stack"] is not m.stack
    assert state["_modules"]["shared"].module is state["_modules"]["stack"].module  # one copy, still shared
    copy = pickle.loads(pickle.dumps(m))
    assert copy.shared is copy.stack
    assert same_state(copy.state_dict(), m.state_dict()) == []
    assert copy.stack.parametrizations.weight.unsafe is False
    x = torch.randn(3, 4)
    for training in (True, False, True):
        m.train(training)
        copy.train(training)
        for name in ("ortho", "stack", "split"):
            assert torch.equal(getattr(m, name)(x), getattr(copy, name)(x)), name
    assert same_state(copy.state_dict(), m.state_dict()) == []


@pytest.mark.slow
def test_gan_ddp_spawn_trains_a_spectral_norm_dcgan(tmp_path):
    """gan_ddp_spawn pickles the LightningModule into each process: a spectral-norm DCGAN on 2 processes trains
    2 steps, the ranks stay bit-identical (spectral-norm vectors included), and the weights moved."""
    model = H.dcgan(d_norm="spectral")
    init = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    rec = H.Recorder(str(tmp_path))
    trainer = H.trainer(tmp_path, 2, strategy="gan_ddp_spawn", devices=2,
                        callbacks=[RankConsistency(every_n_steps=1), rec])
    trainer.fit(model, H.TinyImages(batch_size=8))
    r0, r1 = H.load_ranks(tmp_path, 2)
    assert r0["global_step"] == r1["global_step"] == 2
    for s0, s1 in zip(r0["steps"], r1["steps"]):
        assert same_state(s0, s1) == []
    assert same_state(r0["final"], r1["final"]) == []
    moved = [k for k, v in init.items() if not torch.equal(v, r0["final"][f"discriminator.{k}"])]
    assert any(k.endswith("._u") for k in moved) and any(k.endswith(".original") for k in moved)
