"""How a network receives the condition (SPEC §2): pluggable modules, not forks of the networks.

Every network in ``gan_lightning.nets`` takes ``conditioning: Conditioning | None`` and calls the same hooks at
the same places; a method overrides only the hooks it needs:

===============================  ======================================  ==================================
hook                             where the network calls it              default (no condition)
===============================  ======================================  ==================================
``latent_dim(d)``                size of G's input vector                ``d``
``condition_latent(z, y)``       G's input                               ``z``
``norm(c, dims)``                every normalization layer of G          batch norm that ignores ``y``
``map_channels()``               extra channels of G's first feature map ``0``
``condition_map(h, y)``          G's first feature map                   ``h``
``input_channels(c)``            channels of D's input                   ``c``
``condition_input(x, y)``        D's input                               ``x``
``bind_features(f)``             once, with D's pooled feature size      nothing
``condition_output(f, o, y)``    D's score ``o`` ``(N, 1)`` from ``f``   ``o``
===============================  ======================================  ==================================

The owning network calls ``bind(num_classes, role)`` once in its ``__init__``, so a YAML names only the method
and its own options; ``num_classes`` comes from the data. ``condition`` tells the system what the condition is:
``"label"`` (int64 class labels ``(N,)``), ``"spatial"`` (a map derived from the real image, see
``SpatialCondition``) or ``"none"``.

A method may also give D an auxiliary classifier (``AuxiliaryClassifier``): then ``condition_output`` returns
``(score, class_logits)`` and the system adds the class loss to both phases with weight ``aux_weight``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_lightning.errors import UserError

ROLES = ("generator", "discriminator")


class CondNorm(nn.Module):
    """A normalization layer called as ``norm(h, y)``."""

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PlainNorm(CondNorm):
    """Batch norm with learned affine parameters; ignores the condition."""

    def __init__(self, num_features: int, dims: int = 2) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features) if dims == 2 else nn.BatchNorm1d(num_features)

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        return self.bn(h)


class Conditioning(nn.Module):
    """No condition: the hooks leave everything as it is. Subclass to add a method."""

    condition: str = "none"      # none | label | spatial
    roles: tuple[str, ...] = ROLES  # the networks this method can condition
    num_classes: int = 0
    aux_weight: float = 0.0      # weight of an auxiliary classification loss (AuxiliaryClassifier)

    def bind(self, num_classes: int, role: str) -> None:
        """Called once by the owning network with the number of classes (0 = unconditional) and its role."""
        if role not in self.roles:
            raise UserError(
                f"{role}.conditioning: {type(self).__name__} conditions only the {' and '.join(self.roles)}; "
                f"pick another method for the {role}"
            )
        if self.condition == "label" and num_classes < 1:
            raise UserError(
                f"{role}.conditioning: {type(self).__name__} needs class labels; use data with labels: class"
            )
        self.num_classes, self.role = int(num_classes), role

    # generator side
    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim

    def condition_latent(self, z: Tensor, y: Tensor | None) -> Tensor:
        return z

    def norm(self, num_features: int, dims: int = 2) -> CondNorm:
        return PlainNorm(num_features, dims)

    def map_channels(self) -> int:
        return 0

    def condition_map(self, h: Tensor, y: Tensor | None) -> Tensor:
        return h

    # discriminator side
    def input_channels(self, channels: int) -> int:
        return channels

    def condition_input(self, x: Tensor, y: Tensor | None) -> Tensor:
        return x

    def bind_features(self, features_dim: int) -> None:
        pass

    def condition_output(self, features: Tensor, out: Tensor, y: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
        return out


def check_labels(y: Tensor, num_classes: int, where: str) -> None:
    """Refuse labels outside ``[0, num_classes)`` with a clear message (one host sync; not for the hot loop)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(f"{where}: labels must be in [0, {num_classes}), got values from {int(y.min())} to {int(y.max())}")


class _LabelCode(Conditioning):
    """Shared by the label methods: a fixed one-hot code or a learned embedding of the label."""

    condition = "label"

    def __init__(self, embedding: str = "one_hot", embedding_dim: int = 0) -> None:
        super().__init__()
        if embedding not in ("one_hot", "learned"):
            raise UserError(f"conditioning.embedding: must be 'one_hot' or 'learned', got {embedding!r}")
        self.embedding_kind, self.embedding_dim = embedding, int(embedding_dim)
        self.embed: nn.Module | None = None
        self.dim = 0

    def bind(self, num_classes: int, role: str) -> None:
        super().bind(num_classes, role)
        self.dim = num_classes if self.embedding_kind == "one_hot" else (self.embedding_dim or num_classes)
        if self.embedding_kind == "learned":
            self.embed = nn.Embedding(num_classes, self.dim)

    def code(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        if self.embed is None:
            return F.one_hot(y, self.num_classes).to(dtype)
        return self.embed(y).to(dtype)


class LabelConcat(_LabelCode):
    """Mirza & Osindero 2014: the label, one-hot or as a learned embedding, is concatenated to G's noise and to
    D's input (as constant feature maps for images)."""

    def __init__(
        self,
        embedding: str = "one_hot",  # one_hot: fixed one-hot vector; learned: a trained nn.Embedding.
        embedding_dim: int = 0,      # Size of a learned embedding, 0 = num_classes.
    ) -> None:
        super().__init__(embedding, embedding_dim)

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + self.dim

    def condition_latent(self, z: Tensor, y: Tensor | None) -> Tensor:
        return torch.cat([z, self.code(y, z.dtype)], dim=1)

    def input_channels(self, channels: int) -> int:
        return channels + self.dim

    def condition_input(self, x: Tensor, y: Tensor | None) -> Tensor:
        c = self.code(y, x.dtype)
        if x.dim() > 2:
            c = c[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return torch.cat([x, c], dim=1)


class CBN(CondNorm):
    """Batch norm without its own affine parameters, then a class-dependent scale and shift."""

    def __init__(self, num_features: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.dim() - 2)
        return self.gamma(y).view(shape) * self.bn(h) + self.beta(y).view(shape)


class ConditionalBatchNorm(Conditioning):
    """Conditional batch norm in G (de Vries et al. 2017; Miyato & Koyama 2018): every normalization layer of
    G gets a class-dependent scale and shift. Optionally the label is also concatenated to the noise."""

    condition = "label"
    roles = ("generator",)

    def __init__(
        self,
        concat_latent: str = "none",  # none | one_hot: also concatenate a one-hot label to z.
    ) -> None:
        super().__init__()
        if concat_latent not in ("none", "one_hot"):
            raise UserError(f"conditioning.concat_latent: must be 'none' or 'one_hot', got {concat_latent!r}")
        self.concat_latent = concat_latent

    def norm(self, num_features: int, dims: int = 2) -> CondNorm:
        return CBN(num_features, self.num_classes, dims)

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + (self.num_classes if self.concat_latent == "one_hot" else 0)

    def condition_latent(self, z: Tensor, y: Tensor | None) -> Tensor:
        if self.concat_latent == "none":
            return z
        return torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)


class Projection(Conditioning):
    """Projection discriminator (Miyato & Koyama 2018): ``D(x, y) = psi(f(x)) + <embed(y), f(x)>`` on D's
    pooled features ``f(x)``. With ``aux_weight > 0`` D also gets an AC-GAN class head on ``f(x)`` whose
    cross-entropy enters both phases (as ``AuxiliaryClassifier``), which sharpens the class of the samples."""

    condition = "label"
    roles = ("discriminator",)

    def __init__(
        self,
        norm: str = "spectral",   # spectral: spectral norm on the class embedding (as in SNGAN); none.
        aux_weight: float = 0.0,  # Weight of an auxiliary class loss on D's features, 0 = none.
    ) -> None:
        super().__init__()
        if norm not in ("spectral", "none"):
            raise UserError(f"conditioning.norm: must be 'spectral' or 'none', got {norm!r}")
        if aux_weight < 0:
            raise UserError(f"conditioning.aux_weight: must be >= 0, got {aux_weight}")
        self.norm_kind = norm
        self.aux_weight = float(aux_weight)
        self.embed: nn.Module | None = None
        self.classifier: nn.Module | None = None

    def bind_features(self, features_dim: int) -> None:
        embed = nn.Embedding(self.num_classes, features_dim)
        nn.init.xavier_uniform_(embed.weight)
        self.embed = spectral_norm(embed) if self.norm_kind == "spectral" else embed
        if self.aux_weight > 0:
            self.classifier = nn.Linear(features_dim, self.num_classes)

    def condition_output(self, features: Tensor, out: Tensor, y: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
        out = out + (self.embed(y) * features).sum(dim=1, keepdim=True)
        return out if self.classifier is None else (out, self.classifier(features))


class AuxiliaryClassifier(Conditioning):
    """AC-GAN (Odena et al. 2017): D also predicts the class from its features. The system adds
    ``aux_weight * cross_entropy`` on real and fake samples to D's loss and on fake samples to G's loss. D's
    real/fake score does not see the label."""

    condition = "label"
    roles = ("discriminator",)

    def __init__(
        self,
        aux_weight: float = 1.0,  # Weight of the class loss in both phases.
    ) -> None:
        super().__init__()
        if aux_weight < 0:
            raise UserError(f"conditioning.aux_weight: must be >= 0, got {aux_weight}")
        self.aux_weight = float(aux_weight)
        self.classifier: nn.Module | None = None

    def bind_features(self, features_dim: int) -> None:
        self.classifier = nn.Linear(features_dim, self.num_classes)

    def condition_output(self, features: Tensor, out: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        return out, self.classifier(features)


SPATIAL_KINDS = ("downsample", "mask")


class SpatialCondition(Conditioning):
    """Spatial conditioning: a map derived from the real image is the condition, concatenated as channels to
    G's first feature map and to D's input (pix2pix-style pairing; Isola et al. 2017).

    ``kind: downsample`` — the image average-pooled to ``size x size`` (G must draw a digit that matches a
    low-resolution sketch); ``kind: mask`` — the binary mask ``image > threshold`` at full resolution. Real
    samples are paired with their own map; fakes are generated from the maps of the real batch, so D learns
    whether image and map belong together. ``condition_from(x)`` makes the map, ``(N, 1, s, s)`` in [-1, 1].
    """

    condition = "spatial"

    def __init__(
        self,
        kind: str = "downsample",  # downsample | mask.
        size: int = 7,             # Side of the downsampled map (kind: downsample).
        threshold: float = 0.0,    # Mask threshold on images in [-1, 1] (kind: mask).
    ) -> None:
        super().__init__()
        if kind not in SPATIAL_KINDS:
            raise UserError(f"conditioning.kind: must be one of {SPATIAL_KINDS}, got {kind!r}")
        if size < 1:
            raise UserError(f"conditioning.size: must be >= 1, got {size}")
        self.kind, self.size, self.threshold = kind, int(size), float(threshold)

    def condition_from(self, x: Tensor) -> Tensor:
        """The condition map of images ``x`` ``(N, C, H, W)`` in [-1, 1]: ``(N, 1, s, s)`` in [-1, 1]."""
        gray = x.mean(dim=1, keepdim=True)
        if self.kind == "mask":
            return torch.where(gray > self.threshold, 1.0, -1.0).to(x.dtype)
        return F.adaptive_avg_pool2d(gray, self.size)

    @staticmethod
    def _fit(c: Tensor, size: tuple[int, int]) -> Tensor:
        return c if tuple(c.shape[-2:]) == tuple(size) else F.interpolate(c, size=size, mode="nearest")

    def map_channels(self) -> int:
        return 1

    def condition_map(self, h: Tensor, y: Tensor | None) -> Tensor:
        return torch.cat([h, self._fit(y, h.shape[-2:]).to(h.dtype)], dim=1)

    def input_channels(self, channels: int) -> int:
        return channels + 1

    def condition_input(self, x: Tensor, y: Tensor | None) -> Tensor:
        return torch.cat([x, self._fit(y, x.shape[-2:]).to(x.dtype)], dim=1)
