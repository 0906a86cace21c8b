"""How a network receives the condition (SPEC §2): pluggable modules, not forks of the networks.

Every network in ``gan_lightning.nets`` takes ``conditioning: Conditioning | None`` and calls the same hooks at
the same places; a method overrides the hooks it needs:

=========================  ============================================  =====================================
hook                       where the network calls it                    default (no condition)
=========================  ============================================  =====================================
``latent_dim(d)``          size of G's input vector                      ``d``
``condition_latent(z,y)``  G's input                                     ``z``
``norm(c, dims)``          every normalization layer of G                ``BatchNorm`` that ignores ``y``
``input_channels(c)``      channels of D's input                         ``c``
``condition_input(x,y)``   D's input                                     ``x``
``condition_output(f,o,y)``  D's score from pooled features ``f``        ``o``
=========================  ============================================  =====================================

The network calls ``bind(num_classes, ...)`` once in its ``__init__``, so a method builds its embeddings with
the right sizes; the YAML names only the method and its own options.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch
import torch.nn.functional as F
from gan_lightning.errors import UserError


class CondNorm(nn.Module):
    """A normalization layer called as ``norm(h, y)``."""

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PlainNorm(CondNorm):
    def __init__(self, num_features: int, dims: int = 2) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features) if dims == 2 else nn.BatchNorm1d(num_features)

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        return self.bn(h)


class Conditioning(nn.Module):
    """No condition: the hooks leave everything as it is. Subclass to add a method."""

    num_classes: int = 0

    def bind(self, num_classes: int) -> None:
        """Called once by the owning network with the number of classes (0 = unconditional)."""
        self.num_classes = int(num_classes)

    # generator side
    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim

    def condition_latent(self, z: Tensor, y: Tensor | None) -> Tensor:
        return z

    def norm(self, num_features: int, dims: int = 2) -> CondNorm:
        return PlainNorm(num_features, dims)

    # discriminator side
    def input_channels(self, channels: int) -> int:
        return channels

    def condition_input(self, x: Tensor, y: Tensor | None) -> Tensor:
        return x

    def condition_output(self, features: Tensor, out: Tensor, y: Tensor | None) -> Tensor:
        return out


class LabelConcat(Conditioning):
    """Mirza & Osindero 2014: the label, one-hot or as a learned embedding, is concatenated to G's noise and to
    D's input (as constant feature maps for images)."""

    def __init__(
        self,
        embedding: str = "one_hot",  # one_hot: fixed one-hot vector; learned: a trained nn.Embedding.
        embedding_dim: int = 0,      # Size of a learned embedding, 0 = num_classes.
    ) -> None:
        super().__init__()
        if embedding not in ("one_hot", "learned"):
            raise UserError(f"conditioning.embedding: must be 'one_hot' or 'learned', got {embedding!r}")
        self.embedding_kind = embedding
        self.embedding_dim = int(embedding_dim)
        self.embed: nn.Module | None = None

    def bind(self, num_classes: int) -> None:
        super().bind(num_classes)
        if num_classes < 1:
            raise UserError("conditioning: LabelConcat needs num_classes >= 1 on its network")
        self.dim = num_classes if self.embedding_kind == "one_hot" else (self.embedding_dim or num_classes)
        if self.embedding_kind == "learned":
            self.embed = nn.Embedding(num_classes, self.dim)

    def code(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        if self.embed is None:
            return F.one_hot(y, self.num_classes).to(dtype)
        return self.embed(y).to(dtype)

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
