"""The contracts every network keeps.

A GAN system (``gan_lightning.system.GAN``) only relies on these attributes and ``forward`` signatures, so any
subclass named in a YAML by ``class_path`` plugs in without touching the library.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning
from gan_lightning.errors import UserError


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
        """What the generator is conditioned on: none | label | spatial."""
        return self.conditioning.condition

    @property
    def is_image(self) -> bool:
        return len(self.out_shape) == 3

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Discriminator(nn.Module):
    """Maps samples ``x`` of shape ``(N, *in_shape)`` (and labels ``y`` when conditional) to one real-valued score
    per sample, shape ``(N,)``: a logit for the cross-entropy losses, a critic value for hinge/Wasserstein.
    """

    in_shape: tuple[int, ...]
    num_classes: int  # 0 = unconditional.

    def __init__(
        self, in_shape: tuple[int, ...], num_classes: int = 0, conditioning: Conditioning | None = None
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.conditioning = _bind(conditioning, num_classes, "discriminator")

    @property
    def condition(self) -> str:
        """What the discriminator is conditioned on: none | label | spatial."""
        return self.conditioning.condition

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:  # pragma: no cover
        """Scores ``(N,)``; with an auxiliary classifier (AC-GAN) also class logits ``(N, K)``."""
        raise NotImplementedError


def squeeze_score(out: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
    """``(N, 1)`` scores to ``(N,)``, keeping an auxiliary classifier's ``(N, K)`` logits beside them."""
    if isinstance(out, tuple):
        return out[0].squeeze(1), out[1]
    return out.squeeze(1)


def image_shape(channels: int, image_size: int) -> tuple[int, int, int]:
    return (int(channels), int(image_size), int(image_size))


def numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))
