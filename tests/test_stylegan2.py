"""StyleGAN2 (``gan_lightning.nets.stylegan2``) and its path-length regularizer (``objectives.PathLength``):
the parameter list of StyleGAN2-ADA's ``cifar`` configuration, shapes, gradients, the modulated convolution
against its formula, determinism, truncation, style mixing, the path-length term against a hand computation,
its resume, and real training steps through ``GAN`` with lazy R1 and path-length regularization.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import seed_everything
from torch import nn

from gan_lightning.conditioning import ConditionalBatchNorm, LabelConcat
from gan_lightning.data import EmbeddedMNIST
from gan_lightning.errors import UserError
from gan_lightning.nets.stylegan2 import (LabelEmbedding, MappedProjection, StyleGAN2Discriminator,
                                          StyleGAN2Generator, conv2d_resample, modulated_conv2d, fir_filter)
from gan_lightning.objectives import PathLength, R1
from gan_lightning.objectives.regularizers import Context, Side
from gan_lightning.training.system import GAN

F64 = torch.float64

# The reference: NVlabs/stylegan2-ada-pytorch (training/networks.py), Generator and Discriminator built on CPU
# with train.py's `--cfg=cifar` settings and CIFAR10's labels: z_dim = w_dim = 512, c_dim = 10,
# img_resolution = 32, img_channels = 3, channel_base = int(1 * 32768), channel_max = 512, G mapping
# num_layers = 2 (D's label mapping keeps the default 8), mbstd_group_size = 32, D architecture 'orig',
# num_fp16_res = 4 and conv_clamp = 256 (neither adds parameters). Obtained by instantiating those classes and
# reading sum(p.numel()) and named_parameters(); the 'resnet' D (StyleGAN2's default) adds the three skip weights.
# Our names equal the reference's except that the label layers sit in the conditioning modules:
# G's `mapping.embed.*` is our `conditioning.embed.*`, D's `mapping.*` our `conditioning.mapping.*`.
REF_G_PARAMS = 20_215_315
REF_D_ORIG_PARAMS = 23_089_664
REF_D_RESNET_PARAMS = 23_876_096
REF_G_CIFAR = {
    "synthesis.b4.const": (512, 4, 4),
    "synthesis.b4.conv1.weight": (512, 512, 3, 3),
    "synthesis.b4.conv1.noise_strength": (),
    "synthesis.b4.conv1.bias": (512,),
    "synthesis.b4.conv1.affine.weight": (512, 512),
    "synthesis.b4.conv1.affine.bias": (512,),
    "synthesis.b4.torgb.weight": (3, 512, 1, 1),
    "synthesis.b4.torgb.bias": (3,),
    "synthesis.b4.torgb.affine.weight": (512, 512),
    "synthesis.b4.torgb.affine.bias": (512,),
    "synthesis.b8.conv0.weight": (512, 512, 3, 3),
    "synthesis.b8.conv0.noise_strength": (),
    "synthesis.b8.conv0.bias": (512,),
    "synthesis.b8.conv0.affine.weight": (512, 512),
    "synthesis.b8.conv0.affine.bias": (512,),
    "synthesis.b8.conv1.weight": (512, 512, 3, 3),
    "synthesis.b8.conv1.noise_strength": (),
    "synthesis.b8.conv1.bias": (512,),
    "synthesis.b8.conv1.affine.weight": (512, 512),
    "synthesis.b8.conv1.affine.bias": (512,),
    "synthesis.b8.torgb.weight": (3, 512, 1, 1),
    "synthesis.b8.torgb.bias": (3,),
    "synthesis.b8.torgb.affine.weight": (512, 512),
    "synthesis.b8.torgb.affine.bias": (512,),
    "synthesis.b16.conv0.weight": (512, 512, 3, 3),
    "synthesis.b16.conv0.noise_strength": (),
    "synthesis.b16.conv0.bias": (512,),
    "synthesis.b16.conv0.affine.weight": (512, 512),
    "synthesis.b16.conv0.affine.bias": (512,),
    "synthesis.b16.conv1.weight": (512, 512, 3, 3),
    "synthesis.b16.conv1.noise_strength": (),
    "synthesis.b16.conv1.bias": (512,),
    "synthesis.b16.conv1.affine.weight": (512, 512),
    "synthesis.b16.conv1.affine.bias": (512,),
    "synthesis.b16.torgb.weight": (3, 512, 1, 1),
    "synthesis.b16.torgb.bias": (3,),
    "synthesis.b16.torgb.affine.weight": (512, 512),
    "synthesis.b16.torgb.affine.bias": (512,),
    "synthesis.b32.conv0.weight": (512, 512, 3, 3),
    "synthesis.b32.conv0.noise_strength": (),
    "synthesis.b32.conv0.bias": (512,),
    "synthesis.b32.conv0.affine.weight": (512, 512),
    "synthesis.b32.conv0.affine.bias": (512,),
    "synthesis.b32.conv1.weight": (512, 512, 3, 3),
    "synthesis.b32.conv1.noise_strength": (),
    "synthesis.b32.conv1.bias": (512,),
    "synthesis.b32.conv1.affine.weight": (512, 512),
    "synthesis.b32.conv1.affine.bias": (512,),
    "synthesis.b32.torgb.weight": (3, 512, 1, 1),
    "synthesis.b32.torgb.bias": (3,),
    "synthesis.b32.torgb.affine.weight": (512, 512),
    "synthesis.b32.torgb.affine.bias": (512,),
    "mapping.embed.weight": (512, 10),
    "mapping.embed.bias": (512,),
    "mapping.fc0.weight": (512, 1024),
    "mapping.fc0.bias": (512,),
    "mapping.fc1.weight": (512, 512),
    "mapping.fc1.bias": (512,),
}
REF_D_CIFAR_ORIG = {
    "b32.fromrgb.weight": (512, 3, 1, 1),
    "b32.fromrgb.bias": (512,),
    "b32.conv0.weight": (512, 512, 3, 3),
    "b32.conv0.bias": (512,),
    "b32.conv1.weight": (512, 512, 3, 3),
    "b32.conv1.bias": (512,),
    "b16.conv0.weight": (512, 512, 3, 3),
    "b16.conv0.bias": (512,),
    "b16.conv1.weight": (512, 512, 3, 3),
    "b16.conv1.bias": (512,),
    "b8.conv0.weight": (512, 512, 3, 3),
    "b8.conv0.bias": (512,),
    "b8.conv1.weight": (512, 512, 3, 3),
    "b8.conv1.bias": (512,),
    "mapping.embed.weight": (512, 10),
    "mapping.embed.bias": (512,),
    "mapping.fc0.weight": (512, 512),
    "mapping.fc0.bias": (512,),
    "mapping.fc1.weight": (512, 512),
    "mapping.fc1.bias": (512,),
    "mapping.fc2.weight": (512, 512),
    "mapping.fc2.bias": (512,),
    "mapping.fc3.weight": (512, 512),
    "mapping.fc3.bias": (512,),
    "mapping.fc4.weight": (512, 512),
    "mapping.fc4.bias": (512,),
    "mapping.fc5.weight": (512, 512),
    "mapping.fc5.bias": (512,),
    "mapping.fc6.weight": (512, 512),
    "mapping.fc6.bias": (512,),
    "mapping.fc7.weight": (512, 512),
    "mapping.fc7.bias": (512,),
    "b4.conv.weight": (512, 513, 3, 3),
    "b4.conv.bias": (512,),
    "b4.fc.weight": (512, 8192),
    "b4.fc.bias": (512,),
    "b4.out.weight": (512, 512),
    "b4.out.bias": (512,),
}
REF_D_RESNET_SKIPS = {
    "b32.skip.weight": (512, 512, 1, 1),
    "b16.skip.weight": (512, 512, 1, 1),
    "b8.skip.weight": (512, 512, 1, 1),
}


def reference_name(name: str) -> str:
    return name.replace("conditioning.embed.", "mapping.embed.").replace("conditioning.mapping.", "mapping.")


def shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {reference_name(n): tuple(p.shape) for n, p in net.named_parameters()}


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def cifar_g() -> StyleGAN2Generator:
    return StyleGAN2Generator(latent_dim=512, channels=3, image_size=32, w_dim=512, mapping_layers=2,
                              channel_base=32768, channel_max=512, conv_clamp=256, style_mixing_prob=0.0,
                              num_classes=10, conditioning=LabelEmbedding())


def cifar_d(architecture: str) -> StyleGAN2Discriminator:
    return StyleGAN2Discriminator(channels=3, image_size=32, architecture=architecture, channel_base=32768,
                                  channel_max=512, mbstd_group_size=32, conv_clamp=256, num_classes=10,
                                  conditioning=MappedProjection())


def test_cifar_config_has_the_reference_parameters():
    with torch.device("meta"):  # shapes only: no 43M random numbers
        g, d_orig, d_res = cifar_g(), cifar_d("orig"), cifar_d("resnet")
    assert shapes(g) == REF_G_CIFAR
    assert shapes(d_orig) == REF_D_CIFAR_ORIG
    assert shapes(d_res) == {**REF_D_CIFAR_ORIG, **REF_D_RESNET_SKIPS}
    assert (count(g), count(d_orig), count(d_res)) == (REF_G_PARAMS, REF_D_ORIG_PARAMS, REF_D_RESNET_PARAMS)
    assert sum(math.prod(s) for s in REF_G_CIFAR.values()) == REF_G_PARAMS
    assert g.num_ws == 8 and g.mapping.w_avg.shape == (512,)


def fill_by_formula(named: list[tuple[str, torch.Tensor]]) -> None:
    """Deterministic, varied values (unit variance, no random generator), tensor ``i`` in name order getting
    ``(|frac(sin(12.9898 k + 78.233 i) * 43758.5453)| - 0.5) * 2 sqrt(3)`` at flat index ``k``; affine biases
    +1 and the mapping layers' weights x100, as their initialisation (lr multiplier 0.01) has them."""
    for i, (name, t) in enumerate(sorted(named, key=lambda kv: kv[0])):
        k = torch.arange(t.numel(), dtype=F64)
        v = (torch.frac(torch.sin(k * 12.9898 + i * 78.233) * 43758.5453).abs() - 0.5) * 3.4641
        if name.startswith("mapping.fc") and name.endswith("weight"):
            v = v * 100.0
        if name.endswith("affine.bias"):
            v = v + 1.0
        t.data.copy_(v.view(t.shape).to(t.dtype))


# The reference's outputs for the weights of ``fill_by_formula`` (by reference name; G's buffers noise_const and
# w_avg too), obtained by running its Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3,
# mapping num_layers=2, channel_base=64, channel_max=8) in eval mode with noise_mode='const', and its
# Discriminator(c_dim=3, img_resolution=16, img_channels=3, channel_base=64, channel_max=8, mbstd_group_size=2)
# on those images, in float32 on CPU: the sum and sum of squares of the images, pixels [:, :, 5, 11] of the first
# two samples, and D's scores.
REF_OUTPUTS = {
    1.0: (-1450.3544, 20531.0861, [1.9441414, -2.0368979, 0.1956801, 2.0289068, -1.3067503, 3.2211142],
          {"orig": [0.0001102, -0.216317, -0.0333536, -0.3035203],
           "resnet": [0.2403959, -0.2302321, -4.6466193, -0.2957176]}),
    0.5: (-7568.7035, 79206.5188, [-1.203722, -7.6140532, 1.4569755, -3.147285, -9.8463554, 3.8460855],
          {"orig": [-0.3111207, -1.4195722, -0.4416019, -1.243435],
           "resnet": [-5.9240341, -1.2731408, -11.3231354, -1.0743556]}),
}


@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_outputs_match_the_reference_for_fixed_weights(psi):
    g = StyleGAN2Generator(latent_dim=8, channels=3, image_size=16, w_dim=8, mapping_layers=2, channel_base=64,
                           channel_max=8, num_classes=3).eval()
    fill_by_formula([(reference_name(n), p) for n, p in g.named_parameters()]
                    + [(n, b) for n, b in g.named_buffers() if n.endswith(("noise_const", "w_avg"))])
    k = torch.arange(32, dtype=F64)
    z = ((torch.frac(torch.sin(k * 4.1414) * 9631.77).abs() - 0.5) * 3.4641).view(4, 8).float()
    y = torch.tensor([0, 2, 1, 2])
    total, squares, pixels, scores = REF_OUTPUTS[psi]
    with torch.no_grad():
        images = g(z, y, truncation_psi=psi)
    assert float(images.double().sum()) == pytest.approx(total, rel=1e-5, abs=1e-3)
    assert float(images.double().square().sum()) == pytest.approx(squares, rel=1e-5)
    torch.testing.assert_close(images[:, :, 5, 11].flatten()[:6], torch.tensor(pixels), rtol=1e-4, atol=1e-5)
    for architecture in ("orig", "resnet"):
        d = StyleGAN2Discriminator(channels=3, image_size=16, architecture=architecture, channel_base=64,
                                   channel_max=8, mbstd_group_size=2, num_classes=3).eval()
        fill_by_formula([(reference_name(n), p) for n, p in d.named_parameters()])
        with torch.no_grad():
            torch.testing.assert_close(d(images, y), torch.tensor(scores[architecture]), rtol=1e-4, atol=1e-5)


def tiny_g(image_size: int = 16, channels: int = 3, num_classes: int = 0, **kwargs) -> StyleGAN2Generator:
    options = dict(latent_dim=8, channels=channels, image_size=image_size, w_dim=8, mapping_layers=2,
                   channel_base=64, channel_max=8, num_classes=num_classes)
    return StyleGAN2Generator(**{**options, **kwargs})


def tiny_d(image_size: int = 16, channels: int = 3, num_classes: int = 0, **kwargs) -> StyleGAN2Discriminator:
    options = dict(channels=channels, image_size=image_size, channel_base=64, channel_max=8, mbstd_group_size=2,
                   num_classes=num_classes)
    return StyleGAN2Discriminator(**{**options, **kwargs})


@pytest.mark.parametrize("image_size,num_classes,architecture", [(16, 0, "resnet"), (32, 3, "orig"), (28, 3, "resnet")])
def test_forward_shapes_and_every_parameter_gets_a_gradient(image_size, num_classes, architecture):
    torch.manual_seed(0)
    g = tiny_g(image_size, num_classes=num_classes, conv_clamp=256)
    d = tiny_d(image_size, num_classes=num_classes, architecture=architecture, conv_clamp=256)
    z = torch.randn(4, 8)
    y = torch.tensor([0, 1, 2, 0]) if num_classes else None
    x = g(z, y)
    assert x.shape == (4, 3, image_size, image_size)
    scores = d(x, y)
    assert scores.shape == (4,)
    scores.sum().backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name  # every layer, noise strengths and label layers included, is used


def test_28px_starts_from_a_7x7_constant():
    g, d = tiny_g(28, channels=1), tiny_d(28, channels=1)
    assert g.synthesis.resolutions == [7, 14, 28] and g.synthesis.b7.const.shape[1:] == (7, 7)
    assert d.block_resolutions == [28, 14] and d.b7.fc.weight.shape[1] == d.features_dim * 49


def per_sample_modulated_conv(x, weight, styles, demodulate, up=1):
    """The modulated convolution written out one sample at a time: w'_oikk = w_oikk * s_i, then (demodulated)
    w'' = w' / sqrt(sum_ikk w'^2 + 1e-8), then a plain convolution (or conv2d_resample for up=2)."""
    outs = []
    for xi, si in zip(x, styles):
        w = weight * si.view(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        pad = weight.shape[-1] // 2
        outs.append(conv2d_resample(xi[None], w, fir_filter().to(x.dtype), up=up, padding=pad))
    return torch.cat(outs)


@pytest.mark.parametrize("up,k,demodulate", [(1, 3, True), (2, 3, True), (1, 1, False)])
def test_modulated_conv_fused_and_unfused_match_the_formula(up, k, demodulate):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=F64)
    weight = torch.randn(4, 5, k, k, generator=g, dtype=F64)
    styles = torch.rand(3, 5, generator=g, dtype=F64) + 0.5
    expected = per_sample_modulated_conv(x, weight, styles, demodulate, up)
    assert expected.shape == (3, 4, 6 * up, 6 * up)
    f = fir_filter().to(F64)
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, f, up=up, padding=k // 2, demodulate=demodulate, fused=fused)
        torch.testing.assert_close(out, expected)
    if demodulate:  # demodulated: the output scale does not depend on the styles' scale
        out = modulated_conv2d(x, weight, styles * 7.0, f, up=up, padding=1, demodulate=True, fused=True)
        torch.testing.assert_close(out, expected)


def test_training_mode_is_deterministic_for_a_seed_and_eval_mode_needs_no_randomness():
    torch.manual_seed(0)
    g = tiny_g(16, num_classes=3, style_mixing_prob=0.5)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outs.append(g(z, y))
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    g.eval()
    torch.manual_seed(1)
    a = g(z, y)
    torch.manual_seed(2)
    b = g(z, y)
    assert torch.equal(a, b)  # noise_mode const: a sample is a function of z and its label
    assert not torch.allclose(a, g(z, torch.tensor([1, 2, 0, 0])))  # ... and the label matters
    for name, p in g.named_parameters():  # noise strengths start at 0: make the noise visible
        if name.endswith("noise_strength"):
            p.data.fill_(0.5)
    assert not torch.allclose(g(z, y, noise_mode="none"), g(z, y))


def test_truncation_pulls_ws_towards_w_avg_and_psi_0_gives_the_mean_w_image():
    torch.manual_seed(0)
    g = tiny_g(16, num_classes=3).eval()
    g.mapping.w_avg.normal_()
    z, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
    images = g(z, y, truncation_psi=0.0)
    mean_image = g.synthesis(g.mapping.w_avg.expand(1, g.num_ws, -1), noise_mode="const", fused=True)
    for i in range(5):
        torch.testing.assert_close(images[i], mean_image[0])
    ws, w_avg = g.map(z, y), g.mapping.w_avg
    torch.testing.assert_close(g.map(z, y, truncation_psi=0.7), w_avg + 0.7 * (ws - w_avg))
    cut = g.map(z, y, truncation_psi=0.0, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], w_avg.expand(5, 3, -1))
    torch.testing.assert_close(cut[:, 3:], ws[:, 3:])
    assert not torch.allclose(g(z, y), images)


def _rows_equal(ws: torch.Tensor) -> list[bool]:
    """Whether each layer's w equals the first layer's, for every sample."""
    return [bool(torch.equal(ws[:, j], ws[:, 0])) for j in range(ws.shape[1])]


def test_style_mixing_happens_in_training_mode_only():
    torch.manual_seed(0)
    g = tiny_g(16, style_mixing_prob=1.0)
    z = torch.randn(4, 8)
    cutoffs = set()
    for seed in range(6):
        torch.manual_seed(seed)
        _, ws = g.images_and_ws(z)
        rows = _rows_equal(ws)
        k = rows.index(False)  # mixed from a cutoff in [1, num_ws): the first k layers keep z's w
        assert 1 <= k < g.num_ws and rows == [True] * k + [False] * (g.num_ws - k)
        assert _rows_equal(ws[:, k:].flip(1)) == [True] * (g.num_ws - k)  # the rest is one other w
        torch.testing.assert_close(ws[:, 0], g.map(z, update_w_avg=False)[:, 0])
        cutoffs.add(k)
    assert len(cutoffs) > 1
    g.eval()
    assert all(_rows_equal(g.images_and_ws(z)[1]))
    g.train()
    g.style_mixing_prob = 0.0
    assert all(_rows_equal(g.images_and_ws(z)[1]))


def test_w_avg_tracks_w_in_training_mode_only():
    torch.manual_seed(0)
    g = tiny_g(16, style_mixing_prob=0.9)
    z = torch.randn(6, 8)
    g.eval()
    g(z)
    assert torch.equal(g.mapping.w_avg, torch.zeros(8))
    g.train()
    w = g.map(z, update_w_avg=False)[:, 0]
    g(z)  # the style-mixing w's do not enter the average
    torch.testing.assert_close(g.mapping.w_avg, 0.005 * w.mean(0))


def test_bad_configurations_are_one_line_errors():
    with pytest.raises(UserError, match="image_size"):
        tiny_g(24)
    with pytest.raises(UserError, match="norm hook"):
        tiny_g(16, num_classes=3, conditioning=ConditionalBatchNorm())
    with pytest.raises(UserError, match="architecture"):
        tiny_d(16, architecture="skip")
    with pytest.raises(UserError, match="mbstd_group_size"):
        tiny_d(16, mbstd_group_size=4)(torch.randn(6, 3, 16, 16))
    # The generic label methods fit the hooks StyleGAN2 calls.
    g = tiny_g(16, num_classes=3, conditioning=LabelConcat())
    assert g.mapping.fc0.weight.shape[1] == 8 + 3
    assert g(torch.randn(2, 8), torch.tensor([0, 2])).shape == (2, 3, 16, 16)


# ---------------------------------------------------------------------------------------------------- PathLength
class LinearWS(nn.Module):
    """A generator linear in its ws: ``ws = (z M).view(N, L, D)``, ``image_n = sum_l ws_nl A_l``; the gradient
    of ``<image_n, y_n>`` with respect to ``ws_nl`` is ``A_l y_n``, so path lengths have a closed form."""

    def __init__(self, z_dim=3, layers=2, w_dim=4, shape=(1, 3, 3)) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.layers, self.w_dim, self.shape = layers, w_dim, shape
        self.M = nn.Parameter(torch.randn(z_dim, layers * w_dim, generator=g, dtype=F64))
        self.A = nn.Parameter(torch.randn(layers, w_dim, math.prod(shape), generator=g, dtype=F64))

    def images_and_ws(self, z, c=None):
        ws = (z @ self.M).view(-1, self.layers, self.w_dim)
        return torch.einsum("nld,ldp->np", ws, self.A).view(-1, *self.shape), ws


def pl_context(net: nn.Module, z: torch.Tensor, batch: int = 8) -> Context:
    fake = Side(torch.zeros(batch, 1, 3, 3, dtype=F64), None)
    return Context(None, fake, critic=lambda x, c: x.sum(), interpolation_weights=torch.rand, generator=net,
                   sample_z=lambda n: z[:n])


def hand_lengths(A: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``a_n = sqrt(mean_l ||A_l y_n||^2)`` from the closed form (no autograd.grad)."""
    grads = torch.einsum("ldp,np->nld", A, noise.flatten(1))
    return grads.square().sum(2).mean(1).sqrt()


def test_path_length_term_matches_a_hand_computation_and_trains_g_through_it():
    net, z = LinearWS(), torch.randn(4, 3, dtype=F64)
    reg = PathLength(weight=2.0, every=1, batch_shrink=2, decay=0.01)
    reg.pl_mean.fill_(0.3)
    torch.manual_seed(5)
    ctx = pl_context(net, z)
    term = reg.g(ctx)
    torch.manual_seed(5)
    noise = torch.randn(4, 1, 3, 3, dtype=F64) / 3.0  # batch 8 // 2, noise / sqrt(H * W)
    A = net.A.detach().clone().requires_grad_(True)
    lengths = hand_lengths(A, noise)
    m = 0.3 + 0.01 * (lengths.mean() - 0.3)
    expected = 2.0 * (lengths - m).square().mean()
    torch.testing.assert_close(term, expected)
    torch.testing.assert_close(reg.pl_mean, m.detach().to(reg.pl_mean.dtype))
    torch.testing.assert_close(ctx.stats["pl_penalty"], (expected / 2.0).detach())
    # The term's gradient (a double backward through G) equals the closed form's.
    term.backward()
    expected.backward()
    torch.testing.assert_close(net.A.grad, A.grad)
    assert net.M.grad is None or torch.count_nonzero(net.M.grad) == 0  # linear in ws: lengths do not depend on M


def test_path_length_is_lazy_and_weighted_by_its_interval():
    net, z = LinearWS(), torch.randn(4, 3, dtype=F64)
    reg = PathLength(weight=2.0, every=3)
    values = []
    for step in range(7):
        torch.manual_seed(step)
        values.append(reg.g(pl_context(net, z)))
    assert [v is not None for v in values] == [True, False, False, True, False, False, True]
    torch.manual_seed(0)
    plain = PathLength(weight=2.0, every=1).g(pl_context(net, z))
    torch.testing.assert_close(values[0], 3 * plain)


def test_path_length_resumes_exactly_from_state_dict():
    net, z = LinearWS(), torch.randn(4, 3, dtype=F64)
    a = PathLength(every=2)
    for step in range(3):
        torch.manual_seed(step)
        a.g(pl_context(net, z))
    state = a.state_dict()
    assert "pl_mean" in state and float(state["pl_mean"]) > 0
    b = PathLength(every=2)
    b.load_state_dict(state)
    for step in (3, 4):
        torch.manual_seed(step)
        ta = a.g(pl_context(net, z))
        torch.manual_seed(step)
        tb = b.g(pl_context(net, z))
        assert (ta is None) == (tb is None) == (step == 3)
    torch.testing.assert_close(ta, tb)
    assert torch.equal(a.pl_mean, b.pl_mean)


def test_path_length_refuses_a_generator_without_ws():
    with pytest.raises(UserError, match="images_and_ws"):
        PathLength().g(pl_context(nn.Linear(3, 9), torch.randn(4, 3)))


def test_path_length_on_stylegan2_differentiates_the_mixed_ws():
    torch.manual_seed(0)
    g = tiny_g(16, num_classes=3, style_mixing_prob=0.9)
    reg = PathLength(every=1)
    fake = Side(torch.zeros(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2]))
    ctx = Context(None, fake, critic=lambda x, c: x.sum(), interpolation_weights=torch.rand, generator=g,
                  sample_z=lambda n: torch.randn(n, 8))
    term = reg.g(ctx)
    assert term.shape == () and term > 0 and reg.pl_mean > 0
    term.backward()
    assert g.synthesis.b16.conv1.weight.grad.abs().sum() > 0 and g.mapping.fc0.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_gan_trains_stylegan2_with_lazy_r1_and_path_length(make_trainer):
    seed_everything(0)
    g = tiny_g(28, channels=1, num_classes=10, style_mixing_prob=0.9, conv_clamp=256)
    d = tiny_d(28, channels=1, num_classes=10, mbstd_group_size=4)
    r1, pl = R1(gamma=0.1, every=2), PathLength(every=2)
    model = GAN(g, d, loss="non_saturating", regularizers=[r1, pl], ema_decay=0.9,
                g_optimizer=lambda p: torch.optim.Adam(p, lr=2.5e-3, betas=(0.0, 0.99)),
                d_optimizer=lambda p: torch.optim.Adam(p, lr=2.5e-3, betas=(0.0, 0.99)))
    g0 = {k: v.clone() for k, v in g.state_dict().items()}
    d0 = {k: v.clone() for k, v in d.state_dict().items()}
    trainer = make_trainer(5)
    trainer.fit(model, datamodule=EmbeddedMNIST(labels="class", batch_size=8))
    assert trainer.global_step == 5 and r1.steps == 5 and pl.steps == 5
    assert torch.isfinite(pl.pl_mean) and pl.pl_mean > 0
    for name in ("synthesis.b28.conv1.weight", "mapping.fc0.weight", "conditioning.embed.weight"):
        assert not torch.equal(g.state_dict()[name], g0[name]), name
    for name in ("b28.conv0.weight", "b7.out.weight", "conditioning.mapping.fc0.weight"):
        assert not torch.equal(d.state_dict()[name], d0[name]), name
    assert not torch.equal(g.mapping.w_avg, g0["mapping.w_avg"])
    torch.testing.assert_close(model.generator_ema.mapping.w_avg, g.mapping.w_avg)  # buffers follow G
    z, y = torch.randn(10, 8), torch.arange(10)
    a, b = model.generate(z, y), model.generate(z, y)
    assert a.shape == (10, 1, 28, 28) and torch.equal(a, b)
