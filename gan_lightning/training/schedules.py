"""Learning-rate schedules that the ``torch.optim.lr_scheduler`` classes do not give in one YAML entry.

Used through ``model.g_lr_scheduler`` / ``model.d_lr_scheduler``, which step once per generator iteration::

    g_lr_scheduler:
      class_path: gan_lightning.training.LinearDecay
      init_args: {decay_start: 0.6}   # total_steps: trainer.max_steps unless given
"""

from __future__ import annotations

from typing import Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from gan_lightning.errors import UserError


class LinearDecay(LRScheduler):
    """Constant learning rate, then linear decay to 0 over the last ``1 - decay_start`` of ``total_steps``
    (with ``decay_start = 0``, the linear decay of SNGAN and BigGAN). Past ``total_steps`` the rate stays 0.

    ``total_steps = None`` means the run's ``trainer.max_steps`` (filled in by ``GAN.configure_optimizers``)."""

    def __init__(
        self, optimizer: Optimizer, total_steps: Optional[int] = None, decay_start: float = 0.0, last_epoch: int = -1
    ) -> None:
        if total_steps is not None and total_steps < 1:
            raise UserError(f"LinearDecay.total_steps: must be >= 1 (or null for trainer.max_steps), got {total_steps}")
        if not 0.0 <= decay_start < 1.0:
            raise UserError(f"LinearDecay.decay_start: must be a fraction of total_steps in [0, 1), got {decay_start}")
        self.total_steps = None if total_steps is None else int(total_steps)
        self.decay_start = float(decay_start)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def factor(self, step: int) -> float:
        if self.total_steps is None:
            if step > 0:
                raise UserError("LinearDecay.total_steps: not set; give it, or train with trainer.max_steps")
            return 1.0
        start = self.decay_start * self.total_steps
        if step <= start:
            return 1.0
        return max(0.0, (self.total_steps - step) / (self.total_steps - start))
