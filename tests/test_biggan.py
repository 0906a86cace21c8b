"""BigGAN (``gan_lightning.nets.biggan``): layer for layer the reference implementation's networks, BigGAN's
conditional batch norm, and real training steps through ``GAN``.

Reference facts. Source: BigGAN-PyTorch (github.com/ajbrock/BigGAN-PyTorch, commit 98459431a5d6), the authors'
implementation. Its ``BigGAN.Generator`` and ``BigGAN.Discriminator`` were built on CPU from the options of
``scripts/launch_cifar_ema.sh`` as its ``utils.prepare_parser()`` parses them (every other option at its default;
``resolution`` and ``n_classes`` from its tables: 32 px and 10 classes for C10), with the options named below added
for the other configurations; the counts are ``sum(p.numel() for p in net.parameters())`` and the shapes are its
``named_parameters()``. Its spectral norm keeps the power-iteration vectors in buffers, as torch's does, so neither
count includes them.

- ``CIFAR``: launch_cifar_ema.sh as it is (G_ch = D_ch = 64, no shared embedding, no hierarchical z, no attention,
  N02 init): G 4,304,387, D 4,207,361.
- ``SMALL64``: plus ``--dataset I64 --G_ch 16 --D_ch 16 --G_shared --shared_dim 32 --hier --dim_z 100 --G_attn 32
  --D_attn 16 --G_init ortho --D_init ortho`` and 10 classes: G 2,085,764, D 1,226,930.
- ``THIN32``: plus ``--D_thin --G_ch 32 --D_ch 32 --G_attn 16 --D_attn 0 --G_init xavier --D_init xavier``:
  G 1,238,788, D 907,605.
- ``I128``: ``scripts/launch_BigGAN_bs256x8.sh`` (BigGAN at 128 px on ImageNet: ch 96, shared_dim 128, hier,
  dim_z 120, attention at 64, 1000 classes): G 70,433,988, D 87,982,370.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gan_lightning.conditioning import ConditionalBatchNorm, LabelConcat, PlainNorm, Projection
from gan_lightning.data import EmbeddedMNIST
from gan_lightning.errors import UserError
from gan_lightning.nets import ResNetGenerator
from gan_lightning.nets.biggan import (BigGANConditionalBatchNorm, BigGANDiscriminator, BigGANGenerator, BigGANNorm,
                                       SelfAttention)
from gan_lightning.training.system import GAN

K = 10  # classes
# The reference facts (see above): every parameter's name and shape, in the reference's order.
CIFAR_G_SHAPES = """
linear.weight 4096x128
linear.bias 4096
blocks.0.0.conv1.weight 256x256x3x3
blocks.0.0.conv1.bias 256
blocks.0.0.conv2.weight 256x256x3x3
blocks.0.0.conv2.bias 256
blocks.0.0.conv_sc.weight 256x256x1x1
blocks.0.0.conv_sc.bias 256
blocks.0.0.bn1.gain.weight 10x256
blocks.0.0.bn1.bias.weight 10x256
blocks.0.0.bn2.gain.weight 10x256
blocks.0.0.bn2.bias.weight 10x256
blocks.1.0.conv1.weight 256x256x3x3
blocks.1.0.conv1.bias 256
blocks.1.0.conv2.weight 256x256x3x3
blocks.1.0.conv2.bias 256
blocks.1.0.conv_sc.weight 256x256x1x1
blocks.1.0.conv_sc.bias 256
blocks.1.0.bn1.gain.weight 10x256
blocks.1.0.bn1.bias.weight 10x256
blocks.1.0.bn2.gain.weight 10x256
blocks.1.0.bn2.bias.weight 10x256
blocks.2.0.conv1.weight 256x256x3x3
blocks.2.0.conv1.bias 256
blocks.2.0.conv2.weight 256x256x3x3
blocks.2.0.conv2.bias 256
blocks.2.0.conv_sc.weight 256x256x1x1
blocks.2.0.conv_sc.bias 256
blocks.2.0.bn1.gain.weight 10x256
blocks.2.0.bn1.bias.weight 10x256
blocks.2.0.bn2.gain.weight 10x256
blocks.2.0.bn2.bias.weight 10x256
output_layer.0.gain 256
output_layer.0.bias 256
output_layer.2.weight 3x256x3x3
output_layer.2.bias 3
"""

CIFAR_D_SHAPES = """
blocks.0.0.conv1.weight 256x3x3x3
blocks.0.0.conv1.bias 256
blocks.0.0.conv2.weight 256x256x3x3
blocks.0.0.conv2.bias 256
blocks.0.0.conv_sc.weight 256x3x1x1
blocks.0.0.conv_sc.bias 256
blocks.1.0.conv1.weight 256x256x3x3
blocks.1.0.conv1.bias 256
blocks.1.0.conv2.weight 256x256x3x3
blocks.1.0.conv2.bias 256
blocks.1.0.conv_sc.weight 256x256x1x1
blocks.1.0.conv_sc.bias 256
blocks.2.0.conv1.weight 256x256x3x3
blocks.2.0.conv1.bias 256
blocks.2.0.conv2.weight 256x256x3x3
blocks.2.0.conv2.bias 256
blocks.3.0.conv1.weight 256x256x3x3
blocks.3.0.conv1.bias 256
blocks.3.0.conv2.weight 256x256x3x3
blocks.3.0.conv2.bias 256
linear.weight 1x256
linear.bias 1
embed.weight 10x256
"""

SMALL64_G_SHAPES = """
shared.weight 10x32
linear.weight 4096x20
linear.bias 4096
blocks.0.0.conv1.weight 256x256x3x3
blocks.0.0.conv1.bias 256
blocks.0.0.conv2.weight 256x256x3x3
blocks.0.0.conv2.bias 256
blocks.0.0.conv_sc.weight 256x256x1x1
blocks.0.0.conv_sc.bias 256
blocks.0.0.bn1.gain.weight 256x52
blocks.0.0.bn1.bias.weight 256x52
blocks.0.0.bn2.gain.weight 256x52
blocks.0.0.bn2.bias.weight 256x52
blocks.1.0.conv1.weight 128x256x3x3
blocks.1.0.conv1.bias 128
blocks.1.0.conv2.weight 128x128x3x3
blocks.1.0.conv2.bias 128
blocks.1.0.conv_sc.weight 128x256x1x1
blocks.1.0.conv_sc.bias 128
blocks.1.0.bn1.gain.weight 256x52
blocks.1.0.bn1.bias.weight 256x52
blocks.1.0.bn2.gain.weight 128x52
blocks.1.0.bn2.bias.weight 128x52
blocks.2.0.conv1.weight 64x128x3x3
blocks.2.0.conv1.bias 64
blocks.2.0.conv2.weight 64x64x3x3
blocks.2.0.conv2.bias 64
blocks.2.0.conv_sc.weight 64x128x1x1
blocks.2.0.conv_sc.bias 64
blocks.2.0.bn1.gain.weight 128x52
blocks.2.0.bn1.bias.weight 128x52
blocks.2.0.bn2.gain.weight 64x52
blocks.2.0.bn2.bias.weight 64x52
blocks.2.1.gamma ()
blocks.2.1.theta.weight 8x64x1x1
blocks.2.1.phi.weight 8x64x1x1
blocks.2.1.g.weight 32x64x1x1
blocks.2.1.o.weight 64x32x1x1
blocks.3.0.conv1.weight 32x64x3x3
blocks.3.0.conv1.bias 32
blocks.3.0.conv2.weight 32x32x3x3
blocks.3.0.conv2.bias 32
blocks.3.0.conv_sc.weight 32x64x1x1
blocks.3.0.conv_sc.bias 32
blocks.3.0.bn1.gain.weight 64x52
blocks.3.0.bn1.bias.weight 64x52
blocks.3.0.bn2.gain.weight 32x52
blocks.3.0.bn2.bias.weight 32x52
output_layer.0.gain 32
output_layer.0.bias 32
output_layer.2.weight 3x32x3x3
output_layer.2.bias 3
"""

SMALL64_D_SHAPES = """
blocks.0.0.conv1.weight 16x3x3x3
blocks.0.0.conv1.bias 16
blocks.0.0.conv2.weight 16x16x3x3
blocks.0.0.conv2.bias 16
blocks.0.0.conv_sc.weight 16x3x1x1
blocks.0.0.conv_sc.bias 16
blocks.1.0.conv1.weight 32x16x3x3
blocks.1.0.conv1.bias 32
blocks.1.0.conv2.weight 32x32x3x3
blocks.1.0.conv2.bias 32
blocks.1.0.conv_sc.weight 32x16x1x1
blocks.1.0.conv_sc.bias 32
blocks.1.1.gamma ()
blocks.1.1.theta.weight 4x32x1x1
blocks.1.1.phi.weight 4x32x1x1
blocks.1.1.g.weight 16x32x1x1
blocks.1.1.o.weight 32x16x1x1
blocks.2.0.conv1.weight 64x32x3x3
blocks.2.0.conv1.bias 64
blocks.2.0.conv2.weight 64x64x3x3
blocks.2.0.conv2.bias 64
blocks.2.0.conv_sc.weight 64x32x1x1
blocks.2.0.conv_sc.bias 64
blocks.3.0.conv1.weight 128x64x3x3
blocks.3.0.conv1.bias 128
blocks.3.0.conv2.weight 128x128x3x3
blocks.3.0.conv2.bias 128
blocks.3.0.conv_sc.weight 128x64x1x1
blocks.3.0.conv_sc.bias 128
blocks.4.0.conv1.weight 256x128x3x3
blocks.4.0.conv1.bias 256
blocks.4.0.conv2.weight 256x256x3x3
blocks.4.0.conv2.bias 256
blocks.4.0.conv_sc.weight 256x128x1x1
blocks.4.0.conv_sc.bias 256
linear.weight 1x256
linear.bias 1
embed.weight 10x256
"""


def parse(facts: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in facts.strip().splitlines():
        name, shape = line.split()
        out[name] = () if shape == "()" else tuple(int(s) for s in shape.split("x"))
    return out


def reference_name(name: str) -> str:
    """Our parameter name as the reference names the same tensor."""
    name = name.replace(".parametrizations.weight.original", ".weight")  # torch's spectral norm
    name = re.sub(r"^conditioning\.(shared|embed)\.", r"\1.", name)      # the class embeddings
    name = re.sub(r"^head\.", "linear.", name)                           # D's score layer
    name = re.sub(r"^blocks\.(\d+)\.attention\.", r"blocks.\1.1.", name)  # attention: the 2nd module of a stage
    name = re.sub(r"^blocks\.(\d+)\.(?!1\.)", r"blocks.\1.0.", name)      # the residual block: the 1st
    name = {"out_norm.bn.weight": "output_layer.0.gain", "out_norm.bn.bias": "output_layer.0.bias"}.get(name, name)
    return re.sub(r"^to_image\.", "output_layer.2.", name)


def shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {reference_name(n): tuple(p.shape) for n, p in net.named_parameters()}


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def cifar_g(**kw) -> BigGANGenerator:
    return BigGANGenerator(128, 3, 32, 64, init="N02", num_classes=K, conditioning=BigGANConditionalBatchNorm(), **kw)


def cifar_d(**kw) -> BigGANDiscriminator:
    return BigGANDiscriminator(3, 32, 64, init="N02", num_classes=K, conditioning=Projection(), **kw)


def small64_g() -> BigGANGenerator:
    return BigGANGenerator(100, 3, 64, 16, attention=[32], hier=True, num_classes=K,
                           conditioning=BigGANConditionalBatchNorm(shared_dim=32))


def small64_d() -> BigGANDiscriminator:
    return BigGANDiscriminator(3, 64, 16, attention=[16], num_classes=K, conditioning=Projection())


# ----------------------------------------------------------------------------- the reference's layers


@pytest.mark.parametrize("make_g, make_d, g_facts, d_facts, g_count, d_count", [
    (cifar_g, cifar_d, CIFAR_G_SHAPES, CIFAR_D_SHAPES, 4_304_387, 4_207_361),
    (small64_g, small64_d, SMALL64_G_SHAPES, SMALL64_D_SHAPES, 2_085_764, 1_226_930),
], ids=["cifar", "small64_shared_hier_attention"])
def test_parameters_are_the_references_layer_for_layer(make_g, make_d, g_facts, d_facts, g_count, d_count):
    torch.manual_seed(0)
    g, d = make_g(), make_d()
    assert shapes(g) == parse(g_facts)
    assert shapes(d) == parse(d_facts)
    assert count(g) == g_count == sum(torch.Size(s).numel() for s in parse(g_facts).values())
    assert count(d) == d_count == sum(torch.Size(s).numel() for s in parse(d_facts).values())


def test_thin_discriminator_and_generator_attention_at_32px_have_the_references_counts():
    torch.manual_seed(0)
    g = BigGANGenerator(128, 3, 32, 32, attention=[16], init="xavier", num_classes=K,
                        conditioning=BigGANConditionalBatchNorm())
    d = BigGANDiscriminator(3, 32, 32, wide=False, init="xavier", num_classes=K, conditioning=Projection())
    assert (count(g), count(d)) == (1_238_788, 907_605)
    assert isinstance(g.blocks[1].attention, SelfAttention) and g.blocks[0].attention is None
    assert d.blocks[1].conv1.parametrizations.weight.original.shape == (32 * 4, 32 * 4, 3, 3)  # thin: input width


@pytest.mark.slow
def test_biggan_128px_imagenet_configuration_has_the_references_counts():
    with torch.device("meta"):  # shapes only: 158 M parameters would take seconds to initialise
        g = BigGANGenerator(120, 3, 128, 96, attention=[64], hier=True, num_classes=1000,
                            conditioning=BigGANConditionalBatchNorm(shared_dim=128))
        d = BigGANDiscriminator(3, 128, 96, attention=[64], num_classes=1000, conditioning=Projection())
    assert (count(g), count(d)) == (70_433_988, 87_982_370)


def test_spectral_norm_where_the_reference_has_it():
    torch.manual_seed(0)
    g, d = small64_g(), small64_d()
    for net in (g, d):
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                assert parametrize.is_parametrized(m, "weight"), name
                # Initialised before spectral norm: the power iteration starts at the top singular vectors of
                # the orthogonal weights, all of whose singular values are equal.
                sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
                assert float(sigma) == pytest.approx(1.0, abs=1e-4), name
    # The class embeddings of G are not normalised (the reference: normalising them "cripples G"); D's
    # projection embedding is.
    assert not parametrize.is_parametrized(g.conditioning.shared, "weight")
    assert parametrize.is_parametrized(d.conditioning.embed, "weight")
    plain = BigGANGenerator(32, 1, 28, 2, norm="none")
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_initialisations():
    torch.manual_seed(0)
    g = cifar_g()
    w = g.blocks[0].conv1.parametrizations.weight.original.detach()
    assert float(w.std()) == pytest.approx(0.02, rel=0.02) and abs(float(w.mean())) < 1e-3
    # N(0, 0.02) class embeddings: each class's gain 1 + g(c) starts within a few 0.02 of 1.
    gain = g.blocks[0].bn1.gain.weight.detach()
    assert float(gain.std()) == pytest.approx(0.02, rel=0.1)
    ortho = BigGANGenerator(128, 3, 32, 8, init="ortho", num_classes=K, conditioning=BigGANConditionalBatchNorm())
    w = ortho.blocks[0].conv1.parametrizations.weight.original.detach().flatten(1)  # 32 x 288: orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)
    e = ortho.blocks[0].bn1.gain.weight.detach()  # 10 x 32
    torch.testing.assert_close(e @ e.T, torch.eye(K), atol=1e-5, rtol=0)
    xavier = BigGANDiscriminator(3, 32, 8, init="xavier")
    w = xavier.blocks[1].conv1.parametrizations.weight.original.detach()
    bound = (6 / (w.shape[1] * 9 + w.shape[0] * 9)) ** 0.5
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound


# ----------------------------------------------------------------------------- forward, backward, determinism

SIZES = [(28, 1, 2), (32, 3, 2), (64, 3, 1), (128, 3, 1)]  # image size, channels, ch


@pytest.mark.parametrize("size, channels, ch", SIZES, ids=[f"{s}px" for s, _, _ in SIZES])
@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_forward_shapes(size, channels, ch, conditional):
    torch.manual_seed(0)
    kw = dict(num_classes=K) if conditional else {}
    g = BigGANGenerator(24, channels, size, ch, conditioning=BigGANConditionalBatchNorm() if conditional else None, **kw)
    d = BigGANDiscriminator(channels, size, ch, conditioning=Projection() if conditional else None, **kw)
    y = torch.arange(4) % K if conditional else None
    x = g(torch.randn(4, 24), y)
    assert x.shape == (4, channels, size, size) and x.abs().max() <= 1
    out = d(x, y)
    assert out.shape == (4,) and torch.isfinite(out).all()
    # D's features: the last block's channels after global sum pooling.
    assert d.features_dim == {28: 4, 32: 4, 64: 16, 128: 16}[size] * ch
    assert g.start == (7 if size == 28 else 4)


def hier_pair(seed: int = 0) -> tuple[BigGANGenerator, BigGANDiscriminator]:
    torch.manual_seed(seed)
    g = BigGANGenerator(30, 1, 28, 4, attention=[14], hier=True, num_classes=K,
                        conditioning=BigGANConditionalBatchNorm(shared_dim=8))
    d = BigGANDiscriminator(1, 28, 4, attention=[14], num_classes=K, conditioning=Projection())
    return g, d


@torch.no_grad()
def _open_attention(net: nn.Module) -> None:
    """Attention's output gain starts at 0, which leaves its projections without gradient; open it."""
    for m in net.modules():
        if isinstance(m, SelfAttention):
            m.gamma.fill_(0.5)


def test_backward_reaches_every_parameter_the_noise_and_the_input():
    g, d = hier_pair()
    _open_attention(g), _open_attention(d)
    z = torch.randn(6, 30, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    x = g(z, y)
    (d(x, y) * torch.linspace(-1, 1, 6)).sum().backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            # (Biases right before a training-mode batch norm get no gradient, in exact arithmetic.)
            if p.dim() > 1 or name.endswith("gamma"):
                assert p.grad.abs().sum() > 0, f"all-zero gradient for {name}"
    # Every chunk of the hierarchical z reaches the image: 10 for the input layer, 10 for each of the 2 blocks.
    assert all(float(chunk.abs().sum()) > 0 for chunk in z.grad.split(10, dim=1))
    real = torch.rand(6, 1, 28, 28, requires_grad=True)
    d(real, y).sum().backward()
    assert real.grad.flatten(1).abs().sum(1).min() > 0


def test_a_seed_determines_the_networks_and_their_outputs():
    (g1, d1), (g2, d2), (g3, _) = hier_pair(3), hier_pair(3), hier_pair(4)
    for a, b in ((g1, g2), (d1, d2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(g1.linear.parametrizations.weight.original, g3.linear.parametrizations.weight.original)
    z, y = torch.randn(5, 30, generator=torch.Generator().manual_seed(1)), torch.arange(5)
    assert torch.equal(g1(z, y), g2(z, y))
    g1.eval(), d1.eval()
    x = g1(z, y)
    assert torch.equal(x, g1(z, y)) and torch.equal(d1(x, y), d1(x, y))
    # Eval mode: a sample does not depend on the rest of its batch.
    torch.testing.assert_close(g1(z[:1], y[:1]), x[:1], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- conditioning


@torch.no_grad()
def test_conditional_batch_norm_computes_its_formula():
    torch.manual_seed(0)
    h, y = torch.randn(6, 8, 5, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    # Per-layer class embeddings (shared_dim 0): gain 1 + E_g[y], bias E_b[y].
    cond = BigGANConditionalBatchNorm()
    cond.bind(3, "generator")
    cond.bind_layers(0, "N02", "spectral")
    norm = cond.norm(8)
    assert isinstance(norm, BigGANNorm) and isinstance(norm.gain, nn.Embedding)
    bn = (h - h.mean((0, 2, 3), keepdim=True)) / (h.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    want = bn * (1 + norm.gain.weight[y])[:, :, None, None] + norm.bias.weight[y][:, :, None, None]
    torch.testing.assert_close(norm(h, y), want, rtol=1e-4, atol=1e-5)
    assert cond.block_conditions(y, (), 3) == [y, y, y]
    # Shared embedding with a hierarchical z: each block's norms see [shared(y), z_i] through bias-free linears.
    cond = BigGANConditionalBatchNorm(shared_dim=4)
    cond.bind(3, "generator")
    cond.bind_layers(5, "ortho", "none")
    norm = cond.norm(8)
    assert norm.gain.bias is None and norm.gain.weight.shape == (8, 4 + 5)
    chunks = (torch.randn(6, 5), torch.randn(6, 5))
    codes = cond.block_conditions(y, chunks, 2)
    for code, chunk in zip(codes, chunks):
        torch.testing.assert_close(code, torch.cat([cond.shared.weight[y], chunk], dim=1))
    code = codes[1]
    want = bn * (1 + code @ norm.gain.weight.T)[:, :, None, None] + (code @ norm.bias.weight.T)[:, :, None, None]
    torch.testing.assert_close(norm(h, code), want, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_self_attention_computes_its_formula():
    torch.manual_seed(0)
    att = SelfAttention(16, "ortho", "none")
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(att(x), x)  # the gain starts at 0: identity
    att.gamma.fill_(0.7)
    q = torch.einsum("oc,nchw->nohw", att.theta.weight[:, :, 0, 0], x).flatten(2)            # (N, 2, 36)
    k = F.max_pool2d(torch.einsum("oc,nchw->nohw", att.phi.weight[:, :, 0, 0], x), 2).flatten(2)  # (N, 2, 9)
    v = F.max_pool2d(torch.einsum("oc,nchw->nohw", att.g.weight[:, :, 0, 0], x), 2).flatten(2)    # (N, 8, 9)
    a = torch.softmax(q.transpose(1, 2) @ k, dim=-1)                                           # (N, 36, 9)
    o = torch.einsum("oc,nchw->nohw", att.o.weight[:, :, 0, 0], (v @ a.transpose(1, 2)).view(2, 8, 6, 6))
    torch.testing.assert_close(att(x), x + 0.7 * o, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_samples_follow_the_label_and_every_chunk_of_z():
    g, _ = hier_pair()
    for p in g.parameters():  # as after training: move the class embeddings off their near-identity start
        p.add_(0.1 * torch.randn_like(p))
    g.train()(torch.randn(16, 30), torch.arange(16) % K)
    g.eval()
    z, y = torch.randn(4, 30), torch.tensor([1, 3, 5, 7])
    out = g(z, y)
    assert (g(z, (y + 1) % K) - out).flatten(1).abs().amax(1).min() > 1e-4
    for i in range(3):  # the input layer's chunk and each block's
        z2 = z.clone()
        z2[:, 10 * i:10 * (i + 1)] = torch.randn(4, 10)
        assert (g(z2, y) - out).flatten(1).abs().amax(1).min() > 1e-4, f"chunk {i} is ignored"


def test_unconditional_networks_drop_exactly_the_class_layers():
    torch.manual_seed(0)
    cond_g, cond_d = cifar_g(), cifar_d()
    g, d = BigGANGenerator(128, 3, 32, 64, init="N02"), BigGANDiscriminator(3, 32, 64, init="N02")
    assert g.condition == d.condition == "none" and cond_g.condition == cond_d.condition == "label"
    assert all(isinstance(b.bn1, PlainNorm) and isinstance(b.bn2, PlainNorm) for b in g.blocks)
    # 6 norms of 256 channels: per-class gain and bias (2 x 10 x 256) instead of BN's affine pair (2 x 256);
    # D loses its 10 x 256 projection embedding.
    assert count(cond_g) - count(g) == 6 * (2 * K * 256 - 2 * 256)
    assert count(cond_d) - count(d) == K * 256
    x = g(torch.randn(3, 128))
    assert x.shape == (3, 3, 32, 32) and d(x).shape == (3,)


def test_the_library_conditioning_methods_plug_in_through_the_standard_hooks():
    torch.manual_seed(0)
    g = BigGANGenerator(16, 1, 28, 2, num_classes=K, conditioning=ConditionalBatchNorm())
    # The method's layers keep their own initialisation: gamma = 1, beta = 0.
    assert torch.equal(g.blocks[0].bn1.gamma.weight, torch.ones(K, 8))
    assert g(torch.randn(3, 16), torch.tensor([0, 1, 2])).shape == (3, 1, 28, 28)
    concat = BigGANGenerator(16, 1, 28, 2, num_classes=K, conditioning=LabelConcat())
    assert concat.linear.parametrizations.weight.original.shape == (8 * 7 * 7, 16 + K)
    assert concat(torch.randn(3, 16), torch.tensor([0, 1, 2])).shape == (3, 1, 28, 28)
    # And BigGAN's conditional BN (per-layer embeddings) in a generator that hands its norms the labels.
    resnet = ResNetGenerator(16, 1, 28, 8, num_classes=K, conditioning=BigGANConditionalBatchNorm())
    assert isinstance(resnet.norm, BigGANNorm) and resnet.norm.gain.weight.shape == (K, 8)
    assert resnet(torch.randn(3, 16), torch.tensor([0, 1, 2])).shape == (3, 1, 28, 28)


@pytest.mark.parametrize("make, match", [
    (lambda: BigGANGenerator(3, image_size=32, hier=True, num_classes=K, conditioning=BigGANConditionalBatchNorm(16)),
     r"^generator\.latent_dim: with hier: true z is split into 4 equal chunks .* e\.g\. 4, got 3$"),
    (lambda: BigGANGenerator(99, image_size=32, hier=True, num_classes=K, conditioning=BigGANConditionalBatchNorm(16)),
     r"^generator\.latent_dim: .*use a multiple of 4, e\.g\. 96, got 99$"),
    (lambda: BigGANGenerator(96, image_size=32, hier=True), r"^generator\.hier: .*BigGANConditionalBatchNorm"),
    (lambda: BigGANGenerator(96, image_size=32, hier=True, num_classes=K, conditioning=BigGANConditionalBatchNorm()),
     r"^generator\.hier: .*set conditioning\.shared_dim > 0"),
    (lambda: BigGANConditionalBatchNorm(-1), r"^conditioning\.shared_dim: must be >= 0"),
    (lambda: ResNetGenerator(16, 1, 28, 8, num_classes=K, conditioning=BigGANConditionalBatchNorm(8)),
     r"^conditioning\.shared_dim: .*fed to the norms by BigGANGenerator; use shared_dim: 0"),
    (lambda: BigGANGenerator(image_size=48), r"^generator\.image_size: the BigGAN networks support \[28, 32, 64, 128\]"),
    (lambda: BigGANDiscriminator(image_size=96), r"^discriminator\.image_size: "),
    (lambda: BigGANGenerator(ch=0), r"^generator\.ch: must be a positive integer"),
    (lambda: BigGANGenerator(init="kaiming"), r"^generator\.init: must be one of"),
    (lambda: BigGANDiscriminator(norm="batch"), r"^discriminator\.norm: must be one of"),
    (lambda: BigGANGenerator(attention=[64]), r"^generator\.attention: 64 is not the output resolution of a block; "
                                              r"choose from \[8, 16, 32\]"),
    (lambda: BigGANDiscriminator(1, 28, 4, attention=[7]), r"^discriminator\.attention: .*needs an even resolution"),
    (lambda: BigGANGenerator(image_size=32, ch=1, attention=[16]), r"^generator\.attention: .*multiple of 8 channels"),
], ids=["hier_latent_3", "hier_latent_99", "hier_unconditional", "hier_unshared", "shared_dim", "shared_elsewhere", "g_size", "d_size",
        "ch", "init", "norm", "attention_resolution", "attention_odd", "attention_channels"])
def test_bad_options_are_one_line_user_errors(make, match):
    with pytest.raises(UserError, match=match):
        make()


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_training_steps_through_the_gan_system(make_trainer, conditional):
    torch.manual_seed(0)
    kw = dict(num_classes=K) if conditional else {}
    g = BigGANGenerator(30, 1, 28, 2, attention=[14], hier=conditional, **kw,
                        conditioning=BigGANConditionalBatchNorm(shared_dim=8) if conditional else None)
    d = BigGANDiscriminator(1, 28, 2, attention=[14], **kw, conditioning=Projection() if conditional else None)
    model = GAN(g, d, loss="hinge", n_critic=2, ema_decay=0.9, ema_start=1,
                g_optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.0, 0.999)),
                d_optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.0, 0.999)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = EmbeddedMNIST(labels="class" if conditional else "none", batch_size=8, draws_per_step=2)
    trainer = make_trainer(4)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 4
    # Every weight of both networks moved (attention's projections from step 2 on, once its gain is off 0; biases
    # right before a training-mode batch norm get no gradient in exact arithmetic, so only weights are checked).
    for name, p in model.named_parameters():
        if name.startswith(("generator.", "discriminator.")):
            assert torch.isfinite(p).all(), name
            if p.dim() > 1 or name.endswith("gamma"):
                assert not torch.equal(p, before[name]), f"{name} did not move"
    # The EMA copy averages G after step 1: it is neither G's start nor G.
    ema = dict(model.generator_ema.named_parameters())
    for name, p in model.generator.named_parameters():
        if p.dim() > 1:
            assert not torch.equal(ema[name], p) and not torch.equal(ema[name], before[f"generator.{name}"]), name
    c = model.conditioning.conditions(4) if conditional else None
    samples = model.sampling_generator.eval()(torch.randn(4, 30), c)
    assert samples.shape == (4, 1, 28, 28) and torch.isfinite(samples).all()
