"""Callbacks: sample grids to disk and W&B, image metrics (FID, ...), toy mode coverage.

Cadences count generator iterations (``trainer.global_step``). Sampling uses the EMA generator when
the model has one, with fixed noise, so successive grids show the same latent points.

Keys: plain ones (``val/modes``, ``val/fid_mnist``) describe the generator's own samples; with
``model.refinement`` the same values of the D-refined samples are logged beside them with a ``_refined``
suffix. Image metrics name their feature space (``gan_lightning.metrics.image.metric_key``).

An evaluation shows a progress bar under Lightning's (erased when done) when stderr is a terminal and the
trainer's progress bar is on; rank 0 only.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from gan_lightning.errors import UserError
from gan_lightning.runtime.checkpointing import was_preempted
from gan_lightning.runtime.files import atomic_write
from gan_lightning.metrics.features import DomainFeatures, FeatureExtractor
from gan_lightning.metrics.image import check_metrics, data_key, generated_features, named_metrics, real_uint8, reference_features
from gan_lightning.metrics.toy import mode_coverage
from gan_lightning.runtime.console import progress
from gan_lightning.sampling.draw import draw, save_grid, save_scatter


def _due(trainer: pl.Trainer, every: int) -> bool:
    return every > 0 and trainer.global_step > 0 and trainer.global_step % every == 0


def _real_fn(datamodule: Any):
    """``real(n)``: ``n`` real training samples (a fixed seeded subset, cycled), or None without a data module."""
    if datamodule is None or not hasattr(datamodule, "real_samples"):
        return None

    def real(n: int) -> torch.Tensor:
        x, _ = datamodule.real_samples(n)
        return x[torch.arange(n) % len(x)]

    return real


def _bar(trainer: pl.Trainer, desc: str) -> Optional[str]:
    """The description of a callback's progress bar, or None (no bar) where the trainer shows none: its progress
    bar turned off, or a process other than 0."""
    shows = getattr(trainer, "progress_bar_callback", None) is not None and getattr(trainer, "is_global_zero", True)
    return desc if shows else None


def _refines(pl_module: Any) -> bool:
    return getattr(pl_module, "refinement", None) is not None


def _wandb(trainer: pl.Trainer):
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            return logger
    return None


class SampleGrid(pl.Callback):
    """Every ``every_n_steps`` generator steps and at the end of training: a grid of samples from fixed noise,
    saved as ``<run dir>/samples/step_<N>.png`` and logged to W&B as ``samples``. Class-conditional models get
    one row per class; spatially conditioned ones a row of real images, a row of their maps and ``rows`` rows of
    samples from those maps; toy 2D models a scatter plot against the data's modes."""

    def __init__(
        self,
        every_n_steps: int = 500,  # Generator steps between grids, 0 = only at the end.
        per_row: int = 10,         # Images per row (per class for conditional models).
        rows: int = 10,            # Rows for unconditional models.
        num_points: int = 2500,    # Points in a toy scatter plot.
        seed: int = 0,             # Seed of the fixed noise.
    ) -> None:
        if every_n_steps < 0 or per_row < 1 or rows < 1:
            raise UserError("SampleGrid: every_n_steps must be >= 0 and per_row, rows >= 1")
        self.every_n_steps, self.per_row, self.rows, self.num_points, self.seed = every_n_steps, per_row, rows, num_points, seed
        self.written: list[str] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if _due(trainer, self.every_n_steps):
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not (self.written and self.written[-1].endswith(f"step_{trainer.global_step:06d}.png")):
            self.write(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"written": list(self.written)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.written = list(state.get("written", []))

    @rank_zero_only
    def write(self, trainer: pl.Trainer, pl_module: Any) -> None:
        folder = os.path.join(trainer.default_root_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"step_{trainer.global_step:06d}.png")
        datamodule = getattr(trainer, "datamodule", None)
        conditioning = pl_module.conditioning
        real = _real_fn(datamodule)
        if not pl_module.generator.is_image:
            points = draw(pl_module, self.num_points, seed=self.seed, labels=conditioning.conditions(self.num_points, real))
            save_scatter(points, path, getattr(datamodule, "modes", None))
        else:
            # The conditioning module lays the grid out: one row per class, or real images, their conditions and
            # samples drawn from them, or plain rows of samples.
            images, nrow = conditioning.grid(lambda n, c: draw(pl_module, n, seed=self.seed, labels=c), real,
                                             self.per_row, self.rows)
            save_grid(images, path, nrow=nrow)
        self.written.append(path)
        logger = _wandb(trainer)
        if logger is not None:
            logger.log_image("samples", [path], step=trainer.global_step)


class ToyMetrics(pl.Callback):
    """Mode coverage (PacGAN protocol) of ``num_samples`` toy samples every ``every_n_steps`` generator steps and at the
    end, logged as ``val/modes``, ``val/high_quality``, ``val/reverse_kl``; the final values are also written to
    ``<run dir>/metrics.json``. These are the generator's own samples; with ``model.refinement``, the same values
    of the refined samples are logged beside them (``val/modes_refined``, ``val/high_quality_refined``, ...).
    Needs a data module with ``modes`` and ``sigma`` (``ToyDataModule``)."""

    def __init__(self, every_n_steps: int = 1000, num_samples: int = 2500, seed: int = 1) -> None:
        self.every_n_steps, self.num_samples, self.seed = every_n_steps, num_samples, seed
        self.last: dict[str, float] = {}

    def _compute(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        datamodule = getattr(trainer, "datamodule", None)
        if not hasattr(datamodule, "modes"):
            raise UserError("ToyMetrics: the data module has no toy modes; use it with gan_lightning.data.ToyDataModule")
        conditions = pl_module.conditioning.conditions(self.num_samples, _real_fn(datamodule))
        refines = _refines(pl_module)
        desc = _bar(trainer, "toy metrics")
        with progress(self.num_samples * (2 if refines else 1), desc or "", unit="pt", enabled=desc is not None,
                      leave=False) as bar:
            plain = draw(pl_module, self.num_samples, seed=self.seed, labels=conditions, refine=False)
            self.last = mode_coverage(plain, datamodule.modes, datamodule.sigma)
            bar.update(self.num_samples)
            if refines:
                # The refined samples beside the generator's own, so that what refinement adds stays visible.
                points = draw(pl_module, self.num_samples, seed=self.seed, labels=conditions, refine=True)
                coverage = mode_coverage(points, datamodule.modes, datamodule.sigma)
                self.last.update({f"{k}_refined": v for k, v in coverage.items()})
                bar.update(self.num_samples)
        return self.last

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if _due(trainer, self.every_n_steps):
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        write_metrics(trainer, self._log(trainer, pl_module))

    def _log(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        return log_metrics(trainer, self._compute(trainer, pl_module))


def log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> dict[str, float]:
    """Log under ``val/`` at the current generator step, and put the values where Lightning's callbacks read
    them (``trainer.callback_metrics``), so ``ModelCheckpoint(monitor="val/fid_mnist", mode="min")`` keeps the
    best checkpoint and ``EarlyStopping`` can watch FID."""
    values = {f"val/{k}": v for k, v in metrics.items()}
    for logger in trainer.loggers:
        logger.log_metrics(values, step=trainer.global_step)
    for key, value in values.items():
        trainer.callback_metrics[key] = torch.tensor(float(value))
    return metrics


def write_metrics(trainer: pl.Trainer, metrics: dict[str, float], about: Optional[dict[str, Any]] = None) -> None:
    """Merge final metrics into ``<run dir>/metrics.json`` (atomically; process 0 only). ``about`` (e.g.
    ``{"image_metrics": {"extractor": ..., "num_samples": ...}}``) is merged as it is: how the values were made."""
    if not trainer.is_global_zero:
        return
    path = os.path.join(trainer.default_root_dir, "metrics.json")
    os.makedirs(trainer.default_root_dir, exist_ok=True)
    current = {}
    if os.path.isfile(path):
        with open(path) as f:
            current = json.load(f)
    current.update({"step": trainer.global_step, **{k: (v if math.isfinite(v) else None) for k, v in metrics.items()}})
    current.update(about or {})
    with atomic_write(path, "w") as f:
        json.dump(current, f, indent=2)


class ImageMetrics(pl.Callback):
    """FID and friends (``gan_lightning.metrics.image``) every ``every_n_steps`` generator steps and at the end
    of fit, on the EMA generator where there is one; logged as ``val/<key>`` and written to
    ``<run dir>/metrics.json``. ``seconds`` accumulates the time spent, to weigh the callback's cost.

    Keys name the feature space: with the default extractor (the mnist5k domain classifier) they are
    ``val/fid_mnist``, ``val/intra_fid_mnist``, ``val/accuracy``; only ``InceptionFeatures`` gives ``val/fid``
    (``metric_key``). With ``model.refinement`` the refined samples' values come too, suffixed ``_refined``.
    ``metrics.json`` also records, under ``image_metrics``, the extractor, its protocol and the sample and
    reference counts used.

    ``metrics`` defaults to fid, plus accuracy and intra_fid for class-conditional models and the
    class-histogram collapse monitor for unconditional ones (KID's 100 kernel subsets cost more than the rest
    together on a CPU; name it to have it, or use ``evaluate``)."""

    def __init__(
        self,
        every_n_steps: int = 1000,          # Generator steps between evaluations, 0 = only at the end.
        num_samples: int = 5000,            # Generated samples per evaluation.
        num_reference: int = 5000,          # Real images in the reference set (cached on disk).
        metrics: Optional[list[str]] = None,  # Names from gan_lightning.metrics.image.METRICS; None = by model.
        extractor: Optional[FeatureExtractor] = None,  # Default: DomainFeatures() (the mnist5k classifier).
        seed: int = 0,                      # Seed of the samples' noise.
        reference_seed: int = 0,            # Seed of the reference subset.
        cache_dir: Optional[str] = None,    # Reference cache folder (default: ~/.cache/gan_lightning/reference).
    ) -> None:
        if every_n_steps < 0 or num_samples < 2 or num_reference < 2:
            raise UserError("ImageMetrics: every_n_steps must be >= 0 and num_samples, num_reference >= 2")
        if metrics is not None:
            check_metrics(metrics, "ImageMetrics.metrics")
        self.every_n_steps, self.num_samples, self.num_reference = every_n_steps, num_samples, num_reference
        self.metrics = metrics
        self.extractor = extractor if extractor is not None else DomainFeatures()
        self.seed, self.reference_seed, self.cache_dir = seed, reference_seed, cache_dir
        self.seconds = 0.0
        self.last: dict[str, float] = {}
        self.used: dict[str, Any] = {}  # what the last evaluation used: extractor, protocol, counts

    def names(self, pl_module: Any) -> list[str]:
        if self.metrics is not None:
            return self.metrics
        if pl_module.conditioning.class_count > 0:
            return ["fid", "accuracy", "intra_fid"]
        return ["fid", "class_histogram"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not pl_module.generator.is_image:
            raise UserError("ImageMetrics: needs a model of images; use ToyMetrics for 2D points or remove the callback")
        self.extractor.prepare(pl_module.device)

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        start = time.perf_counter()
        datamodule = trainer.datamodule
        key = {"dataset": data_key(datamodule), "split": "train", "extractor": self.extractor.name,
               "count": self.num_reference, "seed": self.reference_seed}
        ref, _ = reference_features(lambda: real_uint8(datamodule, self.num_reference, self.reference_seed),
                                    self.extractor, key, self.cache_dir,
                                    progress_desc=_bar(trainer, "reference features"), leave=False)
        names, tag, real = self.names(pl_module), self.extractor.tag, _real_fn(datamodule)
        self.last = {}
        for refined in (False, True) if _refines(pl_module) else (False,):
            what = "refined samples" if refined else "samples"
            gen = generated_features(pl_module, self.extractor, self.num_samples, self.seed, real=real, refine=refined,
                                     progress_desc=_bar(trainer, f"metrics: {what}"), leave=False)
            self.last.update(named_metrics(names, gen, ref, tag, refined=refined,
                                           progress_desc=_bar(trainer, f"metrics of the {what}"), leave=False))
        self.used = {"extractor": self.extractor.name, "features": self.extractor.description,
                     "num_samples": self.num_samples, "num_reference": len(ref.features)}
        self.seconds += time.perf_counter() - start
        return log_metrics(trainer, self.last)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if _due(trainer, self.every_n_steps):
            self.evaluate(trainer, pl_module)

    # Saved in checkpoints: a resumed run reports the same cost and last values.
    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds, self.last = float(state.get("seconds", 0.0)), dict(state.get("last", {}))

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if was_preempted(trainer):  # the scheduler's grace period is for the checkpoint, not a full evaluation
            return
        metrics = self.evaluate(trainer, pl_module)
        write_metrics(trainer, metrics, {"image_metrics": self.used})

