"""Mixed precision and torch.compile with manual optimization and two optimizers (bf16 on CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from gan_lightning.runtime.compat import spectral_norm_modules
from gan_lightning.data import ToyDataModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import R1, GradientPenalty
from gan_lightning.training.system import GAN


def _tiny_gan(**kwargs) -> GAN:
    torch.manual_seed(0)
    return GAN(MLPGenerator(hidden=[32, 32]), MLPDiscriminator(hidden=[32, 32], maxout_pieces=2), **kwargs)


@pytest.mark.parametrize("penalty", [{}, {"loss": "wasserstein", "regularizers": [GradientPenalty(10.0)]},
                                     {"regularizers": [R1(1.0)]}], ids=["plain", "gp", "r1"])
def test_bf16_mixed_trains_both_networks(make_trainer, penalty):
    model = _tiny_gan(**penalty)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    seen = []

    original = model.g_phase

    def g_phase(fake, y, *rest):
        # Under bf16 autocast the generator's matmuls run in bfloat16.
        seen.append(fake.dtype)
        return original(fake, y, *rest)

    model.g_phase = g_phase
    trainer = make_trainer(max_steps=3, precision="bf16-mixed")
    trainer.fit(model, ToyDataModule(num_samples=512, batch_size=32))
    assert trainer.global_step == 3
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    # Master weights stay float32 and both networks moved.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    for name in ("train/d_loss", "train/g_loss"):
        assert math.isfinite(float(trainer.callback_metrics[name]))


@pytest.mark.slow
def test_compile_keeps_parameter_names_and_trains(make_trainer):
    plain_keys = list(_tiny_gan().state_dict())
    model = _tiny_gan(compile="default")
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    trainer = make_trainer(max_steps=2)
    trainer.fit(model, ToyDataModule(num_samples=256, batch_size=32))
    assert trainer.global_step == 2
    # Compiled in place: checkpoints keep the plain networks' parameter names.
    assert list(model.state_dict()) == plain_keys
    assert model.generator._compiled_call_impl is not None
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))


def test_unknown_compile_mode_is_refused():
    from gan_lightning.errors import UserError

    with pytest.raises(UserError, match="model.compile"):
        _tiny_gan(compile="fastest")


def _resnet_gan(**kwargs) -> GAN:
    from gan_lightning.nets import ResNetDiscriminator, ResNetGenerator

    torch.manual_seed(0)
    g = ResNetGenerator(latent_dim=8, channels=1, image_size=28, ngf=8)
    d = ResNetDiscriminator(channels=1, image_size=28, ndf=8)  # spectral norm on every layer
    return GAN(g, d, loss="hinge", **kwargs)


def _image_batches(n: int = 32, batch: int = 8):
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(torch.rand(n, 1, 28, 28) * 2 - 1), batch_size=batch, drop_last=True)


@pytest.mark.slow
@pytest.mark.parametrize("penalty", [{}, {"regularizers": [R1(1.0)]}], ids=["plain", "r1"])
def test_compiled_spectral_norm_resnet_trains(make_trainer, penalty):
    # Several D calls per D step under a compiled spectral-norm D: the power iteration must not mutate tensors
    # the compiled graph saved for its backward. With a penalty (double backward) D stays uncompiled.
    model = _resnet_gan(compile="default", **penalty)
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = make_trainer(max_steps=2)
    trainer.fit(model, _image_batches())
    assert trainer.global_step == 2
    assert model.generator._compiled_call_impl is not None
    assert (model.discriminator._compiled_call_impl is not None) == (not penalty)
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))


def test_spectral_norm_advances_once_per_d_step(make_trainer):
    # Joint D step with a gradient penalty: D is called on real, fake and interpolated samples, and the G phase
    # calls it again; only the first call of each D step advances the power iteration.
    model = _resnet_gan(regularizers=[GradientPenalty(1.0)], n_critic=2)
    sn = spectral_norm_modules(model.discriminator)[0]
    calls = []
    original = sn._power_method

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    sn._power_method = counted
    trainer = make_trainer(max_steps=3)
    trainer.fit(model, _image_batches(n=48, batch=16))
    assert trainer.global_step == 3
    assert len(calls) == 3 * 2  # n_critic D steps per G step, one advance each


@pytest.mark.parametrize("penalty", [{}, {"regularizers": [R1(1.0)]}], ids=["plain", "r1"])
def test_16_mixed_steps_every_optimizer_through_the_grad_scaler(make_trainer, penalty):
    # 16-mixed as on a GPU, with a GradScaler (here the CPU one): every D and G step goes through scaler.step,
    # only G steps count, and both networks train with finite float32 master weights.
    from lightning.pytorch.plugins.precision import MixedPrecision

    model = _tiny_gan(n_critic=2, **penalty)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    stepped = []
    original = scaler.step

    def step(optimizer, *args, **kwargs):
        stepped.append(optimizer)
        return original(optimizer, *args, **kwargs)

    scaler.step = step
    trainer = make_trainer(max_steps=3, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    trainer.fit(model, ToyDataModule(num_samples=512, batch_size=32, draws_per_step=2))
    opt_d = trainer.optimizers[1]
    assert trainer.global_step == 3
    assert [o is opt_d for o in stepped] == [True, True, False] * 3
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))


@pytest.mark.parametrize("d_step", ["joint", "split"])
def test_16_mixed_clips_the_unscaled_gradient(make_trainer, d_step):
    """With a loss scale of 256, gradient clipping must limit the true (unscaled) gradient: with SGD at lr 1
    every step moves a network's parameters by exactly the clipped gradient, so the update's norm equals
    grad_clip_norm (clipping the scaled gradient would give grad_clip_norm / 256)."""
    from functools import partial

    from lightning.pytorch.plugins.precision import MixedPrecision

    clip = 0.01
    model = _tiny_gan(grad_clip_norm=clip, d_step=d_step, g_optimizer=partial(torch.optim.SGD, lr=1.0),
                      d_optimizer=partial(torch.optim.SGD, lr=1.0))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    moves: list[tuple[str, float]] = []

    class Watch(__import__("lightning").pytorch.Callback):
        def on_train_start(self, trainer, pl_module):
            for name, opt in zip(("G", "D"), trainer.optimizers):
                params = [p for group in opt.param_groups for p in group["params"]]
                state = {}

                def pre(opt, args, kwargs, params=params, state=state):
                    state["before"] = [p.detach().clone() for p in params]

                def post(opt, args, kwargs, params=params, state=state, name=name):
                    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, state["before"])])
                    moves.append((name, float(delta.norm())))

                opt.register_step_pre_hook(pre)
                opt.register_step_post_hook(post)

    trainer = make_trainer(max_steps=3, callbacks=[Watch()], plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    trainer.fit(model, ToyDataModule(num_samples=512, batch_size=32))
    assert scaler.get_scale() >= 2.0**7  # the gradients were scaled throughout
    assert [name for name, _ in moves] == (["D"] * (1 if d_step == "joint" else 2) + ["G"]) * 3
    for name, norm in moves:
        assert norm == pytest.approx(clip, rel=1e-3), f"{name} moved by {norm}, not the clipped {clip}"
