"""Toy 2D mixtures of the PacGAN protocol (Lin et al. 2018): 8 Gaussians on a ring, 25 on a grid."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gan_lightning.data.base import GANDataModule, InMemory
from gan_lightning.errors import UserError

TOY_SETS = ("ring", "grid")


def toy_modes(name: str) -> tuple[Tensor, float]:
    """The mixture's component means ``(M, 2)`` and its standard deviation."""
    if name == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], dim=1).float(), 0.01
    if name == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis), 0.05
    raise UserError(f"data.name: unknown toy data set {name!r}; choose one of {TOY_SETS}")


def toy_samples(name: str, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` points ``(n, 2)`` drawn uniformly over the modes, and each point's mode index ``(n,)``."""
    modes, sigma = toy_modes(name)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, modes.shape[0], (n,), generator=g)
    return modes[idx] + sigma * torch.randn(n, 2, generator=g), idx


class ToyDataModule(GANDataModule):
    """``ring`` (8 Gaussians on the unit circle, sigma 0.01) or ``grid`` (25 on {-4..4}^2, sigma 0.05).

    Labels are mode indices; the toy experiments train unconditional models and ignore them.
    """

    data_shape = (2,)

    def __init__(
        self,
        name: str = "ring",        # ring | grid.
        num_samples: int = 100_000,  # Size of the fixed training set (PacGAN: 100,000).
        batch_size: int = 100,     # Real points per D step.
        seed: int = 0,             # Seed of the training set and of the shuffling.
        num_workers: int = 0,      # DataLoader worker processes.
        draws_per_step: int = 1,   # Batches of batch_size per training step; set by the CLI from model.n_critic.
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, draws_per_step=draws_per_step)
        self.modes, self.sigma = toy_modes(name)
        self.name = name
        self.num_samples = int(num_samples)
        self.num_classes = 0  # unconditional: the labels (mode indices) are for metrics only.

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = InMemory(*toy_samples(self.name, self.num_samples, self.seed))
