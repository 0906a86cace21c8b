"""A lean training batch for Lightning's epoch loop on one device.

For every training batch, Lightning's epoch loop dispatches a dozen hooks: ``on_train_batch_start`` and
``on_train_batch_end`` to every callback and to the module, three hooks that move the batch, the strategy's
``training_step`` and ``on_train_batch_start``. Each dispatch goes through the profiler and records which hook is
running, whether anything implements the hook or not. Around a GAN step of a few milliseconds this bookkeeping is
the largest cost after the step itself (about half a millisecond per batch on a laptop CPU).

``lean_advance`` runs one training batch with the same bookkeeping as Lightning's own
(``_TrainingEpochLoop.advance``): the same batch-progress counters, the logger connector before and after, the
training step under the precision plugin's context with the manual-optimization step counting attached to the
optimizers, ``_current_fx_name`` set around every hook it calls. The difference: it calls only the callbacks'
hooks that are implemented, moves the batch with ``move_data_to_device`` (what the default
``transfer_batch_to_device`` does, leaving a tuple or list of tensors already on the device as it is), skips the
no-op strategy hooks and the learning-rate updates that manual optimization never makes, and, on batches where
nothing has been logged since the last recomputation of the logged values, that recomputation (they are what they
were; the module counts its ``log`` calls, callbacks' included, in ``_log_calls``). It also skips what it can tell
does nothing on this batch: the base precision plugin's input conversion and step context (a plugin with its own,
such as bf16-mixed's autocast, gets them), the connector's write to the loggers off the logging steps, and the
reset of the validation loop's restart flags when none is set; and it reaches the loop's own result collection
directly (``trainer._results`` finds it through the trainer's running stage, several string-enum comparisons a
look).

``GAN`` installs it for a fit only where that is exactly equivalent (``lean_loop_possible``): one device
(``SingleDeviceStrategy``), Lightning's default no-op profiler, manual optimization, Lightning's own epoch loop,
a ``training_step(batch, batch_idx)`` and no ``on_train_batch_start`` in the module. The first batch after resuming
in the middle of an epoch and a data loader iterator given to the step go through Lightning's own ``advance``;
batch-transfer hooks implemented by the module or the data module are dispatched as Lightning dispatches them.
Where the fit has no validation and no gradient accumulation, the end of each batch (``lean_advance_end``) skips
the checks for validation and learning-rate updates that could not apply.

Logging has a cost of its own, under every strategy: ``LightningModule.log`` moves the logged value's accumulator
to the value's device at every call, which costs far more than the rest of the call. ``GAN.log`` gives the
accumulators a move that returns at once when they are on that device already (``_ResultMetricOnDevice``).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.fabric.plugins.precision.precision import Precision as FabricPrecision
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.loops.fetchers import _DataFetcher, _DataLoaderIterDataFetcher
from lightning.pytorch.loops.loop import _Loop
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer import call
from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
import torch
from torch import Tensor

BATCH_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def lean_loop_possible(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether ``lean_advance`` runs a training batch exactly as Lightning's epoch loop would for this fit."""
    return (type(trainer.strategy) is SingleDeviceStrategy
            and trainer.strategy.model is module
            and isinstance(trainer.profiler, PassThroughProfiler)
            and not module.automatic_optimization
            and type(trainer.fit_loop.epoch_loop) is _TrainingEpochLoop
            and not is_overridden("on_train_batch_start", module, pl.LightningModule)
            and is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2))


def install(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Run this fit's training batches through ``lean_advance`` when ``lean_loop_possible``; returns whether it
    does. ``uninstall`` gives the loop back its own ``advance`` (a fit stopped by an exception keeps it, but
    ``lean_advance`` serves only the module that installed it, and the next fit installs afresh)."""
    uninstall(trainer)
    if not lean_loop_possible(trainer, module):
        return False
    loop = trainer.fit_loop.epoch_loop
    datamodule = getattr(trainer, "datamodule", None)
    loop._lean_module = module
    loop._lean_own_transfer = not (
        any(is_overridden(hook, module, pl.LightningModule) for hook in BATCH_TRANSFER_HOOKS)
        or (datamodule is not None
            and any(is_overridden(hook, datamodule, pl.LightningDataModule) for hook in BATCH_TRANSFER_HOOKS)))
    loop._lean_batch_end = is_overridden("on_train_batch_end", module, pl.LightningModule)
    loop._lean_callbacks = None  # (the trainer's callbacks by id, those with on_train_batch_start, ... _end)
    loop._lean_log_calls = None  # the module's log-call count when the logged values were last recomputed
    plugin = type(trainer.precision_plugin)
    # The base precision plugin's input conversion returns the batch as it is and its step context is a
    # nullcontext: a lean batch skips both calls.
    loop._lean_convert = plugin.convert_input is not FabricPrecision.convert_input
    loop._lean_context = not (plugin.train_step_context is Precision.train_step_context
                              and plugin.forward_context is FabricPrecision.forward_context)
    # Lightning resets the validation loop's restart flag (and its child loops') at every batch; a lean batch
    # does it only when one of them is set.
    loop._lean_val_loops = _loops_under(loop.val_loop)
    loop.advance = MethodType(lean_advance, loop)
    if not trainer.enable_validation and trainer.accumulate_grad_batches == 1:
        loop.on_advance_end = MethodType(lean_advance_end, loop)
    return True


def uninstall(trainer: pl.Trainer) -> None:
    loop = trainer.fit_loop.epoch_loop
    for name in ("advance", "on_advance_end", "_lean_module", "_lean_own_transfer", "_lean_batch_end",
                 "_lean_callbacks", "_lean_log_calls", "_lean_convert", "_lean_context", "_lean_val_loops"):
        loop.__dict__.pop(name, None)


def _loops_under(loop: _Loop) -> list[_Loop]:
    """``loop`` and every loop below it, as ``_Loop.restarting``'s setter reaches them."""
    found = [loop]
    for value in vars(loop).values():
        if isinstance(value, _Loop):
            found.extend(_loops_under(value))
    return found


def _batch_callbacks(loop: _TrainingEpochLoop, trainer: pl.Trainer) -> tuple[tuple, list, list]:
    """The callbacks that implement ``on_train_batch_start`` and those that implement ``on_train_batch_end``, in
    the trainer's order; found again whenever the list of callbacks changes."""
    callbacks = trainer.callbacks
    ids = tuple(map(id, callbacks))
    found = loop._lean_callbacks
    if found is None or found[0] != ids:
        found = loop._lean_callbacks = (
            ids, [cb for cb in callbacks if is_overridden("on_train_batch_start", cb, pl.Callback)],
            [cb for cb in callbacks if is_overridden("on_train_batch_end", cb, pl.Callback)])
    return found


def lean_advance(self: _TrainingEpochLoop, data_fetcher: _DataFetcher) -> None:
    """One training batch: ``_TrainingEpochLoop.advance`` without the dispatches that would do nothing."""
    trainer = self.trainer
    module = trainer.lightning_module
    if self._restarting or module is not self._lean_module or isinstance(data_fetcher, _DataLoaderIterDataFetcher):
        return _TrainingEpochLoop.advance(self, data_fetcher)
    for loop in self._lean_val_loops:
        if loop._restarting:
            self.val_loop.restarting = False
            break

    batch, _, __ = next(data_fetcher)
    batch_idx = self.batch_idx + 1
    progress = self.batch_progress
    progress.is_last_batch = data_fetcher.done
    if self._lean_convert:
        batch = trainer.precision_plugin.convert_input(batch)
    if self._lean_own_transfer:
        device = trainer.strategy.root_device
        if not (type(batch) in (tuple, list) and all(isinstance(t, Tensor) and t.device == device for t in batch)):
            batch = move_data_to_device(batch, device)
    else:
        batch = module._on_before_batch_transfer(batch, dataloader_idx=0)
        batch = call._call_strategy_hook(trainer, "batch_to_device", batch, dataloader_idx=0)
    progress.increment_ready()
    # The logger connector's on_batch_start; while training, trainer._results is this loop's _results.
    connector = trainer._logger_connector
    first = connector._first_loop_iter
    if first is None:
        connector._first_loop_iter = True
    elif first is True:
        connector._first_loop_iter = False
    results = self._results
    results.batch = batch
    results.batch_size = None
    results.dataloader_idx = None

    state = module.__dict__  # _current_fx_name is a plain attribute: set without nn.Module.__setattr__
    previous = state["_current_fx_name"]
    _, starts, ends = _batch_callbacks(self, trainer)
    if starts:
        state["_current_fx_name"] = "on_train_batch_start"
        for callback in starts:
            callback.on_train_batch_start(trainer, module, batch, batch_idx)
    progress.increment_started()

    manual = self.manual_optimization
    manual.on_run_start()  # the optimizers' step counting
    state["_current_fx_name"] = "training_step"
    try:
        if self._lean_context:
            with trainer.precision_plugin.train_step_context():
                step_output = module.training_step(batch, batch_idx)
        else:
            step_output = module.training_step(batch, batch_idx)
        state["_current_fx_name"] = previous
        manual._output = ({} if step_output is None
                          else manual.output_result_cls.from_training_step_output(step_output).asdict())
    except StopIteration:  # as Lightning's manual-optimization loop: the batch ends without output
        pass
    manual._restarting = False
    output = manual.on_run_end()
    progress.increment_processed()

    if ends or self._lean_batch_end:
        state["_current_fx_name"] = "on_train_batch_end"
        for callback in ends:
            callback.on_train_batch_end(trainer, module, output, batch, batch_idx)
        if self._lean_batch_end:
            module.on_train_batch_end(output, batch, batch_idx)
        state["_current_fx_name"] = previous
    log_calls = getattr(module, "_log_calls", None)
    if log_calls is None or log_calls != self._lean_log_calls:
        connector.on_batch_end()
        self._lean_log_calls = log_calls
    else:  # nothing logged since the last recomputation: the logged values are as they were; drop the batch
        results.batch = None
        results.batch_size = None
    progress.increment_completed()
    # The connector's update_train_step_metrics writes to the loggers only on logging steps (under manual
    # optimization): called when this is one.
    every = trainer.log_every_n_steps
    if (every and ((self._batches_that_stepped + 1) % every == 0 or trainer.should_stop)) or trainer.fast_dev_run:
        connector.update_train_step_metrics()


def lean_advance_end(self: _TrainingEpochLoop, data_fetcher: _DataFetcher) -> None:
    """``_TrainingEpochLoop.on_advance_end`` for a fit without validation, with manual optimization and without
    gradient accumulation (``install`` checks): there is no validation to look for, no learning-rate schedule for
    the loop to update (the module steps its own), and every batch is one that stepped. The loggers still save
    when the trainer is asked to stop, and a SIGTERM still ends the fit."""
    self._skip_next_val = False
    self._batches_that_stepped += 1
    trainer = self.trainer
    if trainer.should_stop:
        for logger in trainer.loggers:
            logger.save()
    if trainer.received_sigterm and not self._is_training_done:
        raise SIGTERMException


# ------------------------------------------------------------------------------------------------ logged values
# What the attributes of a logged value's accumulator hold besides tensors and dictionaries: nothing that can hold
# a tensor.
_TENSOR_FREE = frozenset({bool, int, float, str, type(None), torch.device, torch.dtype, FunctionType, MethodType,
                          BuiltinFunctionType, inspect.Signature, _Metadata})


def _all_on(state: Mapping[str, Any], device: torch.device) -> Optional[bool]:
    """Whether every tensor among ``state``'s values, and among the values of the dictionaries in it, is on
    ``device``. ``None`` (not known) where a value is none of: a tensor, a value of a kind in ``_TENSOR_FREE``, an
    empty set, a dictionary whose values are tensors or of kinds in ``_TENSOR_FREE``."""
    for value in state.values():
        kind = type(value)
        if kind in _TENSOR_FREE:
            continue
        if isinstance(value, Tensor):
            if value.device != device:
                return False
        elif kind is dict or kind is OrderedDict:
            for item in value.values():
                if isinstance(item, Tensor):
                    if item.device != device:
                        return False
                elif type(item) not in _TENSOR_FREE:
                    return None
        elif not (kind is set and not value):
            return None
    return True


class _ResultMetricOnDevice(_ResultMetric):
    """Lightning's accumulator of a logged value, whose ``to(device)`` returns at once when every tensor it holds
    is already on ``device``.

    ``LightningModule.log`` moves the accumulator to the logged value's device on every call. Lightning's ``to``
    rebuilds the accumulator's whole attribute dictionary (some 45 entries: hook dictionaries, a deep copy of its
    metadata) to find its two or three tensors, about 0.4 ms a call on a laptop CPU: most of the cost of logging,
    and 3 to 4 ms on a GAN step that logs eight to ten values. When the tensors are where they are asked to go,
    that rebuild changes nothing (moving a tensor to its own device returns it), so this skips it; any other call
    is Lightning's."""

    def to(self, *args: Any, **kwargs: Any) -> "_ResultMetric":
        if not kwargs and len(args) == 1 and isinstance(args[0], torch.device) and _all_on(self.__dict__, args[0]):
            return self
        return super().to(*args, **kwargs)


def on_device_results(results: Any) -> None:
    """Gives the accumulators in ``results`` (the trainer's ``_results``) the ``to`` of ``_ResultMetricOnDevice``."""
    for metric in results.values():
        if type(metric) is _ResultMetric:
            metric.__class__ = _ResultMetricOnDevice
