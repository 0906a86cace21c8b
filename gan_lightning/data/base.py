"""What every data module of the package shares: batches of ``(x, y)`` drawn ``draws_per_step`` at a time.

``x`` is ``(N, *data_shape)`` float32 (images in [-1, 1]), ``y`` int64 ``(N,)``. The command line links
``draws_per_step`` to the model's ``n_critic``, so that each D step of one generator iteration gets ``batch_size``
fresh real samples; in Python, pass ``draws_per_step=n_critic`` to the data module.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from gan_lightning.data.order import EpochSampler
from gan_lightning.errors import UserError
from gan_lightning.sampling.pixels import to_float


def _identity(batch: Any) -> Any:
    return batch


class InMemory(Dataset):
    """Samples held as tensors; a whole batch is one indexing operation (no per-item Python).

    ``data`` is float (served as is) or uint8 images (served as float in [-1, 1]).
    """

    def __init__(self, data: Tensor, labels: Tensor) -> None:
        if data.shape[0] != labels.shape[0]:
            raise UserError(f"data and labels disagree in length: {data.shape[0]} vs {labels.shape[0]}")
        self.data, self.labels = data, labels.long()

    def __len__(self) -> int:
        return self.data.shape[0]

    def _serve(self, x: Tensor) -> Tensor:
        return to_float(x) if x.dtype == torch.uint8 else x

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self._serve(self.data[i]), self.labels[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._serve(self.data[idx]), self.labels[idx]


class ResumableLoader(DataLoader):
    """A DataLoader over an ``EpochSampler``: where it starts is read from the training progress, so a run resumed
    from a checkpoint continues the order by itself and the loader has no state of its own to save. Having
    ``state_dict``/``load_state_dict`` tells Lightning so (it warns about resuming mid-epoch otherwise)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class GANDataModule(pl.LightningDataModule):
    """Base: subclasses fill ``self.train_set`` in ``setup`` and set ``data_shape`` and ``num_classes``."""

    data_shape: tuple[int, ...] = ()
    num_classes: int = 0
    name: str = "data"

    def __init__(
        self,
        batch_size: int = 64,     # Real samples per D step.
        num_workers: int = 0,     # DataLoader worker processes.
        seed: int = 0,            # Seed of the data (where drawn) and of the order samples are served in.
        draws_per_step: int = 1,  # Batches of batch_size per training step; set by the CLI from model.n_critic.
    ) -> None:
        super().__init__()
        # The data config goes into checkpoints, so `evaluate` can rebuild the data (from fit or from Python).
        self.save_hyperparameters()
        if batch_size < 1:
            raise UserError(f"data.batch_size: must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"data.num_workers: must be >= 0, got {num_workers}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        if isinstance(draws_per_step, bool) or not isinstance(draws_per_step, int) or draws_per_step < 1:
            raise UserError(f"data.draws_per_step: must be an integer >= 1 (the CLI sets it from model.n_critic), "
                            f"got {draws_per_step!r}")
        self.seed = int(seed)
        self.draws_per_step = int(draws_per_step)
        self.train_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        per_step = self.batch_size * self.draws_per_step
        if len(self.train_set) < per_step:
            raise UserError(
                f"data.batch_size: {per_step} samples per step ({self.batch_size} x {self.draws_per_step} D steps) "
                f"but the training set has only {len(self.train_set)}; lower batch_size"
            )
        batched = isinstance(self.train_set, InMemory)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        # The order is a function of (seed, epoch, position): a resumed run draws the batches the uninterrupted
        # run would have drawn (see gan_lightning.data.order).
        sampler = EpochSampler(len(self.train_set), per_step, seed=self.seed, world=world, rank=rank,
                               position=lambda: self.trainer.global_step if self.trainer is not None else 0)
        if sampler.batches_per_epoch < 1:
            raise UserError(
                f"data.batch_size: {per_step * world} samples per step ({self.batch_size} x {self.draws_per_step} D "
                f"steps x {world} processes) but the training set has only {len(self.train_set)}; lower batch_size"
            )
        return ResumableLoader(
            self.train_set,
            batch_size=per_step,
            sampler=sampler,
            drop_last=True,  # every D step sees a full batch.
            num_workers=self.num_workers,
            collate_fn=_identity if batched else None,
            persistent_workers=self.num_workers > 0,
        )

    def real_samples(self, n: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
        """``n`` training samples (all when ``None``) as ``(x, y)`` tensors, a seeded random subset, for metrics
        and sample grids."""
        if self.train_set is None:
            self.setup("fit")
        total = len(self.train_set)
        n = total if n is None else min(n, total)
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n] if n < total else torch.arange(n)
        if isinstance(self.train_set, InMemory):
            return self.train_set.__getitems__(idx)
        xs, ys = zip(*(self.train_set[int(i)] for i in idx))
        return torch.stack(xs), torch.as_tensor(ys)
