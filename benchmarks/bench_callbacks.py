"""Callbacks the benchmarks add to a ``python -m gan_lightning fit`` run on its command line (this folder on
``PYTHONPATH``)::

    --trainer.callbacks+=bench_callbacks.FirstStepClock
    --trainer.callbacks+=bench_callbacks.MetricTimer
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Optional

import lightning.pytorch as pl

FIRST_STEP = "first training step at"


class FirstStepClock(pl.Callback):
    """Prints ``first training step at <time.time()>`` on stdout when the first training batch starts, so that the
    launching process can subtract the time it started the command."""

    def __init__(self) -> None:
        self.printed = False

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if not self.printed:
            self.printed = True
            print(f"{FIRST_STEP} {time.time():.6f}", flush=True)


def first_step_time(output: str) -> Optional[float]:
    """The time ``FirstStepClock`` printed in a run's output, or None."""
    found = re.search(re.escape(FIRST_STEP) + r" ([0-9.]+)", output)  # a progress bar may share its line
    return float(found.group(1)) if found else None


class MetricTimer(pl.Callback):
    """Times the metric callbacks of the run (``ToyMetrics``, ``ImageMetrics``): every call of their
    ``on_train_batch_end`` and ``on_train_end`` hooks, and which calls computed metrics (the callback's ``last``
    values changed). Writes ``<run dir>/metric_timing.json`` when fit ends::

        {"fit_seconds": ..., "metric_seconds": ..., "evaluations": [{"callback", "step", "start", "seconds"}]}

    ``start`` is seconds since fit started; ``fit_seconds`` runs from fit start to fit end, after every
    callback's ``on_train_end``."""

    HOOKS = ("on_train_batch_end", "on_train_end")

    def __init__(
        self,
        out: Optional[str] = None,  # JSON file to write; default <run dir>/metric_timing.json.
    ) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.metric_seconds = 0.0
        self.evaluations: list[dict[str, Any]] = []

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        from gan_lightning.metrics.callbacks import ImageMetrics, ToyMetrics

        for callback in trainer.callbacks:
            if isinstance(callback, (ToyMetrics, ImageMetrics)):
                for hook in self.HOOKS:
                    setattr(callback, hook, self._timed(callback, getattr(callback, hook), trainer))

    def _timed(self, callback: Any, hook: Any, trainer: pl.Trainer) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            before = getattr(callback, "last", None)
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                self.metric_seconds += seconds
                if getattr(callback, "last", None) is not before:
                    self.evaluations.append({"callback": type(callback).__name__, "step": trainer.global_step,
                                             "start": start - self.t0, "seconds": seconds})

        return timed

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.t0 = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        out = self.out or os.path.join(trainer.default_root_dir, "metric_timing.json")
        with open(out, "w") as f:
            json.dump({"fit_seconds": time.perf_counter() - self.t0, "metric_seconds": self.metric_seconds,
                       "evaluations": self.evaluations}, f, indent=2)
