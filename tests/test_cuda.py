"""On a CUDA GPU: bf16-mixed training, 16-mixed with its grad scaler and gradient clipping of the true gradient,
torch.compile, and the image metrics' GPU path against the CPU's.

Marked ``cuda``: ``pytest -m cuda`` (and ``make bench-gpu``) runs them; without a CUDA device they are skipped.
"""

from __future__ import annotations

import math
from functools import partial

import lightning.pytorch as pl
import pytest
import torch

from gan_lightning.data import ToyDataModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import R1
from gan_lightning.training.system import GAN

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture
def no_tf32():
    """Full float32 convolutions and matmuls, so that GPU and CPU results can be compared closely."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _tiny_gan(**kwargs) -> GAN:
    torch.manual_seed(0)
    return GAN(MLPGenerator(hidden=[32, 32]), MLPDiscriminator(hidden=[32, 32], maxout_pieces=2), **kwargs)


def _dcgan(**kwargs) -> GAN:
    from gan_lightning.conditioning import ConditionalBatchNorm, Projection
    from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=16, ngf=8, num_classes=10, conditioning=ConditionalBatchNorm())
    d = DCGANDiscriminator(ndf=8, norm="spectral", num_classes=10, conditioning=Projection())
    return GAN(g, d, loss="hinge", **kwargs)


def _resnet_gan(**kwargs) -> GAN:
    from gan_lightning.nets import ResNetDiscriminator, ResNetGenerator

    torch.manual_seed(0)
    g = ResNetGenerator(latent_dim=8, channels=1, image_size=28, ngf=8)
    d = ResNetDiscriminator(channels=1, image_size=28, ndf=8)  # spectral norm on every layer
    return GAN(g, d, loss="hinge", **kwargs)


def _labelled_images(n: int = 64, batch: int = 16):
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    return DataLoader(TensorDataset(x, torch.randint(0, 10, (n,), generator=g)), batch_size=batch, drop_last=True)


def _images(n: int = 32, batch: int = 8):
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(x), batch_size=batch, drop_last=True)


def _moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b.detach().cpu()) for a, b in zip(before, module.parameters()))


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in module.parameters()]


@pytest.mark.parametrize("which", ["mlp_r1", "dcgan_spectral"])
def test_bf16_mixed_trains_both_networks_on_the_gpu(make_trainer, which):
    if which == "mlp_r1":  # R1's double backward under autocast
        model, data = _tiny_gan(regularizers=[R1(1.0)]), ToyDataModule(num_samples=512, batch_size=32)
    else:  # conditional BN, spectral-norm projection D
        model, data = _dcgan(), _labelled_images()
    g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
    seen = []
    original = model.g_phase

    def g_phase(fake, *rest):
        seen.append((fake.dtype, fake.device.type))
        return original(fake, *rest)

    model.g_phase = g_phase
    trainer = make_trainer(max_steps=3, accelerator="cuda", precision="bf16-mixed")
    trainer.fit(model, data)
    assert trainer.global_step == 3
    assert seen == [(torch.bfloat16, "cuda")] * 3
    # Master weights stay float32 on the GPU, and both networks moved.
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in model.parameters())
    assert _moved(g0, model.generator) and _moved(d0, model.discriminator)
    for name in ("train/d_loss", "train/g_loss"):
        assert math.isfinite(float(trainer.callback_metrics[name]))


@pytest.mark.parametrize("d_step", ["joint", "split"])
def test_16_mixed_steps_through_the_grad_scaler_and_clips_the_true_gradient(make_trainer, d_step):
    """With a loss scale of 256 and SGD at lr 1, each optimizer step moves its network by exactly the clipped
    gradient, so every update's norm equals grad_clip_norm (clipping the scaled gradient would give 1/256 of it),
    and every D and G step goes through the grad scaler."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    clip = 0.01
    model = _tiny_gan(grad_clip_norm=clip, d_step=d_step, n_critic=2, g_optimizer=partial(torch.optim.SGD, lr=1.0),
                      d_optimizer=partial(torch.optim.SGD, lr=1.0))
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**8)
    stepped: list[torch.optim.Optimizer] = []
    original_step = scaler.step

    def step(optimizer, *args, **kwargs):
        stepped.append(optimizer)
        return original_step(optimizer, *args, **kwargs)

    scaler.step = step
    moves: list[tuple[str, float]] = []
    dtypes = []
    original_g_phase = model.g_phase

    def g_phase(fake, *rest):
        dtypes.append(fake.dtype)
        return original_g_phase(fake, *rest)

    model.g_phase = g_phase

    class Watch(pl.Callback):
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

    trainer = make_trainer(max_steps=3, accelerator="cuda", callbacks=[Watch()],
                           plugins=[MixedPrecision("16-mixed", "cuda", scaler=scaler)])
    trainer.fit(model, ToyDataModule(num_samples=512, batch_size=32, draws_per_step=2))
    opt_g, opt_d = trainer.optimizers
    d_steps = 2 * (1 if d_step == "joint" else 2)  # n_critic D phases of one or two optimizer steps
    assert trainer.global_step == 3
    assert dtypes == [torch.float16] * 3
    assert [o is opt_d for o in stepped] == ([True] * d_steps + [False]) * 3
    assert scaler.get_scale() >= 2.0**7  # the gradients were scaled throughout
    assert [name for name, _ in moves] == (["D"] * d_steps + ["G"]) * 3
    for name, norm in moves:
        assert norm == pytest.approx(clip, rel=1e-3), f"{name} moved by {norm}, not the clipped {clip}"
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_compiled_spectral_norm_resnet_matches_eager_on_the_gpu(make_trainer, no_tf32):
    """torch.compile of G and a spectral-norm D on the GPU: parameter names stay those of the plain networks, both
    networks train, and two steps log the losses eager training logs from the same seed (SGD, so that the updates
    are linear in the gradients and float rounding stays small)."""
    sgd = partial(torch.optim.SGD, lr=0.01)
    losses = {}
    for mode in ("none", "default"):
        plain_keys = list(_resnet_gan().state_dict())
        model = _resnet_gan(compile=mode, g_optimizer=sgd, d_optimizer=sgd)
        g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
        torch.manual_seed(1)
        trainer = make_trainer(max_steps=2, accelerator="cuda")
        trainer.fit(model, _images())
        assert trainer.global_step == 2
        assert list(model.state_dict()) == plain_keys
        assert _moved(g0, model.generator) and _moved(d0, model.discriminator)
        compiled = mode != "none"
        assert (model.generator._compiled_call_impl is not None) == compiled
        assert (model.discriminator._compiled_call_impl is not None) == compiled
        losses[mode] = {k: float(trainer.callback_metrics[f"train/{k}"]) for k in ("d_loss", "g_loss")}
    for key, eager in losses["none"].items():
        assert math.isfinite(eager)
        assert losses["default"][key] == pytest.approx(eager, rel=1e-3, abs=1e-5), key


def test_image_metrics_on_the_gpu_match_the_cpu(classifier_cache, no_tf32):
    """The metrics' GPU path (samples drawn and features extracted on the GPU) gives the CPU's FID and accuracy."""
    from gan_lightning.data import EmbeddedMNIST
    from gan_lightning.metrics.features import DomainFeatures
    from gan_lightning.metrics.image import FeatureSet, compute, extract, generated_features, real_uint8
    from gan_lightning.sampling.pixels import to_uint8
    from gan_lightning.sampling.draw import draw_indices

    model = _dcgan()
    data = EmbeddedMNIST(batch_size=64)
    data.setup("fit")
    images, labels = real_uint8(data, 500, seed=0)
    values, samples = {}, {}
    for device in ("cpu", "cuda"):
        model.to(device)
        extractor = DomainFeatures().prepare(device)
        ref_features, ref_logits = extract(extractor, images)
        reference = FeatureSet(ref_features, ref_logits, labels)
        generated = generated_features(model, extractor, 500, seed=0)
        values[device] = compute(["fid", "accuracy"], generated, reference)
        index = torch.arange(64)
        samples[device] = to_uint8(draw_indices(model, index, 0, model.conditioning.conditions(64))).int()
    # The same samples, up to a rare rounding flip of one grey level.
    diff = (samples["cuda"] - samples["cpu"]).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01
    assert values["cpu"]["fid"] > 0
    assert values["cuda"]["fid"] == pytest.approx(values["cpu"]["fid"], rel=1e-3, abs=1e-6)
    assert values["cuda"]["accuracy"] == pytest.approx(values["cpu"]["accuracy"], abs=0.01)
