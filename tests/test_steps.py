"""Step accounting: ``n_critic`` D steps per G step, and Lightning's step counts G iterations.

The torch optimizers' ``step`` methods are wrapped once training starts, so every real parameter update is
counted, whichever path (Lightning's optimizer wrapper or the strategy directly) calls it.
"""

from __future__ import annotations

import re
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from gan_lightning.data import ToyDataModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.training.system import GAN

BATCH = 8


class StepLog(pl.Callback):
    """Records ``G``/``D`` for each call of the underlying torch optimizers' ``step``, and each batch's size."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.batch_sizes: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        opt_g, opt_d = trainer.optimizers
        assert set(opt_g.param_groups[0]["params"]) == set(pl_module.generator.parameters())
        assert set(opt_d.param_groups[0]["params"]) == set(pl_module.discriminator.parameters())
        for tag, opt in (("G", opt_g), ("D", opt_d)):
            original = opt.step

            def step(*args, _original=original, _tag=tag, **kwargs):
                self.events.append(_tag)
                return _original(*args, **kwargs)

            opt.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.batch_sizes.append(x.shape[0])


def tiny_gan(**kwargs) -> GAN:
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8, 8])
    d = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=2)
    return GAN(g, d, **kwargs)


@pytest.mark.parametrize("d_step, d_steps_per_critic", [("joint", 1), ("split", 2)])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_n_critic_d_steps_per_g_step(make_trainer, k, d_step, d_steps_per_critic):
    n = 5
    # 64 points, k*8 per step: one to four batches per epoch, so max_steps crosses epoch boundaries.
    data = ToyDataModule(num_samples=64, batch_size=BATCH, draws_per_step=k)  # the CLI links it to n_critic
    log = StepLog()
    trainer = make_trainer(n, callbacks=[log])
    trainer.fit(tiny_gan(n_critic=k, d_step=d_step), datamodule=data)

    assert log.events == (["D"] * (k * d_steps_per_critic) + ["G"]) * n
    assert trainer.global_step == n
    # The data module draws one batch of batch_size real samples for each of the k D steps.
    assert data.draws_per_step == k
    assert log.batch_sizes == [k * BATCH] * n


def test_step_cadences_count_generator_iterations(make_trainer, tmp_path):
    """Checkpoints every 2 steps with n_critic=3: at G steps 2, 4, 6, not at optimizer calls."""
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1, filename="{step}")
    trainer = make_trainer(6, callbacks=[ckpt], enable_checkpointing=True)
    trainer.fit(tiny_gan(n_critic=3), datamodule=ToyDataModule(num_samples=240, batch_size=BATCH, draws_per_step=3))
    steps = sorted(int(re.search(r"step=(\d+)", p.name).group(1)) for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert steps == [2, 4, 6]
    assert torch.load(tmp_path / "ckpt" / "step=6.ckpt", weights_only=False)["global_step"] == 6


def test_batch_too_small_for_n_critic_is_a_user_error(make_trainer):
    """A plain loader giving fewer samples than D steps cannot feed the D phase: a clear error, not a crash."""
    from gan_lightning.errors import UserError

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)
    with pytest.raises(UserError, match="n_critic=3"):
        make_trainer(1).fit(tiny_gan(n_critic=3), train_dataloaders=loader)


def test_data_module_drawing_one_batch_for_several_d_steps_is_a_user_error(make_trainer):
    """n_critic=3 with a data module that draws batch_size samples per step (not 3 x batch_size) would silently
    give D batches of a third of the size: refused with the fix, before any step."""
    from gan_lightning.errors import UserError

    model = tiny_gan(n_critic=3)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(UserError, match=r"batches of 8 samples cannot feed n_critic=3 D steps \(3 x 8 needed\)"):
        make_trainer(1).fit(model, datamodule=ToyDataModule(num_samples=64, batch_size=BATCH))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_lr_schedulers_step_once_per_generator_step(make_trainer, tmp_path):
    """Linear decay over 6 G steps with n_critic=3: both learning rates follow G iterations, not D steps, and the
    schedulers' state is in the checkpoint."""
    decay = partial(torch.optim.lr_scheduler.LinearLR, start_factor=1.0, end_factor=0.0, total_iters=6)
    model = tiny_gan(
        n_critic=3,
        g_optimizer=partial(torch.optim.Adam, lr=1e-3),
        d_optimizer=partial(torch.optim.Adam, lr=4e-3),
        g_lr_scheduler=decay,
        d_lr_scheduler=decay,
    )
    seen = []

    class Rates(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])

    trainer = make_trainer(4, callbacks=[Rates()], enable_checkpointing=True)
    trainer.fit(model, datamodule=ToyDataModule(num_samples=240, batch_size=BATCH, draws_per_step=3))
    expected = [[1e-3 * (1 - s / 6), 4e-3 * (1 - s / 6)] for s in range(4)]
    assert len(seen) == 4
    for rates, want in zip(seen, expected):
        assert rates == pytest.approx(want)
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path,
                      weights_only=False)
    assert [state["last_epoch"] for state in ckpt["lr_schedulers"]] == [4, 4]


def test_plateau_scheduler_is_a_user_error(make_trainer):
    from gan_lightning.errors import UserError

    model = tiny_gan(d_lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau))
    with pytest.raises(UserError, match="model.d_lr_scheduler"):
        make_trainer(1).fit(model, datamodule=ToyDataModule(num_samples=64, batch_size=BATCH))


@pytest.mark.parametrize("ema_start", [0, 2])
def test_ema_generator_follows_its_formula(make_trainer, ema_start):
    """EMA_t = decay * EMA_{t-1} + (1 - decay) * G_t after each G step t > ema_start (a copy of G before), and
    the EMA weights stay plain tensors outside autograd."""
    decay = 0.75
    model = tiny_gan(ema_decay=decay, ema_start=ema_start)
    expected = [p.detach().clone() for p in model.generator.parameters()]

    class Follow(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            for e, p in zip(expected, pl_module.generator.parameters()):
                if trainer.global_step <= ema_start:
                    e.copy_(p.detach())
                else:
                    e.mul_(decay).add_(p.detach(), alpha=1 - decay)

    # The check runs after the module's own update (callbacks follow training_step).
    trainer = make_trainer(4, callbacks=[Follow()])
    trainer.fit(model, datamodule=ToyDataModule(num_samples=240, batch_size=BATCH))
    ema = list(model.generator_ema.parameters())
    for e, p in zip(expected, ema):
        torch.testing.assert_close(p, e)
        assert p.is_leaf and p.grad_fn is None and not p.requires_grad
    assert any(not torch.equal(p, g) for p, g in zip(ema, model.generator.parameters()))


def test_ema_generator_takes_the_live_networks_buffers(make_trainer):
    """The EMA copy averages G's parameters but takes G's buffers as they are (batch-norm running statistics,
    the batch counter): statistics of an average of weights are not the average of their statistics."""
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8, 8], norm="batch")
    d = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=2)
    model = GAN(g, d, ema_decay=0.5)
    assert len(list(g.buffers())) == 6  # running mean, var and batch count of two batch norms
    initial = [b.clone() for b in model.generator_ema.buffers()]
    make_trainer(3).fit(model, datamodule=ToyDataModule(num_samples=240, batch_size=BATCH))
    for ema_buffer, live, before in zip(model.generator_ema.buffers(), model.generator.buffers(), initial):
        assert torch.equal(ema_buffer, live)
        assert not torch.equal(live, before)  # they moved during training
    assert any(not torch.equal(e, p) for e, p in zip(model.generator_ema.parameters(), model.generator.parameters()))


def test_linear_decay_schedule():
    from gan_lightning.errors import UserError
    from gan_lightning.training.schedules import LinearDecay

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    schedule = LinearDecay(opt, total_steps=10, decay_start=0.6)
    rates = []
    for _ in range(12):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates == pytest.approx([0.5] * 7 + [0.375, 0.25, 0.125, 0.0, 0.0])
    with pytest.raises(UserError, match="decay_start"):
        LinearDecay(opt, total_steps=10, decay_start=1.0)


def test_linear_decay_defaults_to_the_runs_max_steps(make_trainer):
    from gan_lightning.training.schedules import LinearDecay

    model = tiny_gan(g_optimizer=partial(torch.optim.SGD, lr=0.1), g_lr_scheduler=partial(LinearDecay, decay_start=0.5))
    seen = []

    class Rates(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    make_trainer(4, callbacks=[Rates()]).fit(model, datamodule=ToyDataModule(num_samples=240, batch_size=BATCH))
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.05])
    assert model.lr_schedulers().total_steps == 4


def test_grad_clip_norm_bounds_each_networks_update():
    """With SGD at lr 1, one iteration moves each network by exactly its clipped gradient: norm = grad_clip_norm
    (the unclipped gradients are far larger)."""
    clip = 1e-3
    model = tiny_gan(grad_clip_norm=clip, g_optimizer=partial(torch.optim.SGD, lr=1.0),
                     d_optimizer=partial(torch.optim.SGD, lr=1.0))
    before = {n: [p.detach().clone() for p in getattr(model, n).parameters()] for n in ("generator", "discriminator")}
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=ToyDataModule(num_samples=64, batch_size=BATCH))
    for name, old in before.items():
        delta = torch.cat([(p.detach() - o).flatten() for p, o in zip(getattr(model, name).parameters(), old)])
        assert delta.norm().item() == pytest.approx(clip, rel=1e-4), name


class BackwardHooks(pl.Callback):
    """Counts the backward and optimizer-step hooks Lightning dispatches."""

    def __init__(self) -> None:
        self.calls = {"on_before_backward": 0, "on_after_backward": 0, "on_before_optimizer_step": 0}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls["on_before_backward"] += 1

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls["on_before_optimizer_step"] += 1


def _fit_weights(make_trainer, callbacks, steps=6, **model_kwargs):
    model = tiny_gan(**model_kwargs)
    torch.manual_seed(1)
    data = ToyDataModule(num_samples=256, batch_size=BATCH, draws_per_step=model.n_critic)
    make_trainer(steps, callbacks=callbacks).fit(model, data)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def test_a_callback_with_backward_hooks_gets_every_call(make_trainer):
    """Every backward and optimizer step goes through Lightning, so a callback's hooks see each of them: per G
    iteration, n_critic D backwards and steps plus G's."""
    hooks = BackwardHooks()
    model, _ = _fit_weights(make_trainer, [hooks], steps=5, n_critic=2)
    assert hooks.calls == {"on_before_backward": 15, "on_after_backward": 15, "on_before_optimizer_step": 15}
