"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), class-conditional as
in StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"; reference
implementation github.com/NVlabs/stylegan2-ada-pytorch, ``training/networks.py``), in plain PyTorch.

G: ``z`` (2nd-moment normalised) -> mapping network (``mapping_layers`` fully connected layers, learning rate
x0.01) -> ``w``, broadcast to one ``w`` per layer (``ws``, shape ``(N, num_ws, w_dim)``) -> synthesis network: a
learned constant at 4x4 (7x7 for 28 px), then per resolution two 3x3 weight-modulated and demodulated convolutions
(the first upsamples x2 with the [1, 3, 3, 1] low-pass filter), each with per-pixel noise scaled by a learned
strength, bias and leaky ReLU; the "skip" architecture: every resolution has a ToRGB (1x1 modulated convolution
without demodulation) whose output is added to the upsampled image of the resolution below. The output has no
final nonlinearity, as in the reference (pixels outside [-1, 1] are clamped when saved).

D: per resolution from the image down to 8x8 (14x14 for 28 px) a block of two 3x3 convolutions, the second one
low-pass filtered and downsampled x2; ``architecture: resnet`` adds a 1x1 residual path (StyleGAN2's default),
``orig`` has none (the reference's ``cifar`` config); then the epilogue: minibatch standard deviation, a 3x3
convolution, two fully connected layers.

Every weight uses the equalized learning rate (weights drawn from N(0, 1) / lr_multiplier and scaled at run time
by ``lr_multiplier / sqrt(fan_in)``); activations are leaky ReLU(0.2) times sqrt(2). Parameter names, shapes and
the forward computation follow the reference (the class label's layers sit under ``conditioning.``):
``tests/test_stylegan2.py`` pins the parameter list of the reference's ``cifar`` configuration.

Conditioning (StyleGAN2-ADA). ``LabelEmbedding`` (G): the one-hot label goes through a learned linear
embedding, is 2nd-moment normalised and concatenated to the normalised ``z`` at the mapping network's input.
``MappedProjection`` (D): the label is mapped by an 8-layer MLP to ``cmap`` and D's output vector ``out`` (of
``cmap_dim`` entries) is projected onto it, ``score = <out, cmap> / sqrt(cmap_dim)``. Both are the networks'
default when ``num_classes > 0``. G also takes any method that conditions through the latent hooks
(``LabelConcat``), D any method that uses the input or output hooks (``LabelConcat``, ``Projection``,
``AuxiliaryClassifier``).

Training-mode extras of G, drawn from torch's random stream (deterministic for a seed): per-pixel noise, style
mixing regularization (with probability ``style_mixing_prob`` the ``ws`` from a cutoff layer on come from a second
``z``), and the moving average ``w_avg`` of ``w`` (a buffer). In eval mode G uses the fixed noise buffers
(``noise_mode: const``, as the reference's ``generate.py``), so a sample is a function of its ``z`` and label.
Truncation: ``G(z, y, truncation_psi=0.7)`` pulls the ``ws`` towards ``w_avg``. Path-length regularization
(``gan_lightning.objectives.PathLength``) calls ``G.images_and_ws``.

Modulated convolutions use the reference's two execution paths: in training mode the activations are scaled
before and after one convolution with the shared weight; in eval mode one grouped ``F.conv2d`` with a weight per
sample. Mixed precision, ``conv_clamp`` aside, follows the trainer's precision setting (the reference's fp16
blocks are not reproduced); no custom CUDA kernels.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning, LabelConditioning
from gan_lightning.errors import UserError
from gan_lightning.nets.base import Discriminator, Generator, image_shape, squeeze_score
from gan_lightning.nets.layers import check_choice

LRELU_GAIN = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")
D_ARCHITECTURES = ("resnet", "orig")
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)  # the reference's resample_filter, normalised to sum 1 in 2-D


# ---------------------------------------------------------------------------------------------------- helpers
def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``x / sqrt(mean(x^2) + eps)`` over dimension 1 (pixel norm of a latent vector)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _resolutions(image_size: int, who: str) -> list[int]:
    """The synthesis resolutions, from the constant's size up to ``image_size``: 4, 8, ... for powers of two
    from 8 to 1024, and 7, 14, 28 for 28 px (MNIST's own size)."""
    if image_size == 28:
        return [7, 14, 28]
    if image_size < 8 or image_size > 1024 or image_size & (image_size - 1):
        raise UserError(f"{who}.image_size: StyleGAN2 takes 28 or a power of two from 8 to 1024, got {image_size}")
    return [2 ** i for i in range(2, int(math.log2(image_size)) + 1)]


def _channels(res: int, channel_base: int, channel_max: int, who: str) -> int:
    ch = min(channel_base // res, channel_max)
    if ch < 1:
        raise UserError(f"{who}.channel_base: {channel_base} gives no channels at {res}x{res}; raise it to at "
                        f"least {res}")
    return ch


def fir_filter() -> Tensor:
    """The [1, 3, 3, 1] low-pass filter of the reference as a 4x4 kernel summing to 1."""
    taps = torch.tensor(FIR_TAPS)
    f = torch.outer(taps, taps)
    return f / f.sum()


def _blur(x: Tensor, f: Tensor, pad: int, gain: float = 1.0, down: int = 1) -> Tensor:
    """Zero-pad by ``pad`` on every side, convolve each channel with the 2-D filter ``f`` times ``gain``, keep
    every ``down``-th pixel (the reference's ``upfirdn2d`` without upsampling; ``f`` is symmetric, so correlation
    and convolution agree)."""
    c = x.shape[1]
    if pad:
        x = F.pad(x, [pad, pad, pad, pad])
    weight = (f * gain).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """x2 upsampling: zeros between pixels, then the low-pass filter with gain 4 (``(N, C, H, W)`` ->
    ``(N, C, 2H, 2W)``)."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
    x = F.pad(x, [2, 1, 2, 1])
    return _blur(x, f, 0, gain=4.0)


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """Low-pass filter, then keep every second pixel (``(N, C, H, W)`` -> ``(N, C, H/2, W/2)``)."""
    return _blur(x, f, 1, down=2)


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor, up: int = 1, down: int = 1, padding: int = 0,
                    groups: int = 1) -> Tensor:
    """A convolution with weight ``w`` ``(O, I/groups, k, k)``, optionally upsampling x2 (a stride-2 transposed
    convolution, then the low-pass filter) or downsampling x2 (the filter, then a stride-2 convolution), placed
    as the reference's ``conv2d_resample`` places them (its padding arithmetic for the 4-tap filter)."""
    k = w.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    if down == 2 and up == 1:
        if k == 1:  # filter and subsample first, then the 1x1 convolution
            return F.conv2d(_blur(x, f, 1, down=2), w, groups=groups)
        return F.conv2d(_blur(x, f, padding + 1), w, stride=2, groups=groups)
    if up == 2 and down == 1 and k == 3 and padding == 1:
        out_ch, in_per_group = w.shape[0], w.shape[1]
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_per_group, k, k).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_ch // groups, k, k)
        return _blur(F.conv_transpose2d(x, wt, stride=2, groups=groups), f, 1, gain=4.0)
    raise ValueError(f"conv2d_resample: unsupported up={up}, down={down}, kernel={k}, padding={padding}")


def bias_act(x: Tensor, b: Optional[Tensor], act: str = "linear", gain: float = 1.0,
             clamp: Optional[float] = None) -> Tensor:
    """Add the bias (per channel), apply the activation, multiply by ``gain``, clamp to ``+-clamp``."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.dim() - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, f: Tensor, noise: Optional[Tensor] = None,
                     up: int = 1, padding: int = 0, demodulate: bool = True, fused: bool = True) -> Tensor:
    """StyleGAN2's modulated convolution: the weight ``(O, I, k, k)`` scaled per sample by ``styles`` ``(N, I)``
    and, with ``demodulate``, each output channel renormalised to unit expected norm; then ``noise`` is added.
    ``fused``: one grouped convolution with a weight per sample; otherwise scale the activations before and after
    a convolution with the shared weight (the same values)."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:  # pre-normalise against fp16 overflow, as the reference
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # (N, O, I, k, k)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # (N, O)
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f, up=up, padding=padding)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x
    if demodulate:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


# ---------------------------------------------------------------------------------------------------- layers
class FullyConnectedLayer(nn.Module):
    """A linear layer with the equalized learning rate: ``weight`` drawn from N(0, 1) / ``lr_multiplier``, used
    as ``weight * lr_multiplier / sqrt(in_features)``; ``bias`` (initialised to ``bias_init``) used times
    ``lr_multiplier``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, self.activation, gain=LRELU_GAIN if self.activation == "lrelu" else 1.0)


class Conv2dLayer(nn.Module):
    """A convolution with the equalized learning rate (weight scaled by ``1/sqrt(in_channels * k^2)``), optional
    x2 downsampling, bias, activation (leaky ReLU times sqrt(2), or linear) and clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: int = 1, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = LRELU_GAIN if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """``num_layers`` fully connected layers with leaky ReLU and learning rate x ``lr_multiplier``, mapping the
    prepared input ``(N, in_features)`` to ``w`` ``(N, w_dim)``. With ``w_avg_beta`` it tracks the moving average
    ``w_avg`` (a buffer) of ``w`` in training mode."""

    def __init__(self, in_features: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 w_avg_beta: Optional[float] = 0.995) -> None:
        super().__init__()
        if num_layers < 1:
            raise UserError(f"mapping_layers: must be >= 1, got {num_layers}")
        self.num_layers, self.w_avg_beta = int(num_layers), w_avg_beta
        features = [in_features] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                                          lr_multiplier=lr_multiplier))
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def layers(self, x: Tensor) -> Tensor:
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x

    def forward(self, x: Tensor, update_w_avg: bool = True) -> Tensor:
        x = self.layers(x)
        if self.w_avg_beta is not None and self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return x


class LabelMapping(MappingNetwork):
    """D's label mapping (the reference's ``MappingNetwork`` with ``z_dim = 0``): one-hot label -> linear
    embedding -> 2nd-moment normalisation -> ``num_layers`` layers -> ``cmap``."""

    def __init__(self, num_classes: int, cmap_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01) -> None:
        super().__init__(cmap_dim, cmap_dim, num_layers, lr_multiplier, w_avg_beta=None)
        self.num_classes = int(num_classes)
        self.embed = FullyConnectedLayer(num_classes, cmap_dim)

    def forward(self, c: Tensor, update_w_avg: bool = False) -> Tensor:  # type: ignore[override]
        one_hot = F.one_hot(c, self.num_classes).to(self.embed.weight.dtype)
        return self.layers(normalize_2nd_moment(self.embed(one_hot)))


# ---------------------------------------------------------------------------------------------------- conditioning
class LabelEmbedding(LabelConditioning):
    """StyleGAN2-ADA's label input of G: the one-hot label through a learned linear embedding (equalized learning
    rate) of ``embed_features`` entries (0 = ``w_dim``), 2nd-moment normalised and concatenated to the normalised
    ``z`` at the mapping network's input. The generator calls ``bind_features(w_dim)`` once to size it."""

    roles = ("generator",)

    def __init__(
        self,
        embed_features: int = 0,  # Size of the label embedding, 0 = w_dim (the reference's default).
    ) -> None:
        super().__init__()
        if embed_features < 0:
            raise UserError(f"generator.conditioning.embed_features: must be >= 0 (0 = w_dim), got {embed_features}")
        self.embed_features = int(embed_features)
        self.embed: Optional[FullyConnectedLayer] = None
        self.dim = 0

    def bind_features(self, features_dim: int) -> None:
        self.dim = self.embed_features or int(features_dim)
        self.embed = FullyConnectedLayer(self.num_classes, self.dim)

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + self.dim

    def condition_latent(self, z: Tensor, c: Tensor | None) -> Tensor:
        code = self.embed(F.one_hot(c, self.num_classes).to(z.dtype))
        return torch.cat([z, normalize_2nd_moment(code)], dim=1)


class MappedProjection(LabelConditioning):
    """StyleGAN2-ADA's conditional D: the label is mapped by a ``mapping_layers``-layer MLP (learning rate x0.01)
    to ``cmap`` of ``cmap_dim`` entries (0 = D's channels at its last resolution), D's last layer outputs a
    vector ``out`` of the same size (``score_dim``) instead of one score, and ``score = <out, cmap> /
    sqrt(cmap_dim)``."""

    roles = ("discriminator",)

    def __init__(
        self,
        cmap_dim: int = 0,        # Size of the mapped label and of D's output vector, 0 = D's last channels.
        mapping_layers: int = 8,  # Layers of the label mapping (the reference's default: 8).
    ) -> None:
        super().__init__()
        if cmap_dim < 0:
            raise UserError(f"discriminator.conditioning.cmap_dim: must be >= 0 (0 = D's channels), got {cmap_dim}")
        if mapping_layers < 1:
            raise UserError(f"discriminator.conditioning.mapping_layers: must be >= 1, got {mapping_layers}")
        self.cmap_dim, self.mapping_layers = int(cmap_dim), int(mapping_layers)
        self.score_dim = 0  # set by bind_features: the size of D's output vector
        self.mapping: Optional[LabelMapping] = None

    def bind_features(self, features_dim: int) -> None:
        self.score_dim = self.cmap_dim or int(features_dim)
        self.mapping = LabelMapping(self.num_classes, self.score_dim, self.mapping_layers)

    def condition_output(self, features: Tensor, out: Tensor, c: Tensor | None) -> Tensor:
        cmap = self.mapping(c).to(out.dtype)
        return (out * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.score_dim))


def _check_generator_conditioning(conditioning: Conditioning) -> None:
    """StyleGAN2's G has no normalization layers and no feature map to concatenate to: the condition enters at
    the mapping network's input (``latent_dim``/``condition_latent``) or not at all."""
    for hook in ("norm", "map_channels", "condition_map"):
        if getattr(type(conditioning), hook) is not getattr(Conditioning, hook):
            raise UserError(
                f"generator.conditioning: {type(conditioning).__name__} conditions G through its {hook} hook, which "
                "StyleGAN2Generator does not have; use gan_lightning.nets.stylegan2.LabelEmbedding (or LabelConcat)"
            )


# ---------------------------------------------------------------------------------------------------- generator
class SynthesisLayer(nn.Module):
    """A modulated 3x3 convolution (optionally upsampling x2), per-pixel noise times a learned strength, bias,
    leaky ReLU times sqrt(2), clamp. ``affine`` maps ``w`` to the styles (bias initialised to 1)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str, fused: bool, gain: float = 1.0) -> Tensor:
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, self.resample_filter, noise=noise, up=self.up, padding=1,
                             fused=fused)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, "lrelu", gain=LRELU_GAIN * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """A modulated 1x1 convolution to image channels, without demodulation (styles scaled by
    ``1/sqrt(in_channels)``), plus bias and clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor, w: Tensor, fused: bool) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, self.resample_filter, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture synthesis network: the constant (first block) or an upsampling
    modulated convolution, a second one, and a ToRGB added to the upsampled image so far."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_conv, self.num_torgb = 0, 1
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Optional[Tensor], img: Optional[Tensor], ws: Tensor, noise_mode: str,
                fused: bool) -> tuple[Tensor, Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, next(w_iter), noise_mode, fused)
        x = self.conv1(x, next(w_iter), noise_mode, fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused).to(torch.float32)
        return x, (img + y if img is not None else y)


class SynthesisNetwork(nn.Module):
    """``ws`` ``(N, num_ws, w_dim)`` -> images; blocks ``b{res}``. Block ``b{res}`` reads its convolutions' ``ws``
    and, for its ToRGB, the next one (shared with the next block's first convolution), as in the reference."""

    def __init__(self, w_dim: int, image_size: int, img_channels: int, channel_base: int, channel_max: int,
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.resolutions = _resolutions(image_size, "generator")
        self.num_ws = 0
        for i, res in enumerate(self.resolutions):
            in_ch = _channels(self.resolutions[i - 1], channel_base, channel_max, "generator") if i else 0
            out_ch = _channels(res, channel_base, channel_max, "generator")
            block = SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, conv_clamp=conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last ToRGB's

    def forward(self, ws: Tensor, noise_mode: str = "random", fused: bool = False) -> Tensor:
        x = img = None
        w_idx = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode, fused)
            w_idx += block.num_conv
        return img


class StyleGAN2Generator(Generator):
    """``(N, latent_dim)`` (and labels ``(N,)``) -> ``(N, channels, image_size, image_size)``, the skip-architecture
    StyleGAN2 generator. Reference ``cifar`` config: ``latent_dim = w_dim = 512``, ``mapping_layers: 2``,
    ``channel_base: 32768``, ``channel_max: 512``, ``conv_clamp: 256``, ``style_mixing_prob: 0``.

    ``forward(z, y, truncation_psi=1, truncation_cutoff=None, noise_mode=None)``: ``truncation_psi < 1`` moves
    the ``ws`` (the first ``truncation_cutoff`` of them, or all) towards ``w_avg`` (``psi = 0``: every ``z``
    gives the image of ``w_avg``); ``noise_mode`` is ``random`` (per-pixel noise from torch's stream), ``const``
    (the fixed noise buffers) or ``none``; by default ``random`` in training mode and ``const`` in eval mode.
    """

    def __init__(
        self,
        latent_dim: int = 512,             # Size of z.
        channels: int = 3,                 # Image channels.
        image_size: int = 32,              # 28, or a power of two from 8 to 1024.
        w_dim: int = 512,                  # Size of w.
        mapping_layers: int = 8,           # Layers of the mapping network (reference cifar config: 2).
        mapping_lr_multiplier: float = 0.01,  # Learning-rate multiplier of the mapping layers.
        channel_base: int = 32768,         # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max: int = 512,            # Most channels of any layer.
        conv_clamp: Optional[float] = None,  # Clamp conv outputs to +-this, None = off (reference training: 256).
        style_mixing_prob: float = 0.9,    # Probability of style mixing per training batch (reference cifar: 0).
        w_avg_beta: float = 0.995,         # Decay of the moving average of w used by truncation.
        num_classes: int = 0,              # Number of class labels, 0 = unconditional.
        conditioning: Conditioning | None = None,  # Default when num_classes > 0: LabelEmbedding (StyleGAN2-ADA).
    ) -> None:
        if conditioning is None and num_classes > 0:
            conditioning = LabelEmbedding()
        super().__init__(latent_dim, image_shape(channels, image_size), num_classes, conditioning)
        _check_generator_conditioning(self.conditioning)
        if w_dim < 1:
            raise UserError(f"generator.w_dim: must be a positive integer, got {w_dim}")
        if not 0.0 <= style_mixing_prob <= 1.0:
            raise UserError(f"generator.style_mixing_prob: must be in [0, 1], got {style_mixing_prob}")
        if not 0.0 <= w_avg_beta < 1.0:
            raise UserError(f"generator.w_avg_beta: must be in [0, 1), got {w_avg_beta}")
        if conv_clamp is not None and conv_clamp <= 0:
            raise UserError(f"generator.conv_clamp: must be > 0 or null (off), got {conv_clamp}")
        self.w_dim = int(w_dim)
        self.style_mixing_prob = float(style_mixing_prob)
        self.conditioning.bind_features(self.w_dim)  # sizes LabelEmbedding's embedding (no-op for other methods)
        self.synthesis = SynthesisNetwork(self.w_dim, image_size, channels, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(self.conditioning.latent_dim(self.latent_dim), self.w_dim, mapping_layers,
                                      mapping_lr_multiplier, w_avg_beta)

    def map(self, z: Tensor, y: Optional[Tensor] = None, truncation_psi: float = 1.0,
            truncation_cutoff: Optional[int] = None, update_w_avg: bool = True) -> Tensor:
        """``ws`` ``(N, num_ws, w_dim)`` of noise ``z`` and labels ``y`` (the same ``w`` for every layer),
        truncated towards ``w_avg`` when ``truncation_psi != 1``. Updates ``w_avg`` in training mode."""
        x = normalize_2nd_moment(z)
        if self.conditioning.conditional:
            x = self.conditioning.condition_latent(x, y)
        w = self.mapping(x, update_w_avg=update_w_avg)
        ws = w.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            avg = self.mapping.w_avg
            if truncation_cutoff is None:
                ws = avg.lerp(ws, truncation_psi)
            else:
                ws = torch.cat([avg.lerp(ws[:, :truncation_cutoff], truncation_psi), ws[:, truncation_cutoff:]], dim=1)
        return ws

    def _mix(self, z: Tensor, y: Optional[Tensor], ws: Tensor) -> Tensor:
        """Style mixing regularization: with probability ``style_mixing_prob`` the ``ws`` from a cutoff drawn
        uniformly in ``[1, num_ws)`` on are those of a fresh ``z`` (one draw per batch, as the reference; no
        host synchronisation: the choice stays on the device)."""
        cutoff = torch.randint(1, self.num_ws, [], device=ws.device)
        mix = torch.rand([], device=ws.device) < self.style_mixing_prob
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, self.num_ws))
        other = self.map(torch.randn_like(z), y, update_w_avg=False)
        take = (torch.arange(self.num_ws, device=ws.device) >= cutoff).view(1, -1, 1)
        return torch.where(take, other, ws)

    def images_and_ws(self, z: Tensor, y: Optional[Tensor] = None, truncation_psi: float = 1.0,
                      truncation_cutoff: Optional[int] = None,
                      noise_mode: Optional[str] = None) -> tuple[Tensor, Tensor]:
        """The images and the ``ws`` ``(N, num_ws, w_dim)`` that made them (after style mixing in training
        mode): what path-length regularization differentiates."""
        if noise_mode is None:
            noise_mode = "random" if self.training else "const"
        if noise_mode not in NOISE_MODES:
            raise UserError(f"noise_mode: must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = self.map(z, y, truncation_psi, truncation_cutoff)
        if self.training and self.style_mixing_prob > 0:
            ws = self._mix(z, y, ws)
        # The reference's choice: per-sample weights in eval mode, scaled activations in training mode.
        return self.synthesis(ws, noise_mode=noise_mode, fused=not self.training), ws

    def forward(self, z: Tensor, y: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, noise_mode: Optional[str] = None) -> Tensor:
        return self.images_and_ws(z, y, truncation_psi, truncation_cutoff, noise_mode)[0]


# ---------------------------------------------------------------------------------------------------- discriminator
class DiscriminatorBlock(nn.Module):
    """One resolution of D: ``fromrgb`` (1x1, first block only), a 3x3 convolution, a 3x3 convolution that
    downsamples x2; ``resnet`` adds a 1x1 downsampling skip without bias, both paths scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 architecture: str, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.in_channels, self.architecture = in_channels, architecture
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Optional[Tensor], img: Tensor) -> Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return self.conv1(self.conv0(x))


class MinibatchStdLayer(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, as in StyleGAN2): the batch is split into groups of
    ``group_size`` (or fewer when the batch is smaller); for each group the standard deviation of every feature
    over the group, averaged over channels (in ``num_channels`` slices) and pixels, is appended as constant
    feature maps."""

    def __init__(self, group_size: int, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            raise UserError(f"discriminator.mbstd_group_size: a batch of {n} samples does not split into groups of "
                            f"{g}; use a batch size divisible by {g}, or a group size that divides it")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1)
        y = y.repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """D's last resolution: minibatch standard deviation, a 3x3 convolution, a fully connected layer (the
    features), and ``out``: one score, or a vector of ``out_features`` for a projection on the mapped label."""

    def __init__(self, in_channels: int, resolution: int, out_features: int, mbstd_group_size: int,
                 mbstd_num_channels: int, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, out_features)

    def features(self, x: Tensor) -> Tensor:
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.fc(self.conv(x).flatten(1))


class StyleGAN2Discriminator(Discriminator):
    """``(N, channels, image_size, image_size)`` (and labels) -> ``(N,)`` scores. Reference ``cifar`` config:
    ``architecture: orig``, ``channel_base: 32768``, ``channel_max: 512``, ``mbstd_group_size: 32``,
    ``conv_clamp: 256``.

    D calls the conditioning hooks itself (it overrides ``forward``): ``condition_input`` on the image,
    ``bind_features``/``condition_output`` on the epilogue's features; a method with a ``score_dim`` (like
    ``MappedProjection``) gets D's output vector of that size to project, any other a single score.
    """

    def __init__(
        self,
        channels: int = 3,                 # Image channels.
        image_size: int = 32,              # 28, or a power of two from 8 to 1024.
        architecture: Literal["resnet", "orig"] = "resnet",  # resnet: residual (StyleGAN2); orig: none (cifar).
        channel_base: int = 32768,         # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max: int = 512,            # Most channels of any layer.
        mbstd_group_size: int = 4,         # Group size of the minibatch standard deviation (reference cifar: 32).
        mbstd_num_channels: int = 1,       # Feature maps it appends, 0 = off.
        conv_clamp: Optional[float] = None,  # Clamp conv outputs to +-this, None = off (reference training: 256).
        num_classes: int = 0,              # Number of class labels, 0 = unconditional.
        conditioning: Conditioning | None = None,  # Default when num_classes > 0: MappedProjection (StyleGAN2-ADA).
    ) -> None:
        if conditioning is None and num_classes > 0:
            conditioning = MappedProjection()
        super().__init__(image_shape(channels, image_size), num_classes, conditioning)
        check_choice(architecture, D_ARCHITECTURES, "discriminator.architecture")
        if mbstd_group_size < 1 or mbstd_num_channels < 0:
            raise UserError(f"discriminator.mbstd_group_size must be >= 1 and mbstd_num_channels >= 0, got "
                            f"{mbstd_group_size} and {mbstd_num_channels}")
        if conv_clamp is not None and conv_clamp <= 0:
            raise UserError(f"discriminator.conv_clamp: must be > 0 or null (off), got {conv_clamp}")
        resolutions = _resolutions(image_size, "discriminator")
        self.architecture = architecture
        self.block_resolutions = resolutions[::-1][:-1]
        self.start = resolutions[0]
        ch = {res: _channels(res, channel_base, channel_max, "discriminator") for res in resolutions}
        for res in self.block_resolutions:
            in_ch = ch[res] if res < image_size else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch[res], ch[res // 2], self.input_channels,
                                                        architecture, conv_clamp))
        self.features_dim = ch[self.start]
        self.conditioning.bind_features(self.features_dim)
        out_features = int(getattr(self.conditioning, "score_dim", 0) or 1)
        setattr(self, f"b{self.start}", DiscriminatorEpilogue(ch[self.start], self.start, out_features,
                                                              mbstd_group_size, mbstd_num_channels, conv_clamp))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        img = self.conditioning.condition_input(x, y)
        h = None
        for res in self.block_resolutions:
            h = getattr(self, f"b{res}")(h, img)
        epilogue = getattr(self, f"b{self.start}")
        features = epilogue.features(h)
        return squeeze_score(self.conditioning.condition_output(features, epilogue.out(features), y))
