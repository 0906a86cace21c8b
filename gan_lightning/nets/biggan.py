"""BigGAN (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis") for 28 to 128 px.

The architecture is that of the authors' reference implementation (github.com/ajbrock/BigGAN-PyTorch,
``BigGAN.py`` and ``layers.py``): with the same options the networks have the same layers, parameter shapes and
parameter counts (``tests/test_biggan.py`` checks them against the reference's).

G: the first chunk of z -> linear to a ``4x4`` map (``7x7`` at 28 px) -> residual up-blocks (conditional BN, ReLU,
nearest 2x upsample, 3x3 conv, conditional BN, ReLU, 3x3 conv; a 1x1 conv on the upsampled shortcut), optionally
followed by self-attention -> BN, ReLU, 3x3 conv, tanh. D: residual down-blocks (the first without
pre-activation; average pooling; a 1x1 conv on the shortcut where the shape changes), optionally followed by
self-attention -> ReLU, global sum pooling, a linear score; ``Projection`` adds the projection term (Miyato &
Koyama 2018). Spectral norm on every convolution and linear layer of both networks (``norm: spectral``);
orthogonal, N(0, 0.02) or Xavier weights.

Channels per block, in multiples of ``ch`` (input -> output; D's first block sees the image):

=====  ====================================  ===========================================================
size   G                                     D (blocks marked ``=`` keep the resolution)
=====  ====================================  ===========================================================
28/32  4->4, 4->4, 4->4 (28 px: two blocks)  img->4, 4->4, 4->4 =, 4->4 =
64     16->16, 16->8, 8->4, 4->2             img->1, 1->2, 2->4, 4->8, 8->16 =
128    16->16, 16->8, 8->4, 4->2, 2->1       img->1, 1->2, 2->4, 4->8, 8->16, 16->16 =
=====  ====================================  ===========================================================

The 28 px networks (for MNIST-sized data) are the 32 px ones started from ``7x7`` with one G block less; the
reference has no 28 px networks.

**Conditioning.** The class enters G through ``BigGANConditionalBatchNorm``, defined here: every block's two
batch norms get a gain ``1 + g(c)`` and a bias ``b(c)``. Without a shared embedding (the reference's CIFAR
configuration) ``g`` and ``b`` are per-layer class embeddings; with one (``shared_dim > 0``, BigGAN at 128 px)
``g`` and ``b`` are bias-free linear maps of one class embedding shared by all layers, and with a hierarchical
latent (``hier: true``) z is split into one chunk for the input layer and one per block, each block's chunk
concatenated to the shared embedding. The output layer's batch norm is unconditional, as in the reference. G
also takes the library's other methods through the standard hooks (e.g. ``ConditionalBatchNorm``, whose layers
keep their own initialisation); D takes ``Projection``.

Differences from the reference: spectral norm is torch's (``eps`` 1e-12 rather than 1e-8; the power-iteration
vectors start from the initial weights rather than at random); the conditioning's layers of D (``Projection``'s
embedding) keep their own initialisation, as ``Discriminator.set_features`` promises; attention in D sits after
the blocks whose *output* has the given resolution at every image size (the reference's 32 px table files all
four D blocks under resolution 16); the reference's cross-replica and "standing statistics" batch norms are not
provided.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.conditioning import CondNorm, Conditioning, LabelConditioning, PlainNorm
from gan_lightning.errors import UserError
from gan_lightning.nets.base import Discriminator, Generator, image_shape
from gan_lightning.nets.layers import check_choice, maybe_sn

INITS = ("ortho", "N02", "xavier")
NORMS = ("spectral", "none")

# image size -> (G's start size, G's blocks as (input, output) multiples of ch)
G_ARCH = {
    28: (7, [(4, 4), (4, 4)]),
    32: (4, [(4, 4), (4, 4), (4, 4)]),
    64: (4, [(16, 16), (16, 8), (8, 4), (4, 2)]),
    128: (4, [(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)]),
}
# image size -> D's blocks as (input multiple of ch or None for the image, output multiple of ch, downsample)
D_ARCH = {
    28: [(None, 4, True), (4, 4, True), (4, 4, False), (4, 4, False)],
    32: [(None, 4, True), (4, 4, True), (4, 4, False), (4, 4, False)],
    64: [(None, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, False)],
    128: [(None, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, True), (16, 16, False)],
}


def _check_size(image_size: int, who: str) -> None:
    if image_size not in G_ARCH:
        raise UserError(f"{who}.image_size: the BigGAN networks support {sorted(G_ARCH)}, got {image_size}")


def _check_positive(value: int, field: str) -> None:
    if value < 1:
        raise UserError(f"{field}: must be a positive integer, got {value}")


def init_weight(layer: nn.Module, init: str) -> nn.Module:
    """Initialises the weight of a convolution, linear or embedding layer in place (biases keep PyTorch's default,
    as in the reference) and returns the layer: ``ortho`` orthogonal (BigGAN), ``N02`` N(0, 0.02) (the reference's
    CIFAR configuration), ``xavier`` Xavier-uniform (SNGAN)."""
    weight = layer.parametrizations.weight.original if hasattr(layer, "parametrizations") else layer.weight
    with torch.no_grad():
        if init == "ortho":
            nn.init.orthogonal_(weight)
        elif init == "N02":
            nn.init.normal_(weight, 0.0, 0.02)
        else:
            nn.init.xavier_uniform_(weight)
    return layer


def _layer(layer: nn.Module, init: str, norm: str) -> nn.Module:
    """``layer`` initialised, then spectrally normalised when ``norm == 'spectral'`` (so that the power
    iteration's vectors start from the initialised weight)."""
    return maybe_sn(init_weight(layer, init), norm)


def _conv(in_ch: int, out_ch: int, kernel: int, init: str, norm: str, bias: bool = True) -> nn.Module:
    return _layer(nn.Conv2d(in_ch, out_ch, kernel, 1, kernel // 2, bias=bias), init, norm)


def _attention_at(attention: Sequence[int], resolutions: list[int], channels: list[int], field: str) -> list[bool]:
    """Which blocks get a self-attention layer: those whose output resolution is listed in ``attention``."""
    wanted = [int(r) for r in attention]
    for r in wanted:
        if r not in resolutions:
            raise UserError(f"{field}: {r} is not the output resolution of a block; choose from {sorted(set(resolutions))}")
        if r % 2:
            raise UserError(f"{field}: self-attention pools its keys 2x2 and needs an even resolution, got {r}")
    for r, c in zip(resolutions, channels):
        if r in wanted and c % 8:
            raise UserError(f"{field}: self-attention at {r} px needs a multiple of 8 channels, got {c}; change ch")
    return [r in wanted for r in resolutions]


class SelfAttention(nn.Module):
    """The non-local block of SA-GAN (Zhang et al. 2019) as BigGAN uses it: 1x1 projections to queries
    (``ch/8``), keys (``ch/8``, 2x2 max-pooled) and values (``ch/2``, 2x2 max-pooled), softmax attention, a 1x1
    projection back to ``ch`` scaled by a learned gain that starts at 0, added to the input."""

    def __init__(self, ch: int, init: str, norm: str) -> None:
        super().__init__()
        self.ch = ch
        self.gamma = nn.Parameter(torch.tensor(0.0))
        self.theta = _conv(ch, ch // 8, 1, init, norm, bias=False)
        self.phi = _conv(ch, ch // 8, 1, init, norm, bias=False)
        self.g = _conv(ch, ch // 2, 1, init, norm, bias=False)
        self.o = _conv(ch // 2, ch, 1, init, norm, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).view(n, self.ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(n, self.ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).view(n, self.ch // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)  # (N, HW, HW/4)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(n, self.ch // 2, h, w))
        return self.gamma * o + x


class BigGANNorm(CondNorm):
    """Batch norm without affine parameters, then a gain ``1 + gain(c)`` and a bias ``bias(c)`` computed from the
    condition ``c``: class labels for per-layer embeddings, or a code vector for linear maps (BigGAN's ``ccbn``)."""

    def __init__(self, num_features: int, gain: nn.Module, bias: nn.Module, dims: int = 2) -> None:
        super().__init__()
        self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(num_features, affine=False)
        self.gain = gain
        self.bias = bias

    def forward(self, h: Tensor, c: Tensor | None = None) -> Tensor:
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.dim() - 2)
        return self.bn(h) * (1 + self.gain(c)).view(shape) + self.bias(c).view(shape)


class BigGANConditionalBatchNorm(LabelConditioning):
    """BigGAN's class-conditional batch norm in G: every block's batch norms get a class-dependent gain
    ``1 + g(c)`` and bias ``b(c)``, with ``g`` and ``b`` initialised like G's weights (so each norm starts near
plain batch norm).

    ``shared_dim: 0``: ``g`` and ``b`` are each layer's own class embeddings (the reference's CIFAR configuration,
    and SNGAN's conditional BN). ``shared_dim > 0``: one class embedding of that size is shared by all layers, and
    ``g`` and ``b`` are bias-free linear maps of it (spectrally normalised with G's ``norm``); with G's
    hierarchical latent (``hier: true``) each block's maps also see that block's chunk of z (BigGAN at 128 px:
    ``shared_dim: 128``, ``latent_dim: 120``, ``hier: true``; the reference's ``shared_dim 0`` there means
    ``latent_dim``).

    Beyond the standard hooks, ``BigGANGenerator`` calls ``bind_layers`` before it makes its norm layers and
    ``block_conditions`` to get what each block's norms see. Other generators, which hand their norms the labels,
    take it with ``shared_dim: 0``.
    """

    roles = ("generator",)

    def __init__(
        self,
        shared_dim: int = 0,  # 0: per-layer class embeddings; > 0: size of a class embedding shared by all layers.
    ) -> None:
        super().__init__()
        if shared_dim < 0:
            raise UserError(f"conditioning.shared_dim: must be >= 0 (0 = per-layer embeddings), got {shared_dim}")
        self.shared_dim = int(shared_dim)
        self.shared: Optional[nn.Embedding] = None
        self.z_chunk, self.init, self.norm_kind = 0, "ortho", "spectral"
        self.layers_bound = False  # set by bind_layers

    def bind(self, num_classes: int, role: str) -> None:
        super().bind(num_classes, role)
        if self.shared_dim:
            # Not spectrally normalised, as in the reference: its authors found that normalising it can cripple G.
            self.shared = nn.Embedding(num_classes, self.shared_dim)

    def bind_layers(self, z_chunk: int, init: str, norm: str) -> None:
        """Called by the generator once, before its norm layers are made: the size of the chunk of z each block's
        norms also see (0: none), and G's weight initialisation and normalisation, which the gain and bias
        layers (and the shared embedding) follow."""
        if z_chunk and not self.shared_dim:
            raise UserError("generator.hier: the hierarchical latent is fed to the norms beside the shared class "
                            "embedding; set conditioning.shared_dim > 0 (BigGAN: 128)")
        self.z_chunk, self.init, self.norm_kind = int(z_chunk), init, norm
        self.layers_bound = True
        if self.shared is not None:
            init_weight(self.shared, init)

    def norm(self, num_features: int, dims: int = 2) -> CondNorm:
        if self.shared_dim and not self.layers_bound:
            raise UserError("conditioning.shared_dim: the shared class embedding is fed to the norms by "
                            "BigGANGenerator; use shared_dim: 0 with other generators")
        return BigGANNorm(num_features, self._affine(num_features), self._affine(num_features), dims)

    def _affine(self, num_features: int) -> nn.Module:
        """One norm's gain or bias layer: a class embedding, or a bias-free linear map of the shared code."""
        if self.shared_dim:
            linear = nn.Linear(self.shared_dim + self.z_chunk, num_features, bias=False)
            return _layer(linear, self.init, self.norm_kind)
        return init_weight(nn.Embedding(self.num_classes, num_features), self.init)

    def block_conditions(self, c: Tensor, z_chunks: Sequence[Tensor], blocks: int) -> list[Tensor]:
        """What each of ``blocks`` blocks' norms see: the labels, or the shared embedding of the labels,
        concatenated with that block's chunk of z when the latent is hierarchical."""
        code = c if self.shared is None else self.shared(c)
        if not z_chunks:
            return [code] * blocks
        return [torch.cat([code, z.to(code.dtype)], dim=1) for z in z_chunks]


class GBlock(nn.Module):
    """BN, ReLU, 2x nearest upsample, 3x3 conv, BN, ReLU, 3x3 conv; the upsampled input through a 1x1 conv is
    added. Then self-attention when ``attention``."""

    def __init__(self, in_ch: int, out_ch: int, conditioning: Conditioning, init: str, norm: str,
                 attention: bool) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, out_ch, 3, init, norm)
        self.conv2 = _conv(out_ch, out_ch, 3, init, norm)
        self.conv_sc = _conv(in_ch, out_ch, 1, init, norm)  # every block upsamples: a learned shortcut
        self.bn1 = conditioning.norm(in_ch)
        self.bn2 = conditioning.norm(out_ch)
        self.attention = SelfAttention(out_ch, init, norm) if attention else None

    def forward(self, x: Tensor, c: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        out = h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))
        return out if self.attention is None else self.attention(out)


class DBlock(nn.Module):
    """(ReLU unless first,) 3x3 conv, ReLU, 3x3 conv, (2x2 average pool); plus the shortcut, through a 1x1 conv
    where the shape changes (pooled before it in the first block, after it in the others). Then self-attention
    when ``attention``. ``wide``: the hidden width is the output's (BigGAN, SA-GAN), else the input's (SNGAN)."""

    def __init__(self, in_ch: int, out_ch: int, down: bool, first: bool, wide: bool, init: str, norm: str,
                 attention: bool) -> None:
        super().__init__()
        hidden = out_ch if wide else in_ch
        self.down, self.first = down, first
        self.conv1 = _conv(in_ch, hidden, 3, init, norm)
        self.conv2 = _conv(hidden, out_ch, 3, init, norm)
        self.conv_sc = _conv(in_ch, out_ch, 1, init, norm) if (in_ch != out_ch or down) else None
        self.attention = SelfAttention(out_ch, init, norm) if attention else None

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)  # out of place: the shortcut needs x itself
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.conv_sc is None:  # same shape, no pooling
            skip = x
        elif self.first:
            skip = self.conv_sc(self._pool(x))
        else:
            skip = self._pool(self.conv_sc(x))
        out = h + skip
        return out if self.attention is None else self.attention(out)


class BigGANGenerator(Generator):
    """``(N, latent_dim)`` (and labels ``(N,)``) -> ``(N, channels, image_size, image_size)`` in [-1, 1].

    The reference's CIFAR configuration (``scripts/launch_cifar_ema.sh``): ``latent_dim: 128, ch: 64, init: N02,
    attention: [], hier: false`` with ``BigGANConditionalBatchNorm`` (``shared_dim: 0``). BigGAN at 128 px:
    ``latent_dim: 120, ch: 96, attention: [64], hier: true, init: ortho`` with ``shared_dim: 128``.
    """

    def __init__(
        self,
        latent_dim: int = 128,                  # Size of z; with hier, a multiple of the number of blocks + 1.
        channels: int = 3,                      # Image channels.
        image_size: int = 32,                   # 28, 32, 64 or 128.
        ch: int = 64,                           # Channel multiplier (the reference's G_ch): blocks have k * ch channels.
        attention: Sequence[int] = (),          # Output resolutions of the blocks followed by self-attention (BigGAN 128 px: [64]).
        hier: bool = False,                     # Hierarchical latent: one chunk of z for the input layer, one per block's norms.
        init: Literal["ortho", "N02", "xavier"] = "ortho",  # Weight init: orthogonal (BigGAN), N(0, 0.02) (its CIFAR setup), Xavier.
        norm: Literal["spectral", "none"] = "spectral",     # spectral: spectral norm on every conv and linear layer.
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional.
        conditioning: Conditioning | None = None,  # BigGANConditionalBatchNorm for BigGAN's class-conditional BN.
    ) -> None:
        _check_size(image_size, "generator")
        super().__init__(latent_dim, image_shape(channels, image_size), num_classes, conditioning)
        _check_positive(ch, "generator.ch")
        check_choice(init, INITS, "generator.init")
        check_choice(norm, NORMS, "generator.norm")
        self.start, arch = G_ARCH[image_size]
        self.hier = bool(hier)
        slots = len(arch) + 1
        if self.hier:
            if latent_dim % slots:
                raise UserError(f"generator.latent_dim: with hier: true z is split into {slots} equal chunks (one per "
                                f"block, one for the input layer); use a multiple of {slots}, e.g. "
                                f"{max(slots, latent_dim // slots * slots)}, got {latent_dim}")
            if not isinstance(self.conditioning, BigGANConditionalBatchNorm):
                raise UserError("generator.hier: the chunks of z enter the norms beside the class embedding; use "
                                "conditioning: {class_path: gan_lightning.nets.biggan.BigGANConditionalBatchNorm, "
                                "init_args: {shared_dim: 128}} with class labels")
        self.z_chunk = latent_dim // slots if self.hier else latent_dim
        if isinstance(self.conditioning, BigGANConditionalBatchNorm):
            self.conditioning.bind_layers(self.z_chunk if self.hier else 0, init, norm)
        widths = [(a * ch, b * ch) for a, b in arch]
        resolutions = [self.start * 2 ** (i + 1) for i in range(len(arch))]
        attend = _attention_at(attention, resolutions, [b for _, b in widths], "generator.attention")
        self.width = widths[0][0]
        self.linear = _layer(nn.Linear(self.conditioning.latent_dim(self.z_chunk), self.width * self.start ** 2),
                             init, norm)
        extra = self.conditioning.map_channels()
        self.blocks = nn.ModuleList([
            GBlock(a + (extra if i == 0 else 0), b, self.conditioning, init, norm, attend[i])
            for i, (a, b) in enumerate(widths)
        ])
        out_ch = widths[-1][1]
        self.out_norm = PlainNorm(out_ch)  # unconditional, as in the reference
        self.to_image = _conv(out_ch, channels, 3, init, norm)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        chunks = z.split(self.z_chunk, dim=1) if self.hier else (z,)
        h = self.linear(self.conditioning.condition_latent(chunks[0], y))
        h = self.conditioning.condition_map(h.view(z.shape[0], self.width, self.start, self.start), y)
        if isinstance(self.conditioning, BigGANConditionalBatchNorm):
            conditions = self.conditioning.block_conditions(y, chunks[1:], len(self.blocks))
        else:
            conditions = [y] * len(self.blocks)
        for block, c in zip(self.blocks, conditions):
            h = block(h, c)
        return self.to_image(F.relu(self.out_norm(h))).tanh()


class BigGANDiscriminator(Discriminator):
    """``(N, channels, image_size, image_size)`` (and labels ``(N,)``) -> ``(N,)`` scores.

    The reference's CIFAR configuration: ``ch: 64, init: N02, attention: [], wide: true`` with ``Projection``.
    BigGAN at 128 px: ``ch: 96, attention: [64], init: ortho``.
    """

    def __init__(
        self,
        channels: int = 3,                      # Image channels.
        image_size: int = 32,                   # 28, 32, 64 or 128.
        ch: int = 64,                           # Channel multiplier (the reference's D_ch): blocks have k * ch channels.
        attention: Sequence[int] = (),          # Output resolutions of the blocks followed by self-attention (BigGAN 128 px: [64]).
        wide: bool = True,                      # Hidden width of a block: its output's (BigGAN) or its input's (SNGAN).
        init: Literal["ortho", "N02", "xavier"] = "ortho",  # Weight init: orthogonal (BigGAN), N(0, 0.02) (its CIFAR setup), Xavier.
        norm: Literal["spectral", "none"] = "spectral",     # spectral: spectral norm on every conv and linear layer.
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional.
        conditioning: Conditioning | None = None,  # Projection for the projection discriminator.
    ) -> None:
        _check_size(image_size, "discriminator")
        super().__init__(image_shape(channels, image_size), num_classes, conditioning)
        _check_positive(ch, "discriminator.ch")
        check_choice(init, INITS, "discriminator.init")
        check_choice(norm, NORMS, "discriminator.norm")
        arch = D_ARCH[image_size]
        resolutions, size = [], image_size
        for _, _, down in arch:
            size = size // 2 if down else size
            resolutions.append(size)
        attend = _attention_at(attention, resolutions, [b * ch for _, b, _ in arch], "discriminator.attention")
        self.blocks = nn.Sequential(*[
            DBlock(self.input_channels if a is None else a * ch, b * ch, down, i == 0, wide, init, norm, attend[i])
            for i, (a, b, down) in enumerate(arch)
        ])
        self.set_features(arch[-1][1] * ch, norm, init=lambda net: init_weight(net.head, init))

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling, as in SNGAN
