"""The order real samples are served in: a pure function of (seed, epoch, position), so a resumed run continues
with exactly the batches an uninterrupted run would have drawn.

``EpochSampler`` yields, for epoch ``e``, a permutation seeded by ``(seed, e)``; each process of a distributed
run takes every ``world``-th batch of it (batch ``b`` of rank ``r`` is batch ``b * world + r`` of the epoch).
Where an iteration starts is read from the training progress when the iteration begins: with ``B`` batches per
epoch and ``s`` generator steps done (one batch per step), the epoch is ``s // B`` and the first batch ``s % B``.
It subclasses ``DistributedSampler`` so that Lightning does not wrap it in a sampler of its own.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """Indices of ``size`` samples, ``batch_size`` per batch (full batches only), for process ``rank`` of ``world``;
    ``position()`` returns the number of batches this process has already consumed in the run."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, world: int = 1, rank: int = 0,
                 position: Optional[Callable[[], int]] = None) -> None:
        # DistributedSampler's own bookkeeping is not used; its __init__ would need a dataset.
        self.size, self.batch_size, self.seed = int(size), int(batch_size), int(seed)
        self.num_replicas, self.rank = int(world), int(rank)
        self.position = position or (lambda: 0)
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Full batches each process gets per epoch."""
        return self.size // (self.batch_size * self.num_replicas)

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=g)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def __iter__(self) -> Iterator[int]:
        per_epoch = self.batches_per_epoch
        done = int(self.position())
        epoch, first = divmod(done, per_epoch) if per_epoch else (0, 0)
        perm = self.permutation(epoch)
        for b in range(first, per_epoch):
            start = (b * self.num_replicas + self.rank) * self.batch_size
            yield from perm[start : start + self.batch_size].tolist()

    def set_epoch(self, epoch: int) -> None:  # the epoch comes from the position instead
        self.epoch = epoch
