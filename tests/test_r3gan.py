"""R3GAN (Huang et al. 2024; reference implementation github.com/brownvc/R3GAN): the networks match the reference's
layer for layer and value for value, the pieces behave as their formulas say, and the relativistic loss with R1 and
R2 trains them through the real ``GAN`` loop.

The reference values below were obtained by instantiating the reference's own classes (``R3GAN/Networks.py`` via
``training/networks.py``, at its latest commit) on CPU, where its resamplers and biased activations fall back to
their pure-PyTorch paths, and printing parameter names, shapes and counts, and outputs for fixed weights and inputs.
"""

from __future__ import annotations

import math
import re
import zlib
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.conditioning import (AuxiliaryClassifier, ConditionalBatchNorm, LabelConcat, Projection,
                                        SpatialCondition)
from gan_lightning.data import GANDataModule, InMemory
from gan_lightning.errors import UserError
from gan_lightning.nets.r3gan import (LRELU_GAIN, ClassEmbedding, ClassProjection, Downsample, GroupedConv2d,
                                      R3GANDiscriminator, R3GANGenerator, ResidualBlock, Upsample)
from gan_lightning.objectives.losses import get_loss
from gan_lightning.objectives.regularizers import R1, R2, Context, Side
from gan_lightning.training.system import GAN

# --------------------------------------------------------------------------------------------------- reference
# train.py --preset=CIFAR10 --cond=1 (c_dim 10): G(NoiseDimension=64, WidthPerStage=[768]*4, CardinalityPerStage=
# [96]*4, BlocksPerStage=[2]*4, ExpansionFactor=2, ConditionEmbeddingDimension=64), D with the lists reversed and
# ConditionEmbeddingDimension=768. Counts: sum of p.numel() over named_parameters(); with --cond=0 (c_dim 0) too.
REFERENCE_COUNTS = {"G_cond": 20_781_952, "D_cond": 21_280_512, "G_uncond": 20_732_160, "D_uncond": 20_683_776}
_BLOCK = """{p}.LinearLayer1.Layer.weight 1536,768,1,1
{p}.LinearLayer2.Layer.weight 1536,16,3,3
{p}.LinearLayer3.Layer.weight 768,1536,1,1
{p}.NonLinearity1.Bias 1536
{p}.NonLinearity2.Bias 1536
"""
# named_parameters() of the reference's conditional CIFAR10 networks (their ``Model.`` prefix dropped), in order.
# Every residual block has the same five parameters; they are written out once, as _BLOCK, per block position.
REFERENCE_G = (
    "MainLayers.0.Layers.0.Basis 768,4,4\nMainLayers.0.Layers.0.LinearLayer.weight 768,128\n"
    + "".join(_BLOCK.format(p=f"MainLayers.{s}.Layers.{b}") for s in range(4) for b in (1, 2))
    + "AggregationLayer.Layer.weight 3,768,1,1\nEmbeddingLayer.weight 64,10\n"
)
REFERENCE_D = (
    "ExtractionLayer.Layer.weight 768,3,1,1\n"
    + "".join(_BLOCK.format(p=f"MainLayers.{s}.Layers.{b}") for s in range(4) for b in (0, 1))
    + "MainLayers.3.Layers.2.Basis.weight 768,1,4,4\nMainLayers.3.Layers.2.LinearLayer.weight 768,768\n"
    + "EmbeddingLayer.weight 768,10\n"
)

# Our parameter names -> the reference's (the two differ only in naming).
_LEAVES = [(r"expand\.weight$", "LinearLayer1.Layer.weight"), (r"grouped\.weight$", "LinearLayer2.Layer.weight"),
           (r"project\.weight$", "LinearLayer3.Layer.weight"), (r"act1\.bias$", "NonLinearity1.Bias"),
           (r"act2\.bias$", "NonLinearity2.Bias"), (r"\.basis$", ".Basis"), (r"basis\.weight$", "Basis.weight"),
           (r"linear\.weight$", "LinearLayer.weight"), (r"conv\.weight$", "LinearLayer.Layer.weight")]
_WHOLE = {"to_image.weight": "AggregationLayer.Layer.weight", "from_image.weight": "ExtractionLayer.Layer.weight",
          "conditioning.weight": "EmbeddingLayer.weight"}


def reference_name(name: str) -> str:
    if name in _WHOLE:
        return _WHOLE[name]
    name = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"MainLayers.\1.Layers.\2.", name)
    for pattern, replacement in _LEAVES:
        if re.search(pattern, name):
            return re.sub(pattern, replacement, name)
    raise AssertionError(f"no reference name for {name}")


def parse(listing: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = [line.split() for line in listing.strip().splitlines()]
    return [(name, tuple(int(v) for v in shape.split(","))) for name, shape in rows]


def ours(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(reference_name(n), tuple(p.shape)) for n, p in net.named_parameters()]


def cifar10(conditional: bool) -> tuple[R3GANGenerator, R3GANDiscriminator]:
    """Our networks at the reference's CIFAR10 preset (the classes' defaults), on the meta device (shapes only)."""
    with torch.device("meta"):
        if conditional:
            return (R3GANGenerator(num_classes=10, conditioning=ClassEmbedding(64)),
                    R3GANDiscriminator(num_classes=10, conditioning=ClassProjection()))
        return R3GANGenerator(), R3GANDiscriminator()


def test_cifar10_preset_has_the_reference_parameters_layer_for_layer():
    g, d = cifar10(conditional=True)
    assert sorted(ours(g)) == sorted(parse(REFERENCE_G))
    assert sorted(ours(d)) == sorted(parse(REFERENCE_D))
    assert len(parse(REFERENCE_G)) == len(parse(REFERENCE_D)) == 44
    assert sum(p.numel() for p in g.parameters()) == REFERENCE_COUNTS["G_cond"]
    assert sum(p.numel() for p in d.parameters()) == REFERENCE_COUNTS["D_cond"]


def test_unconditional_cifar10_preset_has_the_reference_counts():
    g, d = cifar10(conditional=False)
    assert sum(p.numel() for p in g.parameters()) == REFERENCE_COUNTS["G_uncond"]
    assert sum(p.numel() for p in d.parameters()) == REFERENCE_COUNTS["D_uncond"]
    # No embedding in G; D's last linear layer gives the score itself.
    assert dict(ours(d))["MainLayers.3.Layers.2.LinearLayer.weight"] == (1, 768)
    assert "EmbeddingLayer.weight" not in dict(ours(g)) | dict(ours(d))


# Outputs of the reference networks with G(NoiseDimension=16, WidthPerStage=[32, 24, 16, 16], CardinalityPerStage=
# [4, 4, 2, 2], BlocksPerStage=[1, 2, 1, 1], ExpansionFactor=2) and D with the lists reversed, 5 classes (embeddings
# of 8 in G and 12 in D) or none, every parameter set to 0.2 * randn(shape) from a torch.Generator seeded with
# zlib.crc32(<reference parameter name>); z = randn(3, 16) seeded 1, labels [0, 4, 1] (one-hot), D's input
# randn(3, 3, 32, 32) seeded 2. G's output is summarised by its sum, absolute sum and sum of squares (in float64)
# and the pixels [:, :, 5, 9]; D's by its three scores.
SMALL = dict(widths=[32, 24, 16, 16], cardinalities=[4, 4, 2, 2], blocks=[1, 2, 1, 1])
REFERENCE_OUTPUTS = {
    True: dict(g_sums=(12274.885, 13176.0818, 32156.0494),
               g_pixels=[1.5486654, 2.71109891, 0.598917007, 2.97290325, 4.17707396, 0.432394981, 2.43377304,
                         3.28822064, 0.293292761],
               d=[-0.55533582, -0.902622521, -0.860351205]),
    False: dict(g_sums=(13743.9044, 14553.597, 39673.4003),
                g_pixels=[3.3838973, 4.02767038, 0.0369150415, 4.71250343, 3.16621375, 0.0574932024, 3.83164549,
                          3.51358056, 0.761721134],
                d=[-3.23206425, -2.89271998, -3.06456304]),
}


def _fill_like_reference(net: nn.Module) -> None:
    with torch.no_grad():
        for name, p in net.named_parameters():
            seed = zlib.crc32(reference_name(name).encode())
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.2)


@pytest.mark.parametrize("conditional", [True, False])
def test_outputs_equal_the_reference_networks_for_the_same_weights(conditional):
    """Same weights, same inputs, same outputs: the resampling, the bases, the blocks, the activations' biases and
    the class embedding and projection compute what the reference's do."""
    k = 5 if conditional else 0
    g = R3GANGenerator(16, 3, 32, SMALL["widths"], SMALL["cardinalities"], SMALL["blocks"], num_classes=k,
                       conditioning=ClassEmbedding(8) if conditional else None)
    d = R3GANDiscriminator(3, 32, SMALL["widths"][::-1], SMALL["cardinalities"][::-1], SMALL["blocks"][::-1],
                           embedding_dim=12, num_classes=k, conditioning=ClassProjection() if conditional else None)
    _fill_like_reference(g)
    _fill_like_reference(d)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 4, 1]) if conditional else None
    with torch.no_grad():
        img, scores = g(z, y).double(), d(x, y).double()
    expected = REFERENCE_OUTPUTS[conditional]
    sums = (img.sum().item(), img.abs().sum().item(), img.pow(2).sum().item())
    assert sums == pytest.approx(expected["g_sums"], rel=2e-5)
    assert img[:, :, 5, 9].flatten().tolist() == pytest.approx(expected["g_pixels"], rel=2e-5, abs=1e-6)
    assert scores.tolist() == pytest.approx(expected["d"], rel=2e-5, abs=1e-6)


# --------------------------------------------------------------------------------------------------- pieces
def test_initialisation_is_fixup_style():
    """Every block's last layer is zero (the block starts as the identity); the other two are N(0, gain^2/fan_in)
    with gain = sqrt(2 / 1.04) * L^(-1/4), L the network's number of blocks."""
    torch.manual_seed(0)
    g = R3GANGenerator(16, 3, 32, [256, 256, 256, 256], [8, 8, 8, 8], [2, 1, 1, 1])
    blocks = [m for m in g.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 5
    gain = LRELU_GAIN * 5 ** -0.25
    for block in blocks:
        assert torch.count_nonzero(block.project.weight) == 0
        assert block.expand.weight.std().item() == pytest.approx(gain / math.sqrt(256), rel=0.02)
        assert block.grouped.weight.std().item() == pytest.approx(gain / math.sqrt(64 * 9), rel=0.02)
        assert torch.count_nonzero(block.act1.bias) == torch.count_nonzero(block.act2.bias) == 0
        h = torch.randn(2, 256, 4, 4)
        assert torch.equal(block(h), h)


@pytest.mark.parametrize("taps", [[1, 2, 1], [1], [1, 3, 3, 3, 1]])
@pytest.mark.parametrize("size", [7, 8])
def test_resampling_is_the_lowpass_filter_of_the_reference(taps, size):
    """Up: a stride-2 transposed convolution with 4 * the normalised outer product of taps * [1, 1]; down: a
    stride-2 convolution with that kernel; padding len(taps) // 2; every channel alike."""
    row = torch.tensor([float(v) for v in taps])
    row = F.conv1d(F.pad(row.view(1, 1, -1), (1, 1)), torch.ones(1, 1, 2)).flatten()  # taps convolved with [1, 1]
    kernel = torch.outer(row, row) / torch.outer(row, row).sum()
    x = torch.randn(2, 3, size, size)
    flat = x.reshape(6, 1, size, size)
    pad = len(taps) // 2
    up = F.conv_transpose2d(flat, 4 * kernel[None, None], stride=2, padding=pad).view(2, 3, 2 * size, 2 * size)
    assert torch.allclose(Upsample(3, 3, taps)(x), up, atol=1e-6)
    if size % 2 == 0:
        down = F.conv2d(flat, kernel[None, None], stride=2, padding=pad).view(2, 3, size // 2, size // 2)
        assert torch.allclose(Downsample(3, 3, taps)(x), down, atol=1e-6)


def test_grouped_convolution_has_the_native_first_and_second_derivatives():
    torch.manual_seed(0)
    conv = GroupedConv2d(4, 6, 3, padding=1, groups=2, bias=False).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,)) and torch.autograd.gradgradcheck(conv, (x,))
    w = conv.weight.detach().clone().requires_grad_(True)

    def penalty(forward):  # R1-style: the squared input gradient, to be differentiated again
        (grad,) = torch.autograd.grad(forward(x).pow(3).sum(), x, create_graph=True)
        return grad.pow(2).sum()

    ours_w, ours_x = torch.autograd.grad(penalty(conv), (conv.weight, x))
    ref_w, ref_x = torch.autograd.grad(penalty(lambda a: F.conv2d(a, w, padding=1, groups=2)), (w, x))
    assert torch.allclose(ours_w, ref_w, rtol=1e-10) and torch.allclose(ours_x, ref_x, rtol=1e-10)
    assert torch.count_nonzero(ours_w) > 0


def test_r1_through_the_discriminator_equals_native_convolutions(monkeypatch):
    """The penalty's gradient w.r.t. every parameter of D is the one plain ``nn.Conv2d`` layers give."""
    torch.manual_seed(0)
    d = R3GANDiscriminator(1, 16, [8, 8, 8], [2, 2, 2], [1, 1, 1], num_classes=3, conditioning=ClassProjection())
    with torch.no_grad():
        for block in (m for m in d.modules() if isinstance(m, ResidualBlock)):
            block.project.weight.normal_(0, 0.3)  # past initialisation, so every layer is on the gradient's path
    x, y = torch.randn(4, 1, 16, 16, requires_grad=True), torch.tensor([0, 1, 2, 1])

    def grads() -> list[torch.Tensor]:
        (g,) = torch.autograd.grad(d(x, y).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), list(d.parameters()))

    ours_grads = grads()
    monkeypatch.setattr(GroupedConv2d, "forward", nn.Conv2d.forward)
    native_grads = grads()
    for a, b in zip(ours_grads, native_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    # Every weight is on the penalty's path (the activations' biases are not: LeakyReLU's slope is piecewise
    # constant, so the input gradient does not change with them).
    for (name, _), a in zip(d.named_parameters(), ours_grads):
        assert (torch.count_nonzero(a) > 0) == name.endswith("weight"), name


# --------------------------------------------------------------------------------------------------- networks
def tiny(conditional: bool = True, size: int = 16, channels: int = 1, seed: int = 0, k: int = 3):
    torch.manual_seed(seed)
    n, k = (3 if size in (16, 28) else 4), (k if conditional else 0)
    g = R3GANGenerator(8, channels, size, [16] * n, [4] * n, [1] * n, num_classes=k,
                       conditioning=ClassEmbedding(4) if conditional else None)
    d = R3GANDiscriminator(channels, size, [16] * n, [4] * n, [1] * n, num_classes=k,
                           conditioning=ClassProjection() if conditional else None)
    return g, d


@pytest.mark.parametrize("size, channels", [(28, 1), (16, 1), (32, 3)])
def test_forward_shapes(size, channels):
    g, d = tiny(size=size, channels=channels)
    z, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
    img = g(z, y)
    assert img.shape == (5, channels, size, size) and g.out_shape == (channels, size, size)
    assert d(img, y).shape == (5,)
    g_u, d_u = tiny(conditional=False, size=size, channels=channels)
    assert d_u(g_u(z)).shape == (5,)


def test_28px_starts_from_a_7x7_basis():
    g, d = tiny(size=28)
    assert g.stages[0][0].basis.shape == (16, 7, 7)
    assert d.stages[-1][-1].basis.weight.shape == (16, 1, 7, 7)


def test_backward_reaches_every_parameter():
    g, d = tiny()
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    # At initialisation the zeroed last layers block the gradient to the rest of each block: fix-up's point.
    d(g(z, y), y).sum().backward()
    first = [m for m in g.modules() if isinstance(m, ResidualBlock)][0]
    assert torch.count_nonzero(first.project.weight.grad) > 0 and torch.count_nonzero(first.expand.weight.grad) == 0
    for net in (g, d):
        with torch.no_grad():
            for block in (m for m in net.modules() if isinstance(m, ResidualBlock)):
                block.project.weight.normal_(0, 0.1)
        net.zero_grad()
    d(g(z, y), y).sum().backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and torch.count_nonzero(p.grad) > 0, name


def test_same_seed_same_networks_and_outputs():
    (g1, d1), (g2, d2), (g3, _) = tiny(seed=3), tiny(seed=3), tiny(seed=4)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    assert torch.equal(g1(z, y), g2(z, y)) and torch.equal(d1(g1(z, y), y), d2(g2(z, y), y))
    assert not torch.equal(g1(z, y), g3(z, y))


def test_conditional_networks_use_the_label_and_unconditional_ones_take_none():
    g, d = tiny()
    with torch.no_grad():
        for block in (m for m in g.modules() if isinstance(m, ResidualBlock)):
            block.project.weight.normal_(0, 0.1)
    z = torch.randn(1, 8).expand(3, 8)
    img = g(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(img[0], img[1]) and not torch.allclose(img[1], img[2])
    assert torch.allclose(g(z[:1], torch.tensor([1])), img[1:2], atol=1e-6)  # per sample, whatever the batch
    x = img[:1].detach().expand(3, -1, -1, -1)
    scores = d(x, torch.tensor([0, 1, 2]))
    assert len(set(scores.tolist())) == 3
    # The reference's D: the projection is the whole score, <W onehot(y), features>, no unconditional term.
    features = d.features(x)
    assert scores.tolist() == pytest.approx((features * d.conditioning.weight.t()[[0, 1, 2]]).sum(1).tolist(), rel=1e-5)
    assert features.shape == (3, 16) and not hasattr(d, "head")
    g_u, d_u = tiny(conditional=False)
    assert g_u.conditioning.kind == "none" and d_u.features_dim is None
    assert d_u.features(x).shape == (3, 1)  # the basis's output is the score


def test_other_conditioning_methods_plug_in():
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    g = R3GANGenerator(8, 1, 16, [16] * 3, [4] * 3, [1] * 3, num_classes=3, conditioning=LabelConcat())
    img = g(z, y)
    concat = R3GANDiscriminator(1, 16, [16] * 3, [4] * 3, [1] * 3, num_classes=3, conditioning=LabelConcat())
    assert concat.from_image.weight.shape == (16, 1 + 3, 1, 1) and concat(img, y).shape == (2,)
    projection = R3GANDiscriminator(1, 16, [16] * 3, [4] * 3, [1] * 3, embedding_dim=10, num_classes=3,
                                    conditioning=Projection(norm="none"))
    assert projection.head.in_features == 10 and projection(img, y).shape == (2,)
    ac = R3GANDiscriminator(1, 16, [16] * 3, [4] * 3, [1] * 3, num_classes=3, conditioning=AuxiliaryClassifier())
    scores, logits = ac(img, y)
    assert scores.shape == (2,) and logits.shape == (2, 3)
    # A spatial condition joins G's basis output (mixed back by a 1x1 convolution) and D's input.
    sketch = SpatialCondition(size=4)
    g_s = R3GANGenerator(8, 1, 16, [16] * 3, [4] * 3, [1] * 3, conditioning=sketch)
    d_s = R3GANDiscriminator(1, 16, [16] * 3, [4] * 3, [1] * 3, conditioning=SpatialCondition(size=4))
    c = sketch.from_images(torch.rand(2, 1, 16, 16) * 2 - 1)
    with torch.no_grad():
        for block in (m for m in g_s.modules() if isinstance(m, ResidualBlock)):
            block.project.weight.normal_(0, 0.1)
    fakes = g_s(z, c)
    assert g_s.merge.weight.shape == (16, 17, 1, 1) and fakes.shape == (2, 1, 16, 16)
    assert not torch.allclose(g_s(z, -c), fakes)
    assert d_s.from_image.weight.shape == (16, 2, 1, 1) and d_s(fakes, c).shape == (2,)


@pytest.mark.parametrize("make, match", [
    (lambda: R3GANGenerator(8, 1, 16, [16] * 3, [4] * 3, [1] * 3, num_classes=3, conditioning=ConditionalBatchNorm()),
     "no.*normalization|has none"),
    (lambda: R3GANGenerator(8, 1, 30, [16] * 3, [4] * 3, [1] * 3), "image_size"),
    (lambda: R3GANGenerator(8, 1, 16, [16] * 3, [5] * 3, [1] * 3), "cardinalities"),
    (lambda: R3GANDiscriminator(1, 16, [16] * 3, [4] * 2, [1] * 3), "one entry per stage"),
    (lambda: R3GANDiscriminator(1, 16, [16] * 3, [4] * 3, [1] * 3, resampling_filter=[1, 1]), "odd number"),
    (lambda: R3GANDiscriminator(1, 16, [16] * 3, [4] * 3, [1] * 3, kernel_size=2), "kernel_size"),
    (lambda: ClassEmbedding(0), "embedding_dim"),
])
def test_configuration_mistakes_are_one_line_user_errors(make, match):
    with pytest.raises(UserError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------------- objective
def test_rpgan_loss_on_the_networks_scores_matches_the_formula():
    """RpGAN (Huang et al. 2024, eq. 2): L_D = E softplus(D(fake_i) - D(real_i)), L_G = E softplus(D(real_i) -
    D(fake_i)); D's loss with R1 and R2 is E[softplus(D(fake) - D(real))] + gamma/2 (E|grad D(real)|^2 +
    E|grad D(fake)|^2), the reference's per-sample form averaged."""
    g, d = tiny()
    with torch.no_grad():
        for block in (m for m in d.modules() if isinstance(m, ResidualBlock)):
            block.project.weight.normal_(0, 0.3)
    y = torch.tensor([0, 1, 2, 1])
    real = torch.randn(4, 1, 16, 16, requires_grad=True)
    fake = g(torch.randn(4, 8), y).detach().requires_grad_(True)
    sr, sf = d(real, y), d(fake, y)
    loss = get_loss("relativistic")
    r, f = sr.tolist(), sf.tolist()
    by_hand_d = sum(math.log1p(math.exp(b - a)) for a, b in zip(r, f)) / 4
    by_hand_g = sum(math.log1p(math.exp(a - b)) for a, b in zip(r, f)) / 4
    assert loss.d(sr, sf).item() == pytest.approx(by_hand_d, rel=1e-6)
    assert loss.g(sf, sr).item() == pytest.approx(by_hand_g, rel=1e-6)

    gamma = 0.05
    ctx = Context(Side(real, y, sr), Side(fake, y, sf), critic=lambda x, c: d(x, c), interpolation_weights=torch.rand)
    total = loss.d(sr, sf) + R1(gamma).d_real(ctx) + R2(gamma).d_fake(ctx)
    per_sample = []
    for i in range(4):
        (gr,) = torch.autograd.grad(d(real[i:i + 1], y[i:i + 1]).sum(), real, retain_graph=True)
        (gf,) = torch.autograd.grad(d(fake[i:i + 1], y[i:i + 1]).sum(), fake)
        per_sample.append(math.log1p(math.exp(f[i] - r[i])) + gamma / 2 * (gr.pow(2).sum() + gf.pow(2).sum()).item())
    assert total.item() == pytest.approx(sum(per_sample) / 4, rel=1e-5)


class TinyLabelledImages(GANDataModule):
    """48 random 16x16 grey images in 3 classes, held in memory."""

    data_shape = (1, 16, 16)
    num_classes = 3

    def setup(self, stage: str | None = None) -> None:
        images = torch.randint(0, 256, (48, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        self.train_set = InMemory(images, torch.arange(48) % 3)


def test_a_few_training_steps_with_rpgan_r1_and_r2(make_trainer):
    g, d = tiny()
    adam = partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.99))
    model = GAN(g, d, loss="relativistic", regularizers=[R1(gamma=0.05), R2(gamma=0.05)], ema_decay=0.9,
                g_optimizer=adam, d_optimizer=adam)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = make_trainer(3, log_every_n_steps=1)
    trainer.fit(model, datamodule=TinyLabelledImages(batch_size=8))
    assert trainer.global_step == 3
    logs = trainer.callback_metrics
    for key in ("train/d_loss", "train/g_loss", "train/r1", "train/r2"):
        assert math.isfinite(logs[key].item()), key
    assert logs["train/r1"].item() > 0 and logs["train/r2"].item() > 0
    moved = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    # Every parameter of G and D moved, the fix-up-zeroed layers and the class embeddings included.
    for prefix in ("generator.", "discriminator."):
        names = {n for n in before if n.startswith(prefix)}
        assert names and names <= moved, sorted(names - moved)
    assert {"generator.conditioning.weight", "discriminator.conditioning.weight"} <= moved
    samples = model.generate(torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert samples.shape == (6, 1, 16, 16) and torch.isfinite(samples).all()
