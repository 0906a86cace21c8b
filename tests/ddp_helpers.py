"""Importable pieces for the multi-process tests (tests/test_ddp.py) and the DDP benchmark.

Spawn-launched children unpickle the trainer, model and data module by reference to their classes, so every
class they need lives here, in a module they can import (pytest puts ``tests/`` on ``sys.path`` and spawn
hands ``sys.path`` to its children), never inside a test function.

Results come back through files: :class:`Recorder` makes each rank write ``rank{r}.pt`` under a folder given
by the parent, holding per-step snapshots of the networks, the losses each rank logged, its step counters and
how many times each torch optimizer stepped.
"""

from __future__ import annotations

import os
import zlib
from functools import partial
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from gan_lightning.conditioning import AuxiliaryClassifier, LabelConcat
from gan_lightning.data import ToyDataModule
from gan_lightning.data.base import GANDataModule, InMemory, _identity
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import ClassLoss
from gan_lightning.training.system import GAN

# Importing registers gan_ddp / gan_ddp_spawn / gan_ddp_fork with Lightning's strategy registry.
import gan_lightning.training.strategies  # noqa: F401


# ---------------------------------------------------------------------------------------------------- data
class OrderedToy(ToyDataModule):
    """The toy ring served in order (``drop_last=True``), split across processes by interleaving.

    Lightning's injected ``DistributedSampler`` always shuffles the *training* loader (it ignores the loader's
    ``shuffle=False``), so this module brings its own sampler and the trainer must be built with
    ``use_distributed_sampler=False`` (:func:`trainer` does that). Rank ``r`` of ``W`` then sees samples
    ``r, r + W, r + 2W, ...``: with a per-process loader batch of ``b``, step ``s`` of rank ``r`` holds global
    samples ``s*W*b + j*W + r`` (``j < b``), the interleaved share of the samples that a one-process run with
    batch ``W*b`` holds at step ``s``.
    """

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        sampler = None
        if dist.is_available() and dist.is_initialized():
            sampler = DistributedSampler(self.train_set, num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                         shuffle=False, drop_last=True)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size * self.draws_per_step,
            sampler=sampler,
            shuffle=False,
            drop_last=True,
            collate_fn=_identity if isinstance(self.train_set, InMemory) else None,
        )


class TinyImages(GANDataModule):
    """64 random 1x28x28 uint8 images (no files, no download), for the DCGAN networks; shuffled, and split across
    processes like :class:`OrderedToy` (so each rank's batch differs, as under a distributed sampler)."""

    train_dataloader = OrderedToy.train_dataloader

    data_shape = (1, 28, 28)
    num_classes = 0

    def __init__(self, batch_size: int = 8, num_samples: int = 64, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        self.num_samples = num_samples

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            g = torch.Generator().manual_seed(self.seed)
            images = torch.randint(0, 256, (self.num_samples, 1, 28, 28), generator=g, dtype=torch.uint8)
            self.train_set = InMemory(images, torch.zeros(self.num_samples, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------- model
def _stream(*key: int) -> torch.Generator:
    """A torch generator seeded by a tuple of ints (stable across processes and runs)."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()) & 0x7FFFFFFF)


class GlobalNoiseGAN(GAN):
    """A GAN whose noise is a pure function of (global step, D-step index, the sample's global position).

    In D step ``i`` of generator step ``s`` every process draws the same ``W * n`` rows from a stream keyed by
    ``(s, i)`` and keeps rows ``rank, rank + W, ...``: rank ``r``'s ``j``-th sample gets row ``j*W + r``, the
    row a one-process run (``W = 1``) with an ``W*n`` batch gives its sample at that global position — which
    is also where :class:`OrderedToy` puts that rank's ``j``-th real sample. The gradient-penalty
    interpolation weights are keyed the same way. So a ``W``-process run with batch ``B`` and a one-process run
    with batch ``W*B`` see the same reals, noise and interpolates, and compute the same gradients up to
    summation order.
    """

    def training_step(self, batch: Any, batch_idx: int) -> None:
        self._z_calls = 0
        self._y_calls = 0
        self._eps_calls = 0
        return super().training_step(batch, batch_idx)

    def _world(self) -> tuple[int, int]:
        trainer = self._trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def sample_z(self, n: int, generator: Optional[torch.Generator] = None, device: Any = None) -> Tensor:
        if generator is not None or getattr(self, "_z_calls", None) is None:  # not from training_step
            return super().sample_z(n, generator, device)
        world, rank = self._world()
        i = self._z_calls
        self._z_calls += 1
        rows = torch.randn((n * world, self.latent_dim), generator=_stream(self.global_step, i, 0))
        return rows[rank::world].to(self.device if device is None else device)

    def fake_conditions(self, c_real: Optional[Tensor], n: int) -> Optional[Tensor]:
        if self.conditioning.class_count == 0 or getattr(self, "_y_calls", None) is None:
            return super().fake_conditions(c_real, n)
        world, rank = self._world()
        i = self._y_calls
        self._y_calls += 1
        rows = torch.randint(0, self.num_classes, (n * world,), generator=_stream(self.global_step, i, 2))
        return rows[rank::world].to(self.device)

    def interpolation_weights(self, n: int) -> Tensor:
        world, rank = self._world()
        i = self._eps_calls
        self._eps_calls += 1
        rows = torch.rand(n * world, generator=_stream(self.global_step, i, 1))
        return rows[rank::world].to(self.device)


class NoiseLogGAN(GAN):
    """The library's GAN, unchanged, except that it keeps every training noise batch it draws (``z_log``) and
    every set of gradient-penalty interpolation weights (``eps_log``), for :class:`Recorder` to save."""

    def sample_z(self, n: int, generator: Optional[torch.Generator] = None, device: Any = None) -> Tensor:
        z = super().sample_z(n, generator, device)
        if generator is None:
            self.__dict__.setdefault("z_log", []).append(z.detach().clone().cpu())
        return z

    def interpolation_weights(self, n: int) -> Tensor:
        eps = super().interpolation_weights(n)
        self.__dict__.setdefault("eps_log", []).append(eps.detach().clone().cpu())
        return eps


def mlp_gan(
    cls: type = GAN,
    g_norm: str = "batch",
    d_norm: str = "none",
    hidden: int = 16,
    seed: int = 0,
    optimizer: str = "adam",
    aux_classes: int = 0,
    **kwargs: Any,
) -> GAN:
    """A small toy MLP GAN with a seeded initialisation (the same weights in every run with the same seed);
    with ``aux_classes = K`` an AC-GAN: labels concatenated to G's noise, D with an auxiliary classifier trained by
    the class loss (added to ``regularizers``)."""
    torch.manual_seed(seed)
    g_labels = dict(num_classes=aux_classes, conditioning=LabelConcat()) if aux_classes else {}
    d_labels = dict(num_classes=aux_classes, conditioning=AuxiliaryClassifier()) if aux_classes else {}
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[hidden, hidden], norm=g_norm, **g_labels)
    d = MLPDiscriminator(in_shape=[2], hidden=[hidden, hidden], maxout_pieces=3, norm=d_norm, **d_labels)
    if aux_classes:
        kwargs["regularizers"] = list(kwargs.get("regularizers") or []) + [ClassLoss(1.0)]
    return cls(g, d, g_optimizer=_optimizer(optimizer), d_optimizer=_optimizer(optimizer), **kwargs)


def dcgan(cls: type = GAN, d_norm: str = "batch", seed: int = 0, **kwargs: Any) -> GAN:
    """A very small DCGAN for 1x28x28 images (batch norm in G, and in D unless ``d_norm`` says otherwise)."""
    torch.manual_seed(seed)
    g = DCGANGenerator(latent_dim=8, channels=1, image_size=28, ngf=4)
    d = DCGANDiscriminator(channels=1, image_size=28, ndf=4, norm=d_norm)
    return cls(g, d, g_optimizer=_optimizer("adam"), d_optimizer=_optimizer("adam"), **kwargs)


def _optimizer(name: str) -> Any:
    if name == "adam":
        return partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999))
    return partial(torch.optim.SGD, lr=0.05)


# ---------------------------------------------------------------------------------------------------- callbacks
def _snapshot(pl_module: GAN) -> dict[str, Tensor]:
    state = {}
    for prefix in ("generator", "discriminator", "generator_ema"):
        net = getattr(pl_module, prefix, None)
        if net is None:
            continue
        for k, v in net.state_dict().items():
            state[f"{prefix}.{k}"] = v.detach().clone().cpu()
    return state


class Recorder(pl.Callback):
    """Each rank writes ``out_dir/rank{r}.pt`` at the end of fit.

    Holds ``steps`` (the networks' state after each generator step, when ``per_step``), ``final`` (the state at the
    end), ``losses`` (per step: the ``train/*`` values this rank logged), ``global_step``, ``world_size`` and
    ``opt_steps`` (calls of each torch optimizer's ``step``, counted by step post-hooks, whichever path called it).
    """

    def __init__(self, out_dir: str, per_step: bool = True) -> None:
        self.out_dir = str(out_dir)
        self.per_step = per_step
        self.steps: list[dict[str, Tensor]] = []
        self.losses: list[dict[str, float]] = []
        self.opt_steps = {"G": 0, "D": 0}
        self._hooks: list[Any] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: GAN) -> None:
        opt_g, opt_d = trainer.optimizers
        for tag, opt in (("G", opt_g), ("D", opt_d)):
            opt = getattr(opt, "optimizer", opt)

            def hook(optimizer: Any, args: Any, kwargs: Any, _tag: str = tag) -> None:
                self.opt_steps[_tag] += 1

            self._hooks.append(opt.register_step_post_hook(hook))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: GAN, *args: Any) -> None:
        if self.per_step:
            self.steps.append(_snapshot(pl_module))
        self.losses.append(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: GAN) -> None:
        for h in self._hooks:
            h.remove()
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(
            {
                "steps": self.steps,
                "final": _snapshot(pl_module),
                "losses": self.losses,
                "global_step": trainer.global_step,
                "world_size": trainer.world_size,
                "rank": trainer.global_rank,
                "opt_steps": dict(self.opt_steps),
                "z_log": pl_module.__dict__.get("z_log", []),
                "eps_log": pl_module.__dict__.get("eps_log", []),
            },
            Path(self.out_dir) / f"rank{trainer.global_rank}.pt",
        )


class PerturbRank(pl.Callback):
    """On ``rank`` after generator step ``at_step``, nudges the first parameter of network ``net`` — a stand-in
    for any bug that lets the processes drift apart. Put it before the consistency check in ``callbacks``."""

    def __init__(self, net: str = "discriminator", rank: int = 1, at_step: int = 2, delta: float = 1e-3) -> None:
        self.net, self.rank, self.at_step, self.delta = net, rank, at_step, delta

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: GAN, *args: Any) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.at_step:
            with torch.no_grad():
                next(getattr(pl_module, self.net).parameters()).add_(self.delta)


# ---------------------------------------------------------------------------------------------------- running
def trainer(out_dir: str | Path, max_steps: int, strategy: Any = "auto", devices: int = 1,
            callbacks: Optional[list[pl.Callback]] = None, **kwargs: Any) -> pl.Trainer:
    """A quiet CPU trainer rooted in ``out_dir``."""
    options: dict[str, Any] = dict(
        max_steps=max_steps,
        max_epochs=-1,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # OrderedToy and TinyImages split the data themselves
        default_root_dir=str(out_dir),
        callbacks=callbacks or [],
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def load_ranks(out_dir: str | Path, world: int) -> list[dict[str, Any]]:
    """The ``rank{r}.pt`` records of a run, rank order."""
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world)]
