"""The order real samples are served in (``gan_lightning.data.order.EpochSampler``) and how it shards across
processes.

Documented behaviour: for epoch ``e`` the order is a permutation seeded by ``(seed, e)``; process ``r`` of ``W``
takes every ``W``-th batch of it (its batch ``b`` is batch ``b * W + r`` of the epoch); full batches only, so
when the data set size is not a multiple of ``W x batch`` the tail of the epoch's permutation that does not fill a
batch on every process is left out of that epoch (a different tail each epoch); where an iteration starts is read
from the training progress (generator steps done), so a resumed run continues the order.

The fast tests check this on samplers built in one process. ``test_two_processes_shard_each_epoch`` runs it for
real: a 2-process Lightning ``ddp_spawn`` fit (gloo, CPU) on a data module whose samples are their own indices,
through the library's ``GANDataModule.train_dataloader`` and Lightning's default ``use_distributed_sampler``;
each rank writes the indices it drew per step to a file that the test reads back. Classes the spawned children
unpickle live at module level here (they import this module by name, as ``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from gan_lightning.data.base import GANDataModule, InMemory, ResumableLoader
from gan_lightning.data.order import EpochSampler


# ------------------------------------------------------------------------------------- pieces (also for children)
class IndexData(GANDataModule):
    """``size`` one-number samples whose value is their index, so a batch says which samples it holds."""

    data_shape = (1,)
    num_classes = 0

    def __init__(self, size: int, batch_size: int, draws_per_step: int = 1, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed, draws_per_step=draws_per_step)
        self.size = size

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = InMemory(torch.arange(self.size, dtype=torch.float32).view(-1, 1),
                                      torch.zeros(self.size, dtype=torch.long))


class IndexRecorder(pl.LightningModule):
    """Records, per training step, the global step and the sample indices of the batch; each rank writes
    ``out_dir/rank{r}.pt`` at the end of fit, with the loader and sampler Lightning actually iterated."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.w = nn.Parameter(torch.zeros(1))
        self.drawn: list[tuple[int, list[int]]] = []
        self.loader_info: dict[str, Any] = {}

    def on_train_start(self) -> None:
        # A different global RNG state on each rank: the order must not depend on it.
        torch.manual_seed(1000 + self.global_rank)
        loader = self.trainer.train_dataloader
        sampler = loader.sampler
        self.loader_info = {
            "loader": type(loader).__name__, "sampler": type(sampler).__name__,
            "num_replicas": sampler.num_replicas, "rank": sampler.rank,
            "process_group": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        }

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, _ = batch
        self.drawn.append((int(self.global_step), x[:, 0].long().tolist()))
        return (self.w * x.mean()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def on_train_end(self) -> None:
        torch.save({"drawn": self.drawn, "world_size": self.trainer.world_size, "rank": self.global_rank,
                    **self.loader_info}, Path(self.out_dir) / f"rank{self.global_rank}.pt")


class Progress:
    """What the data module reads from its trainer: world size, rank and generator steps done."""

    def __init__(self, world_size: int, global_rank: int, global_step: int) -> None:
        self.world_size, self.global_rank, self.global_step = world_size, global_rank, global_step


def loader_batches(dm: GANDataModule, world: int, rank: int, step: int) -> list[list[int]]:
    """The batches one pass of ``dm``'s training loader yields on process ``rank`` of ``world`` after ``step``
    generator steps, as index lists."""
    dm.trainer = Progress(world, rank, step)
    return [x[:, 0].long().tolist() for x, _ in dm.train_dataloader()]


def sampler_batches(sampler: EpochSampler, step: int = 0) -> list[list[int]]:
    sampler.position = lambda: step
    flat = list(sampler)
    return [flat[i : i + sampler.batch_size] for i in range(0, len(flat), sampler.batch_size)]


# ------------------------------------------------------------------------------------------ one process, fast
@pytest.mark.parametrize("size, batch, world", [(48, 6, 2), (50, 6, 2), (61, 4, 3), (7, 2, 1)])
def test_each_epoch_is_split_into_disjoint_shards(size, batch, world):
    full = world * batch
    kept = size // full * full
    for epoch in range(3):
        ranks = [sampler_batches(EpochSampler(size, batch, seed=3, world=world, rank=r), epoch * (size // full))
                 for r in range(world)]
        drawn = [i for batches in ranks for b in batches for i in b]
        assert len(drawn) == len(set(drawn)) == kept  # no sample twice; all but the ragged tail
        for batches in ranks:
            assert len(batches) == size // full and all(len(b) == batch for b in batches)
        # Rank r's batch b is batch b * world + r of the epoch's order; what is left out is its tail.
        perm = EpochSampler(size, batch, seed=3).permutation(epoch).tolist()
        for r, batches in enumerate(ranks):
            assert batches == [perm[(b * world + r) * batch : (b * world + r + 1) * batch] for b in range(len(batches))]
        assert set(range(size)) - set(drawn) == set(perm[kept:])


def test_len_counts_the_samples_one_process_draws_per_epoch():
    s = EpochSampler(50, 6, world=2, rank=1)
    assert s.batches_per_epoch == 4 and len(s) == 24 == len(list(s))


def test_order_depends_on_seed_and_epoch_only():
    a = EpochSampler(100, 10, seed=1)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a.permutation(0), EpochSampler(100, 10, seed=1).permutation(0))
    assert not torch.equal(a.permutation(0), EpochSampler(100, 10, seed=2).permutation(0))
    assert not torch.equal(a.permutation(0), a.permutation(1))


# ------------------------------------------------------------------------------------------ two processes, slow
SIZE, BATCH, DRAWS, SEED, WORLD = 50, 3, 2, 7, 2
PER_STEP = BATCH * DRAWS                 # one step draws draws_per_step batches at once
PER_EPOCH = SIZE // (PER_STEP * WORLD)   # steps per epoch on each process: 4 (48 of the 50 samples)
EPOCHS = 3


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("order")
    trainer = pl.Trainer(
        accelerator="cpu", devices=WORLD, strategy="ddp_spawn", max_steps=EPOCHS * PER_EPOCH, max_epochs=-1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=1, default_root_dir=str(out),
    )
    trainer.fit(IndexRecorder(str(out)), IndexData(SIZE, BATCH, DRAWS, seed=SEED))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
def test_two_processes_shard_each_epoch(two_ranks):
    for r, rec in enumerate(two_ranks):
        # Lightning kept the library's loader and sampler (no DistributedSampler of its own), on 2 gloo processes.
        assert rec["rank"] == r and rec["world_size"] == rec["process_group"] == WORLD and rec["backend"] == "gloo"
        assert (rec["loader"], rec["sampler"], rec["num_replicas"], rec["rank"]) == ("ResumableLoader", "EpochSampler", WORLD, r)
        assert [step for step, _ in rec["drawn"]] == list(range(EPOCHS * PER_EPOCH))
        assert all(len(batch) == PER_STEP for _, batch in rec["drawn"])

    kept = PER_EPOCH * PER_STEP * WORLD
    assert (kept, SIZE - kept) == (48, 2)  # the set-up has a ragged tail
    left_out = []
    for epoch in range(EPOCHS):
        steps = range(epoch * PER_EPOCH, (epoch + 1) * PER_EPOCH)
        shards = [[i for s in steps for i in two_ranks[r]["drawn"][s][1]] for r in range(WORLD)]
        for shard in shards:
            assert len(shard) == len(set(shard)) == PER_EPOCH * PER_STEP  # nothing twice within a rank
        assert not set(shards[0]) & set(shards[1])                          # disjoint across ranks
        drawn = set(shards[0]) | set(shards[1])
        assert len(drawn) == kept                                           # every other sample exactly once
        # The documented split: rank r's step b holds batch b * WORLD + r of the epoch's permutation, and the
        # samples left out are the permutation's tail, which does not fill a step on both processes.
        perm = EpochSampler(SIZE, PER_STEP, seed=SEED).permutation(epoch).tolist()
        for r in range(WORLD):
            for b, s in enumerate(steps):
                g = b * WORLD + r
                assert two_ranks[r]["drawn"][s][1] == perm[g * PER_STEP : (g + 1) * PER_STEP]
        assert set(range(SIZE)) - drawn == set(perm[kept:])
        left_out.append(set(perm[kept:]))
    # Another epoch, another order (and another tail: no sample is left out of every epoch).
    epoch_orders = [[i for s in range(e * PER_EPOCH, (e + 1) * PER_EPOCH) for i in two_ranks[0]["drawn"][s][1]]
                    for e in range(EPOCHS)]
    assert len({tuple(o) for o in epoch_orders}) == EPOCHS
    assert not set.intersection(*left_out)


@pytest.mark.slow
def test_two_process_order_is_reproduced_by_seed_and_resumed_mid_epoch(two_ranks):
    for r, rec in enumerate(two_ranks):
        drawn = [batch for _, batch in rec["drawn"]]
        # The same seed gives the same order in a fresh process (this one), whatever its global RNG state ...
        torch.manual_seed(99)
        assert loader_batches(IndexData(SIZE, BATCH, DRAWS, seed=SEED), WORLD, r, 0) == drawn[:PER_EPOCH]
        # ... another seed another order.
        assert loader_batches(IndexData(SIZE, BATCH, DRAWS, seed=SEED + 1), WORLD, r, 0) != drawn[:PER_EPOCH]
        # Resuming after 6 generator steps (epoch 1, step 2) continues exactly where the run was: the rest of
        # epoch 1, then epoch 2 from its start.
        resume = PER_EPOCH + 2
        assert loader_batches(IndexData(SIZE, BATCH, DRAWS, seed=SEED), WORLD, r, resume) == drawn[resume : 2 * PER_EPOCH]
        assert loader_batches(IndexData(SIZE, BATCH, DRAWS, seed=SEED), WORLD, r, 2 * PER_EPOCH) == drawn[2 * PER_EPOCH :]


def test_the_loader_is_the_resumable_one():
    dm = IndexData(SIZE, BATCH, DRAWS, seed=SEED)
    dm.trainer = Progress(WORLD, 1, 0)
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableLoader) and isinstance(loader.sampler, EpochSampler)
    assert (loader.sampler.num_replicas, loader.sampler.rank) == (WORLD, 1)
