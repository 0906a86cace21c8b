"""Guards of a running fit: ``DivergenceGuard`` stops a run whose losses turned NaN or infinite. The CLI adds it
to every ``fit``."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl

from gan_lightning.runtime.resume import DivergenceError


class DivergenceGuard(pl.Callback):
    """Stops training with a one-line message when a logged loss turns NaN or infinite. It looks only when
    Lightning logs (``log_every_n_steps``), where the values reach the host anyway; the checkpoints already on
    disk are kept, and none is written from the diverged weights."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        every = trainer.log_every_n_steps
        if every <= 0 or trainer.global_step % every:
            return
        for name in ("train/d_loss", "train/g_loss"):
            value = trainer.callback_metrics.get(name)
            if value is not None and not math.isfinite(float(value)):
                raise DivergenceError(
                    f"training diverged at step {trainer.global_step}: {name} = {float(value)}; lower the learning "
                    "rates or add a regularizer (R1, GradientPenalty); checkpoints written before are kept"
                )
