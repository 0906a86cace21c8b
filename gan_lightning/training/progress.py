"""The training progress bar: one bar over the whole run, counting generator steps, with the losses and D's
readouts as last logged."""

from __future__ import annotations

from typing import Any, Union

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

# What the bar shows of ``trainer.callback_metrics``, under shorter names.
SHOWN = {"train/d_loss": "d_loss", "train/g_loss": "g_loss", "train/d_real": "D(x)", "train/d_fake": "D(G(z))",
         "progress/kimg": "kimg"}


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting generator steps up to ``max_steps`` across epochs of the data loader (a GAN
    run is measured in steps, and the default experiment's loader is short: its epochs say little). The bar shows
    D's and G's loss, D(x), D(G(z)) and thousands of real images seen as last logged, so they change every
    ``log_every_n_steps``. ``fit`` uses it unless the trainer's callbacks name another progress bar."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        bar = self.train_progress_bar
        bar.reset(total=convert_inf(trainer.estimated_stepping_batches))
        bar.initial = bar.n = trainer.global_step  # a resumed run starts where its checkpoint left off
        bar.set_description("Training")

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        """Nothing: the bar spans the whole run, not an epoch."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        bar, step = self.train_progress_bar, trainer.global_step
        if not bar.disable and (step % self.refresh_rate == 0 or step == bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Union[int, str, float]]:
        items = {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}
        logged = trainer.callback_metrics
        items.update({short: float(logged[key]) for key, short in SHOWN.items() if key in logged})
        return items
