"""R3GAN's modernised ResNet generator and discriminator (Huang et al. 2024, "The GAN is dead; long live the GAN! A
Modern GAN Baseline"; reference implementation github.com/brownvc/R3GAN, ``R3GAN/Networks.py``).

Both networks are stacks of stages at doubling (G) or halving (D) resolutions. A stage is a transition layer and
``blocks`` residual blocks, each an inverted bottleneck with a grouped convolution in the middle::

    x + conv1x1(lrelu(conv_kxk_grouped(lrelu(conv1x1(x)))))     # C -> expansion*C -> expansion*C -> C

with LeakyReLU(0.2) after a learned bias and no normalization anywhere. Initialisation is fix-up style: every
weight is drawn from ``N(0, gain^2 / fan_in)``; in a block the two expanding layers get
``gain = sqrt(2 / (1 + 0.2^2)) * L^(-1/4)`` (``L``: the network's number of blocks) and the last layer is zero,
so every block starts as the identity. Resolution changes by lowpass filtering every channel with the separable
``[1, 3, 3, 1]`` kernel (the ``resampling_filter`` ``[1, 2, 1]`` convolved with ``[1, 1]``), as the reference's
``upfirdn2d`` resamplers do: zero insertion and the filter to upsample in G, the filter at stride 2 to downsample
in D. A 1x1 convolution changes the width where two stages differ.

Plain PyTorch throughout. Two choices keep R1 and R2, which differentiate D's input gradient again, affordable:
the resampling filter is computed as weighted sums of shifted slices, one axis at a time, and the grouped
convolutions carry a backward of their own written with whole convolutions (``GroupedConv2d``); PyTorch's generic
double backward of a grouped convolution runs one small convolution per group. Values and gradients are those of
the plain operations (tests/test_r3gan.py compares them).

G starts from a learned ``4x4`` basis (``base x base`` in general) scaled per channel by a linear map of its input,
and ends with a 1x1 convolution to the image, with no output nonlinearity in the reference (``out_activation``).
D starts with a 1x1 convolution from the image and ends with a depthwise ``base x base`` convolution to a vector
and a linear layer.

**Class conditioning as in the reference.** G: a learned linear embedding of the one-hot class (no bias) is
concatenated to ``z`` (``ClassEmbedding``). D: its last linear layer outputs ``embedding_dim`` features instead of
one score, and the score is their inner product with a learned linear embedding of the class
(``ClassProjection``): a projection discriminator without the unconditional term. The other methods of
``gan_lightning.conditioning`` plug in too: anything on G's input or D's input (``LabelConcat``,
``SpatialCondition``), and methods on D's features (``Projection``, ``AuxiliaryClassifier``), which then get a
linear score head on ``embedding_dim`` features. Methods that condition normalization layers
(``ConditionalBatchNorm``) do not apply: there are none.

Image sizes: ``image_size = base * 2^(stages - 1)`` with ``stages = len(widths)``; the reference's presets have
``base = 4`` (CIFAR-10: 4 stages for 32x32); 28x28 MNIST is ``base = 7`` with 3 stages.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning, LabelConditioning
from gan_lightning.errors import UserError
from gan_lightning.nets.base import Discriminator, Generator, image_shape, squeeze_score
from gan_lightning.nets.layers import out_activation as make_out_activation

#: The gain of LeakyReLU(0.2), for the initialisation.
LRELU_GAIN = math.sqrt(2.0 / (1.0 + 0.2**2))
#: The reference's CIFAR-10 preset (train.py ``--preset=CIFAR10``): 4 stages of width 768, cardinality 96,
#: 2 blocks each, expansion 2, 3x3 grouped convolutions, noise of 64 and a class embedding of 64 in G.
CIFAR10_WIDTHS, CIFAR10_CARDINALITIES, CIFAR10_BLOCKS = (768,) * 4, (96,) * 4, (2,) * 4


def msr_init_(weight: Tensor, gain: float = 1.0) -> Tensor:
    """``N(0, gain^2 / fan_in)`` in place, ``fan_in = weight.shape[1] * prod(weight.shape[2:])`` (He et al. 2015;
    for a grouped convolution the inputs of one group). ``gain = 0`` zeroes the weight."""
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    with torch.no_grad():
        return weight.normal_(0.0, gain / math.sqrt(fan_in))


class _GroupedConv2dFn(torch.autograd.Function):
    """``F.conv2d`` with groups, whose backward is written with differentiable convolutions (a transposed
    convolution for the input gradient, ``torch.nn.grad.conv2d_weight`` for the weight gradient). The values are
    those of ``F.conv2d``; what changes is the double backward that R1/R2 need: PyTorch's generic one for grouped
    convolutions loops over the groups (one small convolution per group), this one runs whole convolutions."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, padding: tuple[int, int], groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.groups = padding, groups
        return F.conv2d(x, weight, padding=padding, groups=groups)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x, weight = ctx.saved_tensors
        # Under autocast the forward ran in the output's dtype; the backward runs outside autocast, so cast alike.
        dtype = grad.dtype
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv_transpose2d(grad, weight.to(dtype), padding=ctx.padding, groups=ctx.groups).to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x.to(dtype), weight.shape, grad, padding=ctx.padding,
                                                 groups=ctx.groups).to(weight.dtype)
        return grad_x, grad_w, None, None


class GroupedConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` (stride 1) whose grouped case runs ``_GroupedConv2dFn``: same parameters and
    values, a much cheaper double backward."""

    def forward(self, x: Tensor) -> Tensor:
        if self.groups == 1:
            return super().forward(x)
        return _GroupedConv2dFn.apply(x, self.weight, self.padding, self.groups)


def _conv(in_ch: int, out_ch: int, kernel: int = 1, groups: int = 1, gain: float = 1.0, padding: int = -1) -> nn.Conv2d:
    """A bias-free convolution, ``same`` padding unless given, MSR-initialised with ``gain``."""
    padding = (kernel - 1) // 2 if padding < 0 else padding
    conv = GroupedConv2d(in_ch, out_ch, kernel, padding=padding, groups=groups, bias=False)
    msr_init_(conv.weight, gain)
    return conv


def lowpass_taps(taps: Sequence[int]) -> tuple[float, ...]:
    """The 1-D interpolation filter: ``taps`` convolved with ``[1, 1]``, normalised to sum 1 (``[1, 2, 1]`` gives
    ``[1, 3, 3, 1] / 8``). The 2-D kernel is its outer product with itself (the reference's kernel exactly)."""
    row = np.convolve(np.asarray(taps, dtype=np.float64), [1.0, 1.0])
    return tuple(float(v) for v in row / row.sum())


def _correlate(x: Tensor, weights: Sequence[float], dim: int, stride: int, pad: tuple[int, int]) -> Tensor:
    """``x`` zero-padded by ``pad`` along ``dim`` and correlated there with ``weights`` at ``stride``: a weighted
    sum of strided slices (linear elementwise ops, so the double backward of R1/R2 stays cheap)."""
    x = F.pad(x, (pad[0], pad[1]) if dim == -1 else (0, 0, pad[0], pad[1]))
    length = (x.shape[dim] - len(weights)) // stride + 1
    out = None
    for k, w in enumerate(weights):
        part = x.narrow(dim, k, stride * (length - 1) + 1)
        part = part[..., ::stride] if dim == -1 else part[..., ::stride, :]
        out = part * w if out is None else out + part * w
    return out


def _zero_insert(x: Tensor, dim: int) -> Tensor:
    """``[x0, 0, x1, 0, ...]`` along ``dim`` (twice the length)."""
    return torch.stack([x, torch.zeros_like(x)], dim=dim).flatten(dim - 1, dim)


class BiasedLeakyReLU(nn.Module):
    """LeakyReLU(0.2) after a learned per-channel bias (zero at start)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return F.leaky_relu(x + self.bias.to(x.dtype).view(shape), 0.2)


class ResidualBlock(nn.Module):
    """The inverted bottleneck ``x + project(act2(grouped(act1(expand(x)))))``; identity at initialisation."""

    def __init__(self, channels: int, cardinality: int, expansion: int, kernel_size: int, total_blocks: int) -> None:
        super().__init__()
        expanded = channels * expansion
        # Fix-up scaling: 3 weight layers per block, so L^(-1 / (2 * 3 - 2)) on the two that are not zeroed.
        gain = LRELU_GAIN * total_blocks ** (-1.0 / 4.0)
        self.expand = _conv(channels, expanded, 1, gain=gain)
        self.grouped = _conv(expanded, expanded, kernel_size, groups=cardinality, gain=gain)
        self.project = _conv(expanded, channels, 1, gain=0.0)
        self.act1, self.act2 = BiasedLeakyReLU(expanded), BiasedLeakyReLU(expanded)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act2(self.grouped(self.act1(self.expand(x)))))


class _Resample(nn.Module):
    """Filters every channel alike with the separable lowpass filter, one axis at a time. The reference's
    pure-PyTorch resamplers convolve with the 2-D kernel (a transposed convolution of stride 2 for upsampling, a
    convolution of stride 2 for downsampling, padding ``len(taps) // 2``); this computes the same sums."""

    def __init__(self, taps: Sequence[int]) -> None:
        super().__init__()
        self.taps = lowpass_taps(taps)
        self.padding = len(taps) // 2

    def _down(self, x: Tensor) -> Tensor:
        pad = (self.padding, self.padding)
        return _correlate(_correlate(x, self.taps, -1, 2, pad), self.taps, -2, 2, pad)

    def _up(self, x: Tensor) -> Tensor:
        # The transposed convolution: zero insertion, then padding len(kernel) - 1 - padding on the left (one
        # less on the right, the inserted zero stands there) and the (symmetric) kernel, times 2 per axis.
        left = len(self.taps) - 1 - self.padding
        gains = tuple(2.0 * w for w in self.taps)
        x = _correlate(_zero_insert(x, -1), gains, -1, 1, (left, left - 1))
        return _correlate(_zero_insert(x, -2), gains, -2, 1, (left, left - 1))


class Upsample(_Resample):
    """2x upsampling by the lowpass filter; where the widths differ, a 1x1 convolution first (on the smaller map)."""

    def __init__(self, in_ch: int, out_ch: int, taps: Sequence[int]) -> None:
        super().__init__(taps)
        self.conv = _conv(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        return self._up(self.conv(x) if self.conv is not None else x)


class Downsample(_Resample):
    """2x downsampling by the lowpass filter; where the widths differ, then a 1x1 convolution (on the smaller map)."""

    def __init__(self, in_ch: int, out_ch: int, taps: Sequence[int]) -> None:
        super().__init__(taps)
        self.conv = _conv(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        x = self._down(x)
        return self.conv(x) if self.conv is not None else x


class GenerativeBasis(nn.Module):
    """G's first layer: a learned ``(C, base, base)`` basis (``N(0, 1)``), scaled per channel by ``linear(z)``."""

    def __init__(self, in_features: int, channels: int, base: int) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, base, base))
        self.linear = nn.Linear(in_features, channels, bias=False)
        msr_init_(self.linear.weight)

    def forward(self, z: Tensor) -> Tensor:
        return self.basis.unsqueeze(0) * self.linear(z)[:, :, None, None]


class DiscriminativeBasis(nn.Module):
    """D's last layer: a depthwise ``base x base`` convolution (no padding) to a vector, then a linear map."""

    def __init__(self, channels: int, out_features: int, base: int) -> None:
        super().__init__()
        self.basis = _conv(channels, channels, base, groups=channels, padding=0)
        self.linear = nn.Linear(channels, out_features, bias=False)
        msr_init_(self.linear.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.basis(x).flatten(1))


# ---------------------------------------------------------------------------------------------- conditioning
class ClassEmbedding(LabelConditioning):
    """R3GAN's G conditioning: ``[z, W onehot(y)]`` with a learned ``W`` of shape ``(embedding_dim, num_classes)``
    (the reference's bias-free linear layer on the one-hot class, initialised ``N(0, 1 / num_classes)``)."""

    roles = ("generator",)

    def __init__(
        self,
        embedding_dim: int = 64,  # Size of the class embedding concatenated to z (the reference: z's size, 64).
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise UserError(f"conditioning.embedding_dim: must be a positive integer, got {embedding_dim}")
        self.embedding_dim = int(embedding_dim)
        self.weight: Optional[nn.Parameter] = None

    def bind(self, num_classes: int, role: str) -> None:
        super().bind(num_classes, role)
        self.weight = nn.Parameter(msr_init_(torch.empty(self.embedding_dim, num_classes)))

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + self.embedding_dim

    def condition_latent(self, z: Tensor, c: Tensor | None) -> Tensor:
        # Column c of W is W @ onehot(c), exactly.
        return torch.cat([z, self.weight[:, c].t().to(z.dtype)], dim=1)


class ClassProjection(LabelConditioning):
    """R3GAN's D conditioning: the score is ``<W onehot(y), f(x)>`` on D's ``embedding_dim`` features ``f(x)``,
    with a learned ``W`` of shape ``(embedding_dim, num_classes)`` initialised ``N(0, 1 / (embedding_dim *
    num_classes))`` (the reference's gain ``1 / sqrt(embedding_dim)``). Unlike ``Projection`` there is no
    unconditional score term: ``headless`` tells ``R3GANDiscriminator`` to make no score head."""

    roles = ("discriminator",)
    headless = True

    def __init__(self) -> None:
        super().__init__()
        self.weight: Optional[nn.Parameter] = None

    def bind_features(self, features_dim: int) -> None:
        weight = torch.empty(features_dim, self.num_classes)
        self.weight = nn.Parameter(msr_init_(weight, gain=1.0 / math.sqrt(features_dim)))

    def condition_output(self, features: Tensor, out: Tensor, c: Tensor | None) -> Tensor:
        return out + (features * self.weight[:, c].t().to(features.dtype)).sum(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------- networks
def _ints(values: Sequence[int], field: str) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if not out or any(v < 1 for v in out):
        raise UserError(f"{field}: must be a non-empty list of positive integers, got {list(values)}")
    return out


def _architecture(who: str, image_size: int, widths: Sequence[int], cardinalities: Sequence[int],
                  blocks: Sequence[int], expansion: int, kernel_size: int,
                  resampling_filter: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    """Checked per-stage lists and the basis size ``base = image_size / 2^(stages - 1)``."""
    widths = _ints(widths, f"{who}.widths")
    cardinalities = _ints(cardinalities, f"{who}.cardinalities")
    blocks = _ints(blocks, f"{who}.blocks")
    if not len(widths) == len(cardinalities) == len(blocks):
        raise UserError(f"{who}: widths, cardinalities and blocks need one entry per stage, got {len(widths)}, "
                        f"{len(cardinalities)} and {len(blocks)}")
    if expansion < 1:
        raise UserError(f"{who}.expansion: must be a positive integer, got {expansion}")
    for i, (w, g) in enumerate(zip(widths, cardinalities)):
        if (w * expansion) % g:
            raise UserError(f"{who}.cardinalities[{i}]: {g} groups must divide widths[{i}] * expansion = "
                            f"{w * expansion}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise UserError(f"{who}.kernel_size: must be an odd positive integer, got {kernel_size}")
    if not resampling_filter or len(resampling_filter) % 2 == 0:
        raise UserError(f"{who}.resampling_filter: needs an odd number of taps (e.g. [1, 2, 1]), got "
                        f"{list(resampling_filter)}")
    scale = 2 ** (len(widths) - 1)
    if image_size < scale or image_size % scale:
        raise UserError(f"{who}.image_size: {len(widths)} stages need a multiple of {scale} (base size times "
                        f"2^(stages - 1)), got {image_size}; change image_size or the number of widths")
    return widths, cardinalities, blocks, image_size // scale


class R3GANGenerator(Generator):
    """``(N, latent_dim)`` -> ``(N, channels, image_size, image_size)``. Defaults: the reference's CIFAR-10 preset.

    Stage 0 is the generative basis (``base x base``) and ``blocks[0]`` residual blocks of ``widths[0]``; every
    later stage upsamples 2x (a 1x1 convolution first where the width changes) and adds ``blocks[i]`` blocks.
    """

    def __init__(
        self,
        latent_dim: int = 64,                  # Size of z (the reference: 64).
        channels: int = 3,                     # Image channels.
        image_size: int = 32,                  # base * 2^(len(widths) - 1): 32 with 4 stages, 28 with 3.
        widths: Sequence[int] = CIFAR10_WIDTHS,  # Channels per stage, from the basis to the image.
        cardinalities: Sequence[int] = CIFAR10_CARDINALITIES,  # Groups of each stage's grouped convolutions.
        blocks: Sequence[int] = CIFAR10_BLOCKS,  # Residual blocks per stage.
        expansion: int = 2,                    # Inverted-bottleneck expansion of the channels.
        kernel_size: int = 3,                  # Size of the grouped convolutions.
        resampling_filter: Sequence[int] = (1, 2, 1),  # Interpolation taps (odd count), convolved with [1, 1].
        out_activation: Literal["none", "tanh"] = "none",  # The reference's G has no output nonlinearity.
        num_classes: int = 0,                  # Number of class labels, 0 = unconditional.
        conditioning: Conditioning | None = None,  # e.g. gan_lightning.nets.r3gan.ClassEmbedding (the reference's).
    ) -> None:
        super().__init__(latent_dim, image_shape(channels, image_size), num_classes, conditioning)
        if type(self.conditioning).norm is not Conditioning.norm:
            raise UserError(f"generator.conditioning: {type(self.conditioning).__name__} conditions normalization "
                            "layers, and R3GAN's generator has none; use gan_lightning.nets.r3gan.ClassEmbedding")
        widths, cardinalities, blocks, base = _architecture(
            "generator", image_size, widths, cardinalities, blocks, expansion, kernel_size, resampling_filter)
        total = sum(blocks)
        stages = []
        for i, (width, groups, count) in enumerate(zip(widths, cardinalities, blocks)):
            if i == 0:
                transition: nn.Module = GenerativeBasis(self.conditioning.latent_dim(latent_dim), width, base)
            else:
                transition = Upsample(widths[i - 1], width, resampling_filter)
            layers = [transition] + [ResidualBlock(width, groups, expansion, kernel_size, total) for _ in range(count)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        extra = self.conditioning.map_channels()
        # A condition map (e.g. SpatialCondition) joins the basis output and is mixed back to widths[0] channels.
        self.merge = _conv(widths[0] + extra, widths[0], 1) if extra else None
        self.to_image = _conv(widths[-1], channels, 1)
        self.out = make_out_activation(out_activation, "generator.out_activation")

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.stages[0][0](self.conditioning.condition_latent(z, y))
        if self.merge is not None:
            h = self.merge(self.conditioning.condition_map(h, y))
        h = self.stages[0][1:](h)
        for stage in self.stages[1:]:
            h = stage(h)
        return self.out(self.to_image(h))


class R3GANDiscriminator(Discriminator):
    """``(N, channels, image_size, image_size)`` -> ``(N,)`` scores. Defaults: the reference's CIFAR-10 preset.

    A 1x1 convolution lifts the (conditioned) input to ``widths[0]`` channels; stage ``i`` runs ``blocks[i]``
    residual blocks of ``widths[i]`` and downsamples 2x into ``widths[i + 1]``; the last stage ends with the
    discriminative basis. Its output is the score for conditionings that leave D's features alone; otherwise
    ``embedding_dim`` features, scored by ``ClassProjection`` (the reference) or by a linear head and the
    conditioning's output hook (``Projection``, ``AuxiliaryClassifier``).
    """

    def __init__(
        self,
        channels: int = 3,                     # Image channels.
        image_size: int = 32,                  # base * 2^(len(widths) - 1): 32 with 4 stages, 28 with 3.
        widths: Sequence[int] = CIFAR10_WIDTHS,  # Channels per stage, from the image to the basis.
        cardinalities: Sequence[int] = CIFAR10_CARDINALITIES,  # Groups of each stage's grouped convolutions.
        blocks: Sequence[int] = CIFAR10_BLOCKS,  # Residual blocks per stage.
        expansion: int = 2,                    # Inverted-bottleneck expansion of the channels.
        kernel_size: int = 3,                  # Size of the grouped convolutions.
        resampling_filter: Sequence[int] = (1, 2, 1),  # Interpolation taps (odd count), convolved with [1, 1].
        embedding_dim: int = 0,                # Features the conditioning scores, 0 = widths[-1] (the reference).
        num_classes: int = 0,                  # Number of class labels, 0 = unconditional.
        conditioning: Conditioning | None = None,  # e.g. gan_lightning.nets.r3gan.ClassProjection (the reference's).
    ) -> None:
        super().__init__(image_shape(channels, image_size), num_classes, conditioning)
        widths, cardinalities, blocks, base = _architecture(
            "discriminator", image_size, widths, cardinalities, blocks, expansion, kernel_size, resampling_filter)
        if embedding_dim < 0:
            raise UserError(f"discriminator.embedding_dim: must be >= 0 (0 = widths[-1]), got {embedding_dim}")
        # Does the conditioning act on D's features? Then the basis outputs features, else the score itself.
        on_features = type(self.conditioning).bind_features is not Conditioning.bind_features
        self.headless = bool(getattr(self.conditioning, "headless", False))
        out_features = (embedding_dim or widths[-1]) if on_features else 1
        total = sum(blocks)
        self.from_image = _conv(self.input_channels, widths[0], 1)
        stages = []
        for i, (width, groups, count) in enumerate(zip(widths, cardinalities, blocks)):
            layers: list[nn.Module] = [ResidualBlock(width, groups, expansion, kernel_size, total)
                                       for _ in range(count)]
            if i + 1 < len(widths):
                layers.append(Downsample(width, widths[i + 1], resampling_filter))
            else:
                layers.append(DiscriminativeBasis(width, out_features, base))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        if not on_features:
            self.score_features = True  # the basis output is the score
        elif self.headless:
            self.score_features = False
            self.features_dim = out_features
            self.conditioning.bind_features(out_features)
        else:
            self.score_features = False
            self.set_features(out_features)  # a linear score head; the conditioning binds to the features

    def features(self, x: Tensor) -> Tensor:
        h = self.from_image(x)
        for stage in self.stages:
            h = stage(h)
        return h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if not (self.score_features or self.headless):
            return super().forward(x, y)
        h = self.features(self.conditioning.condition_input(x, y))
        if self.score_features:
            return h.squeeze(1)
        # The reference's conditional D: no unconditional term, the projection is the whole score.
        return squeeze_score(self.conditioning.condition_output(h, h.new_zeros(h.shape[0], 1), y))
