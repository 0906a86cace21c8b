"""Checkpoints that survive a kill, and a clean stop when the scheduler says the time is up.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the target's folder, flushes and
  fsyncs it, and only then renames it onto the target, so a process killed at any moment of a save leaves the
  previous checkpoint in place and never a truncated file. ``Trainer(plugins=[AtomicCheckpointIO()])``.
- :class:`Preemption` catches SIGTERM and SIGUSR1 (SLURM sends SIGUSR1 ahead of the time limit with ``#SBATCH
  --signal=USR1@90``, and SIGTERM when it cancels or preempts a job), writes ``last.ckpt`` at the end of the
  current generator step, prints how to resume, and stops; a CLI then exits with :data:`PREEMPTED_EXIT_CODE`.
  Under SLURM it then hands SIGUSR1 on to Lightning's auto-requeue (``SLURMEnvironment(auto_requeue=True)``, what
  Lightning picks by itself for a job launched with ``srun``), which saves ``hpc_ckpt_<n>.ckpt`` in the run
  directory and runs ``scontrol requeue``; the requeued job, in the same run directory, resumes from that file.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Optional, Union

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from gan_lightning.errors import UserError
from gan_lightning.runtime.files import atomic_write

PREEMPTED_EXIT_CODE = 128 + int(signal.SIGTERM)  # 143, as for a process ended by SIGTERM: the run did not finish.
PREEMPTED_METRIC = "preemption/signal"  # trainer.callback_metrics entry: the signal number, after a preemption.

_Handler = Union[Callable[[int, Optional[FrameType]], Any], int, None]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.<random>.tmp`` next to the target, flush, fsync, ``os.replace`` onto the
    target, fsync the folder (``gan_lightning.runtime.files.atomic_write``). A failed write removes the temporary
    file and re-raises; a process killed during the write leaves the target as it was (and the temporary file,
    which may be deleted). Remote paths (``s3://...``) go through Lightning's own transactional save."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)


def checkpoint_dir(trainer: pl.Trainer) -> str:
    """Where checkpoints of this run go: the ``ModelCheckpoint`` callback's folder if there is one, else
    ``<default_root_dir>/checkpoints``."""
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return str(dirpath) if dirpath else os.path.join(trainer.default_root_dir, "checkpoints")


def resume_hint(path: str, argv: Optional[list[str]] = None) -> str:
    """How to continue from ``path``: the ``fit`` command line this process was started with (``argv``, default
    ``sys.argv``) minus any ``--ckpt_path``, plus ``--ckpt_path <path>``; or a ``trainer.fit`` call when the
    process was not started by a ``fit`` command line."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] != "fit":
        return f"trainer.fit(..., ckpt_path={path!r})"
    program = Path(argv[0])
    if (program.name == "__main__.py" and program.parent.name == "gan_lightning") or program.name == "gan-lightning":
        command = ["python", "-m", "gan_lightning"]
    else:
        command = ["python", argv[0]]
    args, rest = [], iter(argv[2:])
    for arg in rest:
        if arg == "--ckpt_path":
            next(rest, None)
        elif not arg.startswith("--ckpt_path="):
            args.append(arg)
    return shlex.join([*command, "fit", *args, "--ckpt_path", path])


class Preemption(pl.Callback):
    """On SIGTERM or SIGUSR1: a checkpoint of the current step in ``<checkpoint dir>/last.ckpt``, one line on
    stderr saying how to resume, and a clean stop.

    The signal handler only records the signal. At the end of the current training batch (one generator
    iteration) the callback writes ``last.ckpt`` (in the ``ModelCheckpoint`` callback's folder if there is one,
    else ``<default_root_dir>/checkpoints``) with ``trainer.save_checkpoint``, prints on process 0::

        preempted at step N: saved <path>; resume with: python -m gan_lightning fit <args> --ckpt_path <path>

    and sets ``trainer.should_stop``, so the other callbacks' ``on_train_end`` still run. Afterwards
    ``preempted`` is True, ``signum`` holds the signal number, ``path`` the checkpoint, and
    ``trainer.callback_metrics["preemption/signal"]`` the signal number too (it reaches the main process of a
    ``gan_ddp_spawn`` run); a CLI returns :data:`PREEMPTED_EXIT_CODE` so that a scheduler sees that the run did
    not finish.

    Multi-process runs: each process records the signals it receives; after every training batch one
    all_reduce (max) of a one-element tensor combines them, so every process saves and stops at the same step
    even when only some of them got the signal. Launch the processes so that the signal reaches them (SLURM and
    torchrun signal every worker); with ``gan_ddp_spawn``/``gan_ddp_fork`` the launching process itself is not
    covered.

    Lightning's own handlers: ``Trainer.fit`` installs a SIGTERM handler after ``on_fit_start`` and, when the
    cluster environment is a ``SLURMEnvironment`` with ``auto_requeue`` (Lightning's default under ``srun``), a
    handler for its ``requeue_signal`` (SIGUSR1) that saves ``<default_root_dir>/hpc_ckpt_<n>.ckpt`` and runs
    ``scontrol requeue <job id>`` on process 0; a later ``fit`` under SLURM without ``ckpt_path``, in the same
    ``default_root_dir`` (``fit``'s run directory is named from ``SLURM_JOB_ID``, which a requeued job keeps),
    resumes from the newest such file. This callback installs its handlers in ``on_train_start``, after Lightning's,
    and keeps the ones they replace. At the end of the step, after writing ``last.ckpt``, it calls the replaced
    handler of the signal it got (Lightning's requeue, if installed), so that handler runs between steps instead of
    in the middle of one, with the other callbacks' state consistent. SIGTERM is the exception: Lightning's SIGTERM
    handler would end the run with ``SIGTERMException`` at the next step, without a checkpoint, so it is not called
    (under SLURM, SIGTERM comes after the requeue or from ``scancel``). Give :class:`Preemption` the same signal as
    ``SLURMEnvironment(requeue_signal=...)`` when it is not SIGUSR1. The replaced handlers are put back in
    ``on_train_end`` (or ``on_exception``), before Lightning restores the handlers it found when ``fit`` began. A
    signal that arrives after the last training batch is recorded in ``signum`` but, the run having finished, does
    not count as a preemption. Handlers can only be installed in the main thread; elsewhere the callback warns and
    does nothing.
    """

    def __init__(
        self,
        signals: Optional[list[str]] = None,  # Signal names that stop the run; default ["SIGTERM", "SIGUSR1"].
    ) -> None:
        names = ["SIGTERM", "SIGUSR1"] if signals is None else list(signals)
        self.signals: list[signal.Signals] = []
        for name in names:
            sig = getattr(signal, str(name).upper(), None)
            if not isinstance(sig, signal.Signals) or sig in (signal.SIGKILL, signal.SIGSTOP):
                raise UserError(f"Preemption.signals: {name!r} is not a signal that can be caught; use names such "
                                "as SIGTERM, SIGUSR1, SIGUSR2, SIGINT")
            self.signals.append(sig)
        self.preempted = False
        self.signum: Optional[int] = None
        self.path: Optional[str] = None
        self._received = 0
        self._previous: dict[signal.Signals, _Handler] = {}

    def _handler(self, signum: int, frame: Optional[FrameType]) -> None:
        self._received = int(signum)
        self.signum = int(signum)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.preempted, self.signum, self.path, self._received = False, None, None, 0
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("Preemption: signal handlers can only be installed in the main thread; the run will not "
                           "checkpoint on a signal")
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handler)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        received = self._received
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            flag = torch.tensor([received], device=trainer.strategy.root_device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        if received:
            self._stop(trainer, received)

    def _stop(self, trainer: pl.Trainer, signum: int) -> None:
        path = os.path.join(checkpoint_dir(trainer), "last.ckpt")
        trainer.save_checkpoint(path, weights_only=False)  # every process takes part; process 0 writes
        self.preempted, self.signum, self.path = True, signum, path
        trainer.callback_metrics[PREEMPTED_METRIC] = torch.tensor(float(signum))
        if trainer.is_global_zero:
            print(f"preempted at step {trainer.global_step}: saved {path}; resume with: {resume_hint(path)}",
                  file=sys.stderr, flush=True)
        trainer.should_stop = True
        self._chain(signum)

    def _chain(self, signum: int) -> None:
        """Call the handler this callback replaced for ``signum`` (Lightning's SLURM requeue, which saves its
        ``hpc_ckpt`` and requeues the job): every process, at the same step, since its save is collective. Not for
        SIGTERM, nor Python's SIGINT handler (a KeyboardInterrupt after a clean stop), nor the default or ignoring
        dispositions."""
        if signum == signal.SIGTERM:
            return
        previous = self._previous.get(signal.Signals(signum))
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()


def was_preempted(trainer: pl.Trainer) -> bool:
    """Whether the last ``fit`` of ``trainer`` stopped on a signal (a :class:`Preemption` callback, in this
    process or in the processes a spawn/fork launcher started)."""
    if any(isinstance(c, Preemption) and c.preempted for c in trainer.callbacks):
        return True
    value = trainer.callback_metrics.get(PREEMPTED_METRIC)
    return value is not None and float(value) > 0


class RunCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same options), whose ``save_last`` also holds at the end of training:
    Lightning writes ``last.ckpt`` at the end only when no checkpoint was saved during the fit, so a run whose
    ``max_steps`` is not a multiple of ``every_n_train_steps`` would end with a ``last.ckpt`` of an earlier step.
    Here a finished run's ``last.ckpt`` is always its final step (not after a preemption, which wrote its own)."""

    saved_step: int = -1  # the generator step of the newest checkpoint any callback wrote in this fit

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self.dirpath and self.saved_step != trainer.global_step \
                and not trainer.fast_dev_run and not was_preempted(trainer):
            path = os.path.join(self.dirpath, f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
            trainer.save_checkpoint(path, weights_only=False)
            self.last_model_path = path
            return
        super().on_train_end(trainer, pl_module)
