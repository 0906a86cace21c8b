"""The lean training batch (``gan_lightning.training.loop``): one-device fits run it, and it does exactly what Lightning's
epoch loop does: the same hooks with the same arguments, the same progress counters, the same logged values and
the same weights. Everything unusual runs Lightning's own loop."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.profilers import SimpleProfiler

from gan_lightning.training import loop as lean_loop
from gan_lightning.data import ToyDataModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import R1
from gan_lightning.training.system import GAN

BATCH = 8
TIMING = {"progress/seconds", "progress/sec_per_kimg"}  # wall-clock values: differ between any two runs


def tiny_gan(cls: type = GAN, **kwargs) -> GAN:
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8, 8])
    d = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=2)
    return cls(g, d, regularizers=[R1(gamma=0.1)], ema_decay=0.9, **kwargs)


class HookLog(pl.Callback):
    """Records every batch hook with its arguments and what the trainer reports at the time, and logs from
    ``on_train_batch_end`` (which Lightning accepts only while the hook is named as running): every fourth step
    a step value, every fifth an epoch mean shown in the progress bar; the batches in between log nothing from
    here, and the module logs every third. Each epoch's start logs the epoch, between batches."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lean: list[bool] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # An epoch value logged between batches, outside any training batch.
        pl_module.log("callback/epoch", float(trainer.current_epoch), on_step=False, on_epoch=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        loop = trainer.fit_loop.epoch_loop
        self.lean.append(getattr(loop.advance, "__func__", None) is lean_loop.lean_advance)
        self.calls.append(("start", batch_idx, trainer.global_step, pl_module._current_fx_name,
                           batch[0].sum().item(), loop.batch_progress.current.ready))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        progress = trainer.fit_loop.epoch_loop.batch_progress
        self.calls.append(("end", batch_idx, trainer.global_step, pl_module._current_fx_name, outputs,
                           batch[0].sum().item(), progress.current.processed, progress.total.completed,
                           progress.is_last_batch))
        if trainer.global_step % 4 == 0:
            pl_module.log("callback/step", float(trainer.global_step), on_step=True, on_epoch=False)
        if trainer.global_step % 5 == 0:
            pl_module.log("callback/mean", float(batch_idx), on_step=False, on_epoch=True, prog_bar=True)


def _fit(tmp_path: Path, name: str, steps: int = 19, cls: type = GAN, callbacks: tuple = (), **trainer_kwargs):
    """19 generator steps over epochs of 8 batches, logging every 3 steps to a CSV file."""
    model = tiny_gan(cls)
    log = HookLog()
    torch.manual_seed(1)
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=3,
                         logger=CSVLogger(str(tmp_path), name=name, version=0), callbacks=[log, *callbacks], **trainer_kwargs)
    trainer.fit(model, ToyDataModule(num_samples=64, batch_size=BATCH))
    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in rows]
    return model, trainer, log, rows


def test_lean_batches_do_exactly_what_lightnings_loop_does(tmp_path, monkeypatch):
    lean_model, lean_trainer, lean_log, lean_rows = _fit(tmp_path, "lean")
    assert all(lean_log.lean) and len(lean_log.lean) == 19
    monkeypatch.setattr(lean_loop, "lean_loop_possible", lambda trainer, module: False)
    own_model, own_trainer, own_log, own_rows = _fit(tmp_path, "lightning")
    assert not any(own_log.lean)

    assert lean_log.calls == own_log.calls
    assert [c[3] for c in lean_log.calls] == ["on_train_batch_start", "on_train_batch_end"] * 19
    assert lean_trainer.global_step == own_trainer.global_step == 19
    assert lean_trainer.fit_loop.state_dict() == own_trainer.fit_loop.state_dict()
    assert lean_trainer.fit_loop.epoch_loop._batches_that_stepped == 19
    assert lean_rows == own_rows and len(lean_rows) >= 6
    assert {"train/d_loss", "train/g_loss", "callback/step", "callback/mean"} <= set(lean_rows[0])
    for name in ("callback_metrics", "logged_metrics", "progress_bar_metrics"):
        lean_values, own_values = getattr(lean_trainer, name), getattr(own_trainer, name)
        assert lean_values.keys() == own_values.keys(), name
        for key in lean_values.keys() - TIMING:
            assert torch.equal(torch.as_tensor(lean_values[key]), torch.as_tensor(own_values[key])), (name, key)
    assert {"callback/step", "callback/mean", "callback/epoch", "train/d_loss"} <= lean_trainer.callback_metrics.keys()
    lean_state, own_state = lean_model.state_dict(), own_model.state_dict()
    assert lean_state.keys() == own_state.keys()
    for key in lean_state:
        assert torch.equal(lean_state[key], own_state[key]), key


def test_a_precision_plugin_with_a_step_context_gets_it_on_lean_batches(tmp_path, monkeypatch):
    """bf16-mixed runs each training step under autocast: the lean batch enters the plugin's step context (the
    base plugin's, a no-op, it skips), so its weights are those of Lightning's loop, and not those of full
    precision."""
    lean_model, _, lean_log, lean_rows = _fit(tmp_path, "lean", steps=6, precision="bf16-mixed")
    assert all(lean_log.lean)
    full_model, _, _, _ = _fit(tmp_path, "full", steps=6)
    monkeypatch.setattr(lean_loop, "lean_loop_possible", lambda trainer, module: False)
    own_model, _, own_log, own_rows = _fit(tmp_path, "lightning", steps=6, precision="bf16-mixed")
    assert not any(own_log.lean) and lean_log.calls == own_log.calls and lean_rows == own_rows
    lean_state, own_state, full_state = lean_model.state_dict(), own_model.state_dict(), full_model.state_dict()
    for key in lean_state:
        assert torch.equal(lean_state[key], own_state[key]), key
    assert any(not torch.equal(lean_state[key], full_state[key]) for key in lean_state)


def test_the_loop_gets_its_own_advance_back_after_fit(tmp_path):
    _, trainer, log, _ = _fit(tmp_path, "run", steps=3)
    assert all(log.lean)
    assert "advance" not in vars(trainer.fit_loop.epoch_loop)


def test_a_profiler_gets_lightnings_loop_with_every_hook(tmp_path):
    profiler = SimpleProfiler()
    _, trainer, log, _ = _fit(tmp_path, "profiled", steps=5, profiler=profiler)
    assert not any(log.lean)
    assert any("on_train_batch_start" in action for action in profiler.recorded_durations)


class WithBatchStart(GAN):
    def on_train_batch_start(self, batch, batch_idx):
        self.starts = getattr(self, "starts", 0) + 1


def test_a_module_with_its_own_batch_start_gets_lightnings_loop(tmp_path):
    model, _, log, _ = _fit(tmp_path, "batch_start", steps=5, cls=WithBatchStart)
    assert not any(log.lean) and model.starts == 5


class Shifted(ToyDataModule):
    """A data module with its own batch transfer: every batch moved by +100."""

    transfers = 0

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        Shifted.transfers += 1
        return [batch[0] + 100.0, *batch[1:]]


def test_batch_transfer_hooks_still_run_on_lean_batches(make_trainer):
    model = tiny_gan()
    seen = []

    class Seen(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((getattr(trainer.fit_loop.epoch_loop.advance, "__func__", None), float(batch[0].min())))

    Shifted.transfers = 0
    make_trainer(6, callbacks=[Seen()]).fit(model, Shifted(num_samples=64, batch_size=BATCH))
    assert Shifted.transfers == 6
    assert all(func is lean_loop.lean_advance and low > 50.0 for func, low in seen)


@pytest.mark.parametrize("hook", ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"])
def test_any_batch_transfer_hook_routes_the_batch_through_lightning(make_trainer, hook):
    calls = []

    class Hooked(GAN):
        pass

    def hooked(self, batch, *args):
        calls.append(hook)
        return batch if hook != "transfer_batch_to_device" else [t.to(args[0]) for t in batch]

    setattr(Hooked, hook, hooked)
    model = tiny_gan(Hooked)
    make_trainer(4).fit(model, ToyDataModule(num_samples=64, batch_size=BATCH))
    assert calls == [hook] * 4


def test_a_failed_fit_leaves_nothing_that_changes_the_next_one(tmp_path, monkeypatch):
    """A fit stopped by an exception keeps the lean batch on its trainer; the next fit on that trainer with a
    profiler (where the lean batch is not possible) gets Lightning's loop all the same."""

    class Boom(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step == 2:
                raise RuntimeError("boom")

    trainer = pl.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(tiny_gan(), ToyDataModule(num_samples=64, batch_size=BATCH))
    assert "advance" in vars(trainer.fit_loop.epoch_loop)
    monkeypatch.setattr(lean_loop, "lean_loop_possible", lambda trainer, module: False)
    assert lean_loop.install(trainer, tiny_gan()) is False
    assert "advance" not in vars(trainer.fit_loop.epoch_loop)


def test_plain_attributes_skip_module_checks_and_everything_else_keeps_torchs_rules():
    model = tiny_gan()
    model.some_flag = True
    model._current_fx_name = "training_step"
    assert vars(model)["some_flag"] is True and vars(model)["_current_fx_name"] == "training_step"
    model.automatic_optimization = True  # a property: its setter still runs
    assert model.automatic_optimization is True
    model.automatic_optimization = False
    model.extra = torch.nn.Linear(2, 2)  # modules and parameters are still registered
    model.scale = torch.nn.Parameter(torch.ones(1))
    assert "extra" in model._modules and "scale" in model._parameters
    with pytest.raises(TypeError, match="cannot assign 'int' as parameter"):
        model.scale = 3
    with pytest.raises(TypeError, match="child module"):
        model.extra = 1.5
    model.scale = None  # None under a parameter's name stays a (None) parameter, as torch does it
    model.extra = None
    assert "scale" in model._parameters and model._parameters["scale"] is None
    assert "extra" in model._modules and model._modules["extra"] is None
    assert "scale" not in vars(model) and "extra" not in vars(model)


# ------------------------------------------------------------------------------------------------ logged values
def test_logged_values_are_the_same_without_the_accumulators_move_on_every_log_call(tmp_path, monkeypatch):
    """The accumulators that skip their move to the device they are on: the same CSV rows, callback, logged and
    progress-bar values as Lightning's own accumulators, which move on every call."""
    moves = []
    own_to = lean_loop._ResultMetric.to

    def counted(self, *args, **kwargs):
        moves.append(type(self))
        return own_to(self, *args, **kwargs)

    monkeypatch.setattr(lean_loop._ResultMetric, "to", counted)
    _, fast_trainer, _, fast_rows = _fit(tmp_path, "fast")
    fast_moves = len(moves)
    monkeypatch.setattr(lean_loop, "on_device_results", lambda results: None)
    _, own_trainer, _, own_rows = _fit(tmp_path, "own")
    assert fast_rows == own_rows and len(fast_rows) >= 6
    for name in ("callback_metrics", "logged_metrics", "progress_bar_metrics"):
        fast_values, own_values = getattr(fast_trainer, name), getattr(own_trainer, name)
        assert fast_values.keys() == own_values.keys(), name
        for key in fast_values.keys() - TIMING:
            assert torch.equal(torch.as_tensor(fast_values[key]), torch.as_tensor(own_values[key])), (name, key)
    # Lightning's own accumulators move at every log call; the lean ones only when first registered (and by the
    # loops' own calls, such as moving the results to the CPU at the end).
    own_moves = len(moves) - fast_moves
    assert own_moves > 70 and fast_moves < own_moves // 4, (fast_moves, own_moves)


def test_an_accumulator_moves_whenever_a_tensor_of_it_is_elsewhere(monkeypatch):
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection

    results = _ResultCollection(training=True)
    results.log("training_step", "loss", torch.tensor(2.0), on_step=True, on_epoch=True)
    lean_loop.on_device_results(results)
    metric = results["training_step.loss"]
    assert type(metric) is lean_loop._ResultMetricOnDevice and isinstance(metric, lean_loop._ResultMetric)
    rebuilt = []
    own = lean_loop._ResultMetric.to
    monkeypatch.setattr(lean_loop._ResultMetric, "to", lambda self, *a, **k: rebuilt.append(a) or own(self, *a, **k))
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert metric.to(cpu) is metric and rebuilt == []  # all on the CPU: nothing to do
    metric.to(meta)  # elsewhere: Lightning's move
    assert rebuilt == [(meta,)] and metric.value.device == meta and metric._defaults["value"].device == meta
    assert metric.to(meta) is metric and len(rebuilt) == 1
    metric._defaults["value"] = torch.zeros(())  # one tensor, in a dictionary, elsewhere
    metric.to(meta)
    assert len(rebuilt) == 2 and metric._defaults["value"].device == meta
    metric.to(device=meta)  # anything but a device alone: Lightning's move
    assert len(rebuilt) == 3


def test_the_device_check_looks_into_nothing_it_cannot_see_through():
    cpu = torch.device("cpu")
    assert lean_loop._all_on({"a": torch.zeros(1), "b": {"c": torch.ones(2)}, "d": 3, "e": set()}, cpu) is True
    assert lean_loop._all_on({"a": torch.zeros(1, device="meta")}, cpu) is False
    assert lean_loop._all_on({"a": {"b": torch.zeros(1, device="meta")}}, cpu) is False
    for unknown in ([torch.zeros(1)], (1,), {1}, {"b": [1]}, {"b": {"c": 1}}, object()):
        assert lean_loop._all_on({"a": unknown}, cpu) is None, unknown


def test_the_end_of_a_batch_is_lean_without_validation_and_stops_as_lightnings(tmp_path, monkeypatch):
    """A callback asks to stop at step 7: both loops stop there, with the same progress and logged rows."""

    class StopAt7(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            ends.append(getattr(trainer.fit_loop.epoch_loop.on_advance_end, "__func__", None))
            if trainer.global_step == 7:
                trainer.should_stop = True

    ends: list = []
    _, lean_trainer, _, lean_rows = _fit(tmp_path, "lean", callbacks=(StopAt7(),))
    assert ends and all(func is lean_loop.lean_advance_end for func in ends)
    assert "on_advance_end" not in vars(lean_trainer.fit_loop.epoch_loop)  # given back after fit
    ends.clear()
    monkeypatch.setattr(lean_loop, "lean_loop_possible", lambda trainer, module: False)
    _, own_trainer, _, own_rows = _fit(tmp_path, "lightning", callbacks=(StopAt7(),))
    assert not any(func is lean_loop.lean_advance_end for func in ends)
    assert lean_trainer.global_step == own_trainer.global_step == 7
    assert lean_trainer.fit_loop.state_dict() == own_trainer.fit_loop.state_dict()
    assert lean_trainer.fit_loop.epoch_loop._batches_that_stepped == own_trainer.fit_loop.epoch_loop._batches_that_stepped == 7
    assert lean_rows == own_rows and len(lean_rows) >= 2


def test_a_fit_with_validation_keeps_lightnings_end_of_batch(tmp_path):
    """Validation every 4 batches runs as Lightning runs it: the lean batch, Lightning's end of batch."""

    class Validated(GAN):
        def validation_step(self, batch, batch_idx):
            self.val_batches = getattr(self, "val_batches", 0) + 1

    model = tiny_gan(Validated)
    loader = ToyDataModule(num_samples=64, batch_size=BATCH)
    loader.setup("fit")
    ends = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            loop = trainer.fit_loop.epoch_loop
            ends.append((getattr(loop.advance, "__func__", None), getattr(loop.on_advance_end, "__func__", None)))

    trainer = pl.Trainer(max_steps=8, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, val_check_interval=4, limit_val_batches=1, callbacks=[Watch()])
    trainer.fit(model, train_dataloaders=loader.train_dataloader(), val_dataloaders=loader.train_dataloader())
    assert model.val_batches == 2  # after batches 4 and 8
    assert ends == [(lean_loop.lean_advance, _TrainingEpochLoop.on_advance_end)] * 8
