"""``python -m gan_lightning fit``: LightningCLI restricted to Lightning's ``fit``: ``--config
experiments/<name>.yaml`` (or the bare name of an experiment bundled with the package: ``--config cgan_mnist5k``),
several ``--config``, ``--print_config``, ``class_path``/``init_args`` and
``--key=value`` overrides. On top of it:

- ``--experiment NAME`` (default: the stem of the first config file) and ``--run_dir`` (default
  ``<trainer.default_root_dir or runs>/<experiment>/<run id>-seed<seed>``): the run directory holds
  ``config.yaml``, ``checkpoints/last.ckpt``, ``samples/``, ``metrics.csv`` and the W&B files;
- ``--wandb auto|online|offline|disabled``: ``auto`` logs online when an API key is configured and offline
  otherwise, so a run never fails for lack of an account or a network; the W&B run holds the resolved config
  once, is grouped by experiment and tagged ``seed:<n>`` (and ``sweep:<name>`` under ``GAN_LIGHTNING_SWEEP``), and
  is created only once the run is set up, so a run that fails while checking its data, networks and callbacks
  leaves no W&B run behind;
- the networks' ``num_classes`` is linked to the data's, so it is never typed twice, and the data module's
  ``draws_per_step`` to ``model.n_critic``, so each of the ``n_critic`` D steps gets a fresh batch;
- a NaN loss stops the run (``DivergenceGuard``), SIGTERM/SIGUSR1 checkpoint the current step and stop (exit code
  143), and checkpoints are written atomically;
- a mistake (a bad value, an unknown option, a missing config file, a GPU where there is none) is one line
  ``error: ...`` and exit code 2; a bug keeps its traceback.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import loggers as lightning_loggers
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import gan_lightning.metrics.callbacks  # noqa: F401  (the callbacks experiments add: known to --help and by short name)
from gan_lightning.commands.parsing import fit_arguments, one_line, rejected_by_lightning, user_error_in_chain
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import UserError
from gan_lightning.runtime.checkpointing import (PREEMPTED_EXIT_CODE, AtomicCheckpointIO, Preemption, RunCheckpoint,
                                                 was_preempted)
from gan_lightning.runtime.console import quiet_console
from gan_lightning.runtime.loggers import MetricsCSV, WandbLogger, wandb_has_key, writes_metrics_csv
from gan_lightning.runtime.resume import redact, redact_dict
from gan_lightning.training.guards import DivergenceGuard
from gan_lightning.training import StepProgressBar
from gan_lightning.training.system import GAN

WANDB_MODES = ("auto", "online", "offline", "disabled")


def check_accelerator(accelerator: Any) -> None:
    """A GPU asked for where there is none is the user's to fix: one line instead of Lightning's traceback."""
    if not isinstance(accelerator, str):
        return
    name = accelerator.lower()
    has_cuda, has_mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    missing = (name == "cuda" and not has_cuda) or (name == "mps" and not has_mps) or \
        (name == "gpu" and not (has_cuda or has_mps))
    if missing:
        check = "torch.backends.mps.is_available()" if name == "mps" else "torch.cuda.is_available()"
        raise UserError(f"trainer.accelerator: {accelerator!r} but this machine has no usable GPU ({check} is "
                        "False); use --trainer.accelerator=cpu or auto")


def check_checkpoint(path: Any) -> None:
    """``--ckpt_path`` names a checkpoint file that loads (weights only, as LightningCLI reads its
    hyperparameters); Lightning's special values (``last``, ``best``, ``hpc``, ``registry...``) pass."""
    if path is None or str(path) in ("last", "best", "hpc") or str(path).startswith("registry"):
        return
    if not os.path.isfile(path):
        raise UserError(f"--ckpt_path: no checkpoint at {str(path)!r}; fit writes <run_dir>/checkpoints/last.ckpt")
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: reads no tensor data
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            torch.load(path, map_location="cpu", weights_only=True)  # a checkpoint in torch's legacy format
    except Exception as err:  # noqa: BLE001 - whatever the file is, it is not a checkpoint fit can resume
        raise UserError(f"--ckpt_path: {str(path)!r} is not a checkpoint written by fit (torch.load with "
                        f"weights_only=True failed: {type(err).__name__})") from None


def check_run_dir(path: str) -> None:
    """The run directory can be created: its nearest existing ancestor is a folder this process can write."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "a folder this process cannot write" if existing.is_dir() else "a file, not a folder"
        raise UserError(f"--run_dir: cannot create {path!r}: {str(existing)!r} is {what}; choose another --run_dir")


class RunConfig(SaveConfigCallback):
    """Writes the resolved ``config.yaml`` into the run directory and gives the whole config to W&B, nested as in
    the YAML (the only config the W&B run holds: ``WandbLogger.log_hyperparams`` adds nothing).

    The W&B loggers of the run (``held_back``, handed over by ``GANCLI.instantiate_trainer``) join the trainer
    when training starts, once the data, the networks and the callbacks have been set up and checked: W&B creates
    its run the first time Lightning asks a logger for it, which Lightning does before any setup hook, so a run
    that fails in setup (data and networks of different shapes, a callback that does not fit the model, a batch
    larger than the data) would otherwise leave an empty W&B run behind."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_back: list[Logger] = []

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # No secret lands in a saved or logged config: values of keys naming one (api_key, token, ...) are redacted.
        # (not trainer.log_dir: it broadcasts, and this runs on process 0 only)
        path = os.path.join(trainer.default_root_dir, self.config_filename)
        if trainer.is_global_zero and os.path.isfile(path):
            with open(path) as f:
                text = f.read()
            if redact(text) != text:
                with open(path, "w") as f:
                    f.write(redact(text))
        # W&B loggers a config names as Lightning's own class were not held back: they get the config now.
        self.give_config([lg for lg in trainer.loggers if isinstance(lg, lightning_loggers.WandbLogger)])

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not self.held_back:
            return
        loggers, self.held_back = self.held_back, []
        trainer.loggers = [*trainer.loggers, *loggers]  # on every process: they log alike (W&B on process 0 only)
        if trainer.is_global_zero:
            self.give_config(loggers)

    def give_config(self, loggers: list[Any]) -> None:
        """The resolved config, secrets redacted, as the W&B runs' config (on process 0; this creates the run)."""
        if loggers:
            config = redact_dict(json.loads(self.parser.dump(self.config, skip_none=False, format="json")))
            for logger in loggers:
                logger.experiment.config.update(config, allow_val_change=True)


class GANCLI(LightningCLI):
    def __init__(self, args: Optional[Sequence[str]] = None, run: bool = True, **kwargs: Any) -> None:
        quiet_console()
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # Parse errors raise (ArgumentError) instead of printing the whole usage: fit_main prints them as one line.
        kwargs.setdefault("parser_kwargs", {"prog": "python -m gan_lightning", "exit_on_error": False,
                                            "fit": {"exit_on_error": False}})
        kwargs.setdefault(
            "trainer_defaults", {
                "log_every_n_steps": 50, "max_epochs": -1,
                # a NaN loss stops the run; SIGTERM/SIGUSR1 checkpoint the current step and stop (exit code 143)
                "callbacks": [DivergenceGuard(), Preemption()],
            }
        )
        super().__init__(
            GAN,
            GANDataModule,
            subclass_mode_data=True,
            save_config_callback=RunConfig,
            args=args,
            run=run,
            auto_configure_optimizers=False,
            **kwargs,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        given = sys.argv[1:] if args is None else args
        if isinstance(given, (list, tuple)):
            given = [str(a) for a in given]
            if any(a.lstrip("-").split("=")[0].endswith("draws_per_step") for a in given):
                raise UserError("data.draws_per_step: follows model.n_critic (one batch per D step); set --model.n_critic")
            # Config files checked; a bundled experiment's bare name becomes its file (GANCLI used from Python).
            resolved = fit_arguments(given)
            if args is not None and resolved != given:
                args = resolved
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters (a missing or foreign file fails there).
        cfg = self.config.get(str(self.config.get("subcommand")), self.config)
        check_checkpoint(cfg.get("ckpt_path"))

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Only fit: validate, test and predict have nothing to run on a GAN (no validation or test loop).
        return {"fit": LightningCLI.subcommands()["fit"]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=Optional[str], default=None,
                            help="Experiment name: groups runs under runs/<experiment>/ and in W&B (default: config file stem).")
        parser.add_argument("--run_dir", type=Optional[str], default=None,
                            help="Run directory (default: <trainer.default_root_dir, else runs>/<experiment>/"
                                 "<time>-seed<seed>).")
        parser.add_argument("--wandb", type=str, default="auto",
                            help="auto (online with an API key, else offline) | online | offline | disabled.")
        parser.add_argument("--wandb_project", type=str, default="gan_lightning", help="W&B project.")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.save_last": True,
            "checkpoint.save_top_k": 0,
            "checkpoint.every_n_train_steps": 1000,
        })
        # Every D step of a training step gets batch_size fresh real samples: the data module draws n_critic batches.
        parser.link_arguments("model.n_critic", "data.init_args.draws_per_step", apply_on="parse")
        for net in ("generator", "discriminator"):
            parser.link_arguments("data.num_classes", f"model.{net}.init_args.num_classes", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.wandb not in WANDB_MODES:
            raise UserError(f"--wandb: must be one of {WANDB_MODES}, got {cfg.wandb!r}")
        configs = cfg.get("config") or []
        if not cfg.experiment:
            cfg.experiment = Path(str(configs[0])).stem if configs else "default"
        if not cfg.run_dir:
            run_id = os.environ.get("GAN_LIGHTNING_RUN_ID") or os.environ.get("TORCHELASTIC_RUN_ID") \
                or os.environ.get("SLURM_JOB_ID") or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            # --trainer.default_root_dir is the folder that holds the experiments' runs (default runs/).
            root = cfg.trainer.get("default_root_dir") or "runs"
            cfg.run_dir = os.path.join(str(root), cfg.experiment, f"{run_id}-seed{cfg.seed_everything}")
        check_run_dir(cfg.run_dir)
        cfg.trainer.default_root_dir = cfg.run_dir
        check_accelerator(cfg.trainer.get("accelerator"))
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = os.path.join(cfg.run_dir, "checkpoints")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except Exception as err:
            # jsonargparse wraps what a constructor raises (in its Union and subclass errors): a UserError in the
            # chain is the user's to fix and is reported alone; anything else is a bug and keeps its traceback.
            cause = user_error_in_chain(err)
            if cause is None:
                raise
            raise cause from None

    def after_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if rank_zero_only.rank == 0:
            print(f"run directory: {cfg.run_dir}", flush=True)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer_init = self.config_init[self.subcommand].trainer if self.subcommand else self.config_init.trainer
        configured = trainer_init.get("logger") if self.subcommand else None
        if configured in (None, True):
            kwargs["logger"] = self.run_loggers(cfg)
        elif configured is not False:
            # Loggers a config names are kept, and the run's metrics.csv is written beside them.
            loggers = list(configured) if isinstance(configured, (list, tuple)) else [configured]
            if not any(writes_metrics_csv(logger, cfg.run_dir) for logger in loggers):
                loggers.append(MetricsCSV(cfg.run_dir))
            kwargs["logger"] = loggers
        if trainer_init.get("enable_progress_bar") is False and trainer_init.get("callbacks"):
            # --trainer.enable_progress_bar=false wins over a progress bar an experiment configures.
            trainer_init.callbacks = [c for c in trainer_init.callbacks if not isinstance(c, ProgressBar)]
        elif trainer_init.get("enable_progress_bar") is not False and not any(
                isinstance(c, ProgressBar) for c in trainer_init.get("callbacks") or []):
            # The training bar counts generator steps up to max_steps and shows the losses and D's readouts.
            trainer_init.callbacks = [*(trainer_init.get("callbacks") or []), StepProgressBar()]
        plugins = trainer_init.get("plugins") if self.subcommand else None
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            # Checkpoints are written atomically: a kill during a save never leaves a truncated file. (Added here,
            # not as a config default, so that config.yaml stays a plain, re-usable config.)
            kwargs["plugins"] = plugins + [AtomicCheckpointIO()]
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError) as err:
            if isinstance(err, MisconfigurationException) or rejected_by_lightning(err):
                raise UserError("trainer: " + " ".join(str(err).split())) from None
            raise
        self.hold_back_wandb(trainer)
        return trainer

    @staticmethod
    def hold_back_wandb(trainer: Any) -> None:
        """Takes the run's W&B loggers (the package's ``WandbLogger``, whose config comes from ``RunConfig``) out
        of ``trainer.loggers`` and hands them to ``RunConfig``, which puts them back when training starts: no W&B
        run for a run that fails while being set up. Without a ``RunConfig`` (a ``fast_dev_run``) nothing moves."""
        run_config = next((c for c in trainer.callbacks if isinstance(c, RunConfig)), None)
        wandb = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if run_config is None or not wandb:
            return
        trainer.loggers = [logger for logger in trainer.loggers if not isinstance(logger, WandbLogger)]
        run_config.held_back = wandb

    @staticmethod
    def run_loggers(cfg: Any) -> list[Logger]:
        """``<run_dir>/metrics.csv`` always; W&B unless ``--wandb=disabled`` (or a fast_dev_run): online with an
        API key, offline otherwise, grouped by experiment, tagged ``seed:<n>`` and, in a sweep,
        ``sweep:<name>`` (environment variable ``GAN_LIGHTNING_SWEEP``)."""
        loggers: list[Logger] = [MetricsCSV(cfg.run_dir)]
        mode = cfg.wandb
        if mode == "disabled" or cfg.trainer.get("fast_dev_run"):
            return loggers
        if mode == "auto":
            mode = "online" if wandb_has_key() else "offline"
        tags = []
        if isinstance(cfg.seed_everything, int) and not isinstance(cfg.seed_everything, bool):
            tags.append(f"seed:{cfg.seed_everything}")
        if os.environ.get("GAN_LIGHTNING_SWEEP"):
            tags.append(f"sweep:{os.environ['GAN_LIGHTNING_SWEEP']}")
        os.makedirs(cfg.run_dir, exist_ok=True)
        loggers.append(WandbLogger(
            save_dir=cfg.run_dir,
            project=cfg.wandb_project,
            group=cfg.experiment,
            name=Path(cfg.run_dir).name,
            job_type="train",
            tags=tags,
            offline=mode == "offline",
        ))
        return loggers


def fit_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning fit ...``: LightningCLI's fit. ``--config`` files are resolved first (a bundled
    experiment's name becomes its path; ``parsing.fit_arguments``)."""
    argv = fit_arguments(argv)
    # LightningCLI reads sys.argv itself (and warns when given both), so it gets None when that is this command
    # (the command table's prepare step may have resolved the config files already: compared resolved).
    from_command_line = sys.argv[1:2] == ["fit"] and _resolved(sys.argv[2:]) == argv
    if from_command_line:
        sys.argv[2:] = argv
    try:
        cli = GANCLI(args=None if from_command_line else ["fit", *argv])
    except ArgumentError as err:
        raise UserError(one_line(str(err))) from None
    # Stopped by a signal after checkpointing (a Preemption callback): the run did not finish.
    return PREEMPTED_EXIT_CODE if was_preempted(cli.trainer) else 0


def _resolved(args: Sequence[str]) -> Optional[list[str]]:
    """``fit_arguments(args)``, or None where they hold a mistake (then they are not the arguments being run)."""
    try:
        return fit_arguments(args)
    except UserError:
        return None
