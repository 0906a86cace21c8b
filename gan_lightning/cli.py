"""Command line: ``python -m gan_lightning {fit,validate,sample} ...`` (SPEC §3).

``fit`` is LightningCLI: ``--config experiments/<name>.yaml``, several ``--config``, ``--print_config``,
``class_path``/``init_args`` and ``--key=value`` overrides. On top of it:

- ``--experiment NAME`` (default: the stem of the first config file) and ``--run_dir`` (default
  ``runs/<experiment>/<time>-seed<seed>``): the run directory holds ``config.yaml``, ``checkpoints/last.ckpt``,
  ``samples/`` and the W&B files;
- ``--wandb auto|online|offline|disabled``: ``auto`` logs online when an API key is configured and offline
  otherwise, so a run never fails for lack of an account or a network;
- the networks' ``num_classes`` is linked to the data's, so it is never typed twice.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from gan_lightning.callbacks import DivergenceGuard
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import UserError
from gan_lightning.system import GAN

WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_has_key() -> bool:
    """Whether W&B can log online without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class RunConfig(SaveConfigCallback):
    """Writes the resolved ``config.yaml`` into the run directory and gives the whole config to W&B."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                config = self.parser.dump(self.config, skip_none=False, format="json")
                import json

                logger.experiment.config.update(json.loads(config), allow_val_change=True)


class GANCLI(LightningCLI):
    def __init__(self, args: Optional[Sequence[str]] = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault(
            "trainer_defaults", {"log_every_n_steps": 50, "max_epochs": -1, "callbacks": [DivergenceGuard()]}
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

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=Optional[str], default=None,
                            help="Experiment name: groups runs under runs/<experiment>/ and in W&B (default: config file stem).")
        parser.add_argument("--run_dir", type=Optional[str], default=None,
                            help="Run directory (default: runs/<experiment>/<time>-seed<seed>).")
        parser.add_argument("--wandb", type=str, default="auto",
                            help="auto (online with an API key, else offline) | online | offline | disabled.")
        parser.add_argument("--wandb_project", type=str, default="gan_lightning", help="W&B project.")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.save_last": True,
            "checkpoint.save_top_k": 0,
            "checkpoint.every_n_train_steps": 1000,
        })
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
            cfg.run_dir = os.path.join("runs", cfg.experiment, f"{run_id}-seed{cfg.seed_everything}")
        cfg.trainer.default_root_dir = cfg.run_dir
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = os.path.join(cfg.run_dir, "checkpoints")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer_init = self.config_init[self.subcommand].trainer if self.subcommand else self.config_init.trainer
        logger = trainer_init.get("logger") if self.subcommand else None
        if logger in (None, True):
            kwargs["logger"] = self._default_logger(cfg)
        if trainer_init.get("enable_progress_bar") is False and trainer_init.get("callbacks"):
            # --trainer.enable_progress_bar=false wins over a progress bar an experiment configures.
            trainer_init.callbacks = [c for c in trainer_init.callbacks if not isinstance(c, ProgressBar)]
        return super().instantiate_trainer(**kwargs)

    @staticmethod
    def _default_logger(cfg: Any) -> Any:
        mode = cfg.wandb
        if mode == "disabled" or cfg.trainer.get("fast_dev_run"):
            return False
        if mode == "auto":
            mode = "online" if wandb_has_key() else "offline"
        from lightning.pytorch.loggers import WandbLogger

        os.makedirs(cfg.run_dir, exist_ok=True)
        return WandbLogger(
            save_dir=cfg.run_dir,
            project=cfg.wandb_project,
            group=cfg.experiment,
            name=Path(cfg.run_dir).name,
            job_type="train",
            offline=mode == "offline",
        )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "sample":
            from gan_lightning.commands import sample_main

            return sample_main(args[1:])
        if args and args[0] == "evaluate":
            from gan_lightning.commands import evaluate_main

            return evaluate_main(args[1:])
        if args and args[0] == "classifier":
            from gan_lightning.metrics.classifier import classifier_main

            return classifier_main(args[1:])
        GANCLI(args=None if argv is None else args)
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
