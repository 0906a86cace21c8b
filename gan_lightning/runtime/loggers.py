"""The loggers a ``fit`` run writes to: ``<run_dir>/metrics.csv`` (:class:`MetricsCSV`, always) and W&B
(:class:`WandbLogger`, online when :func:`wandb_has_key`, else offline)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import loggers as lightning_loggers
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from gan_lightning.runtime.compat import drop_wandb_init_setting
from gan_lightning.runtime.files import atomic_write


def wandb_has_key() -> bool:
    """Whether W&B can log online without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class WandbLogger(lightning_loggers.WandbLogger):
    """Lightning's WandbLogger as a CLI run uses it: the run config is the resolved config that the CLI's
    ``RunConfig`` gives it, once, not the module's hyperparameters flattened beside it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lightning always passes wandb.init an `anonymous` setting, which W&B ignores and warns about.
        drop_wandb_init_setting(self, "anonymous")

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the resolved config reaches W&B through the CLI's ``RunConfig``."""


class MetricsCSV(Logger):
    """Every logged value in ``<run_dir>/metrics.csv``, in Lightning's CSVLogger format: a ``step`` column (the
    step Lightning logs the values at) and one column per key, sorted, empty on rows that do not log the key;
    rows are written as they are logged. A run continued in its own run directory (``--ckpt_path`` with the same
    ``--run_dir``) keeps the earlier rows below the step it continues from."""

    def __init__(self, run_dir: str) -> None:  # The run directory; the file is <run_dir>/metrics.csv.
        super().__init__()
        self.run_dir = str(run_dir)
        self.path = os.path.join(self.run_dir, "metrics.csv")
        self.keys: list[str] = []
        self._started = False

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return self.run_dir

    @property
    def log_dir(self) -> str:
        return self.run_dir

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: ``config.yaml`` beside the file holds the resolved config."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        row: dict[str, Any] = {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
        row["step"] = int(step) if step is not None else 0
        rows: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            if os.path.isfile(self.path):  # continued run: keep what was logged before this step
                with open(self.path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) < row["step"]]
                self.keys = sorted(set().union(*rows)) if rows else []
            self._write(rows, rewrite=True)
        if set(row) - set(self.keys):
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.keys = sorted(set(self.keys) | set(row))
            self._write(rows + [row], rewrite=True)
        else:
            self._write([row], rewrite=False)

    def _write(self, rows: list[dict[str, Any]], rewrite: bool) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        if rewrite:
            with atomic_write(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.keys)
                if self.keys:
                    writer.writeheader()
                writer.writerows(rows)
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.keys).writerows(rows)


def log_at_step(trainer: Any, values: dict[str, Any]) -> None:
    """Hand ``values`` (floats or scalar tensors) to every logger of ``trainer`` at ``trainer.global_step``, the
    number of generator steps done, and put them in ``trainer.callback_metrics``, where Lightning's callbacks
    (``ModelCheckpoint(monitor=...)``, ``EarlyStopping``, the divergence guard, the progress bar) read them.

    Training values (``train/*``, after the step's generator update) and evaluations (``val/*``, run after that
    update) of the same generator step thus share one step value. Tensors reach the host in one transfer."""
    names = [k for k, v in values.items() if isinstance(v, torch.Tensor)]
    host = dict(values)
    if names:
        stacked = torch.stack([values[k].detach().reshape(()).float() for k in names]).tolist()
        host.update(zip(names, stacked))
    host = {k: float(v) for k, v in host.items()}
    for logger in trainer.loggers:
        logger.log_metrics(host, step=trainer.global_step)
        logger.save()
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in host.items()})


def writes_metrics_csv(logger: Any, run_dir: str) -> bool:
    """Whether ``logger`` already writes ``<run_dir>/metrics.csv``."""
    if isinstance(logger, MetricsCSV):
        return os.path.abspath(logger.run_dir) == os.path.abspath(run_dir)
    if isinstance(logger, lightning_loggers.CSVLogger):
        return os.path.abspath(logger.log_dir) == os.path.abspath(run_dir)
    return False
