"""The contracts every network keeps, and the discriminator template.

A GAN system (``gan_lightning.training.system.GAN``) only relies on these attributes and ``forward`` signatures, so any
subclass named in a YAML by ``class_path`` plugs in without touching the library. ``Discriminator`` also
implements ``forward`` around the conditioning hooks: an architecture supplies only its feature extractor
(``features``) and that extractor's size (``set_features``).
"""

from __future__ import annotations

import math
from typing import Callable

from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning
from gan_lightning.errors import UserError
from gan_lightning.nets.layers import maybe_sn


def _bind(conditioning: Conditioning | None, num_classes: int, role: str) -> Conditioning:
    if num_classes < 0:
        raise UserError(f"{role}.num_classes must be >= 0 (0 = unconditional), got {num_classes}")
    if conditioning is None:
        if num_classes > 0:
            raise UserError(
                f"{role}.conditioning: the data has {num_classes} classes but the {role} has no conditioning "
                "method; add one (e.g. class_path: gan_lightning.conditioning.LabelConcat) or use data.labels: none"
            )
        conditioning = Conditioning()
    conditioning.bind(num_classes, role)
    return conditioning


class Generator(nn.Module):
    """Maps noise ``z`` of shape ``(N, latent_dim)`` (and labels ``y`` of shape ``(N,)`` when conditional) to
    samples of shape ``(N, *out_shape)``: images ``(N, C, H, W)`` in [-1, 1] or vectors ``(N, D)`` in data space.
    """

    latent_dim: int
    out_shape: tuple[int, ...]
    num_classes: int  # 0 = unconditional.

    def __init__(
        self,
        latent_dim: int,
        out_shape: tuple[int, ...],
        num_classes: int = 0,
        conditioning: Conditioning | None = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise UserError(f"generator.latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.num_classes = int(num_classes)
        self.conditioning = _bind(conditioning, num_classes, "generator")

    @property
    def condition(self) -> str:
        """What the generator is conditioned on, its conditioning's ``kind`` (none, label, spatial, ...)."""
        return self.conditioning.kind

    @property
    def is_image(self) -> bool:
        return len(self.out_shape) == 3

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Discriminator(nn.Module):
    """Maps samples ``x`` of shape ``(N, *in_shape)`` (and labels ``y`` when conditional) to one real-valued score
    per sample, shape ``(N,)``: a logit for the cross-entropy losses, a critic value for hinge/Wasserstein.

    A template: an architecture implements ``features`` (its conditioned input ``(N, *input_shape)`` to features
    ``(N, F)``) and calls ``self.set_features(F, norm)`` in its ``__init__``, once its layers exist. ``forward``
    then conditions the input, scores the features with a linear head and hands both to the conditioning module
    (a projection term, a class head). A subclass may override ``forward`` instead and use none of this.
    """

    in_shape: tuple[int, ...]
    num_classes: int  # 0 = unconditional.
    features_dim: int | None  # F, the size of ``features``' output; None until ``set_features``.

    def __init__(
        self, in_shape: tuple[int, ...], num_classes: int = 0, conditioning: Conditioning | None = None
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.conditioning = _bind(conditioning, num_classes, "discriminator")
        self.features_dim = None

    @property
    def condition(self) -> str:
        """What the discriminator is conditioned on, its conditioning's ``kind`` (none, label, spatial, ...)."""
        return self.conditioning.kind

    @property
    def input_channels(self) -> int:
        """Channels of the conditioned input (for vectors its length): ``in_shape[0]`` plus the condition's."""
        return self.conditioning.input_channels(self.in_shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one conditioned input, as ``features`` receives it."""
        return (self.input_channels, *self.in_shape[1:])

    def set_features(
        self, features_dim: int, norm: str = "none", init: Callable[[nn.Module], None] | None = None
    ) -> None:
        """Declares the size ``features_dim`` of ``features``' output: makes the linear score head
        ``features_dim -> 1`` (spectral norm when ``norm == 'spectral'``), applies ``init`` to the network, head
        included, and then binds the conditioning module to ``features_dim``; the layers the conditioning adds
        there (a projection embedding, a class head) keep their own initialisation."""
        if self.features_dim is not None:
            raise RuntimeError(f"{type(self).__name__}.set_features: called twice; call it once in __init__")
        self.features_dim = int(features_dim)
        self.head = maybe_sn(nn.Linear(self.features_dim, 1), norm)
        if init is not None:
            init(self)
        self.conditioning.bind_features(self.features_dim)

    def features(self, x: Tensor) -> Tensor:
        """The conditioned input ``(N, *input_shape)`` to features ``(N, features_dim)``."""
        if "features" in self._modules:  # `self.features = nn.Sequential(...)` is hidden behind this method
            raise TypeError(f"{type(self).__name__}: a submodule named 'features' is hidden by Discriminator.features; "
                            "rename it")
        raise NotImplementedError(f"{type(self).__name__}: implement features(x), or override forward")

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Scores ``(N,)``; with an auxiliary classifier (AC-GAN) also class logits ``(N, K)``."""
        if self.features_dim is None:
            raise TypeError(
                f"{type(self).__name__}: call self.set_features(features_dim) in __init__ to declare the size of "
                "features(x) and make the score head, or override forward"
            )
        features = self.features(self.conditioning.condition_input(x, y))
        return squeeze_score(self.conditioning.condition_output(features, self.head(features), y))


def squeeze_score(out: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
    """``(N, 1)`` scores to ``(N,)``, keeping an auxiliary classifier's ``(N, K)`` logits beside them."""
    if isinstance(out, tuple):
        return out[0].squeeze(1), out[1]
    return out.squeeze(1)


def image_shape(channels: int, image_size: int) -> tuple[int, int, int]:
    return (int(channels), int(image_size), int(image_size))


def numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))
