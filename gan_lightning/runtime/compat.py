"""The one door to private Lightning and torch names: every one the package uses is here, behind a small public
function, and a test fails when any other module touches one.

Lightning and torch do not promise to keep names that start with an underscore (or the internal modules such as
``loops`` and ``trainer.connectors``). Kept here, a release that renames one breaks in one place, with a message
naming the name and the installed version (``check()`` lists every missing module-level name at once).

What is used, and for what:

- ``lightning.pytorch.core.mixins.hparams_mixin._given_hyperparameters``: whether LightningCLI is instantiating
  the module, so the parsed config (class paths included) is saved as its hyperparameters
  (``cli_hyperparameters_active``);
- ``lightning.pytorch.overrides.distributed._sync_module_states``: broadcast of the EMA generator's weights from
  process 0 (``sync_module_states``, for the ``gan_ddp`` strategy);
- ``lightning.pytorch.strategies.ddp.DDPStrategy._setup_model``: G and D each wrapped in
  ``DistributedDataParallel`` exactly as Lightning wraps a module (``wrap_ddp``);
- ``LightningModule._trainer``: the attached trainer or None (``attached_trainer``; the public property raises);
- ``WandbLogger._wandb_init``: the keyword arguments Lightning's W&B logger passes to ``wandb.init``, to drop
  one that W&B only warns about (``drop_wandb_init_setting``);
- ``torch._foreach_copy_``, ``torch._foreach_lerp_``: the EMA update as multi-tensor operations
  (``foreach_copy_``, ``foreach_lerp_``).

Also here, without private names: the keys LightningCLI writes into saved hyperparameters, torch's batch-norm
layers and spectral-norm parametrizations found by their public classes, and Lightning's NVML setting undone where
NVML cannot load.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
from typing import Any

import torch
from torch import nn

from gan_lightning.errors import UserError

# Keys LightningCLI adds to the hyperparameters it saves (checkpoint["hyper_parameters"] and
# checkpoint["datamodule_hyper_parameters"]): which instantiator built the object, and its class path.
INSTANTIATOR_KEY = "_instantiator"
CLASS_PATH_KEY = "_class_path"

# (module, attribute path) of each private name, by what it is used for.
PRIVATE_NAMES: dict[str, tuple[str, str]] = {
    "hyperparameters given by LightningCLI": ("lightning.pytorch.core.mixins.hparams_mixin", "_given_hyperparameters"),
    "broadcast of a module's parameters and buffers": ("lightning.pytorch.overrides.distributed", "_sync_module_states"),
    "DistributedDataParallel wrapping of one module": ("lightning.pytorch.strategies.ddp", "DDPStrategy._setup_model"),
}


class LightningIncompatible(UserError):
    """The installed Lightning lacks a private name the project uses."""


def lightning_version() -> str:
    import lightning.pytorch

    return str(lightning.pytorch.__version__)


def private(use: str) -> Any:
    """The private object registered in ``PRIVATE_NAMES`` under ``use``; ``LightningIncompatible`` naming it and
    the installed Lightning version when it cannot be found."""
    module_name, path = PRIVATE_NAMES[use]
    try:
        obj: Any = importlib.import_module(module_name)
        for part in path.split("."):
            # A class's own attribute: an inherited one of the same name (Strategy._setup_model returns the
            # module unwrapped) is not the one meant.
            obj = vars(obj)[part] if isinstance(obj, type) else getattr(obj, part)
    except (ImportError, AttributeError, KeyError):
        raise LightningIncompatible(
            f"Lightning {lightning_version()} has no {module_name}.{path} ({use}), which gan_lightning uses; install "
            "the Lightning version pinned in pyproject.toml"
        ) from None
    return obj


def check() -> list[str]:
    """One human-readable line for each private name the installed Lightning lacks (empty: all present)."""
    problems = []
    for use in PRIVATE_NAMES:
        try:
            private(use)
        except LightningIncompatible as err:
            problems.append(str(err))
    return problems


def cli_hyperparameters_active() -> bool:
    """Whether LightningCLI is instantiating a module right now (it then hands the parsed config, class paths
    included, to ``save_hyperparameters``)."""
    return private("hyperparameters given by LightningCLI").get() is not None


def sync_module_states(module: nn.Module) -> None:
    """Broadcasts ``module``'s parameters and buffers from process 0 to every process of the default process
    group (which must be initialised)."""
    private("broadcast of a module's parameters and buffers")(module)


def wrap_ddp(strategy: Any, module: nn.Module) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` exactly as ``strategy`` (a ``DDPStrategy``) wraps a
    LightningModule: its device ids, process group and DDP options."""
    return private("DistributedDataParallel wrapping of one module")(strategy, module)


@functools.lru_cache(maxsize=1)
def _spectral_norm_type() -> type:
    # The class torch.nn.utils.parametrizations.spectral_norm registers, read off a parametrization made once
    # through the public function on a 1x1 Linear. isinstance against it recognises exactly torch's spectral
    # norm, whatever the class is called in a torch release, and no user module that happens to have similar
    # attributes. fork_rng: making it draws the power-iteration vectors, which must not move the global stream.
    with torch.random.fork_rng(devices=[]):
        layer = nn.utils.parametrizations.spectral_norm(nn.Linear(1, 1))
    return type(layer.parametrizations.weight[0])


def spectral_norm_modules(module: nn.Module) -> list[nn.Module]:
    """The spectral-norm parametrizations (``torch.nn.utils.parametrizations.spectral_norm``) inside ``module``,
    in ``module.modules()`` order. Each advances its power iteration in training mode only."""
    kind = _spectral_norm_type()
    return [m for m in module.modules() if isinstance(m, kind)]


# torch's batch-norm layers by their public classes (their common base class is private). Lazy layers become
# BatchNormNd at their first forward.
BATCH_NORM_TYPES: tuple[type, ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
)


def batch_norm_modules(module: nn.Module) -> list[nn.Module]:
    """The batch-norm layers inside ``module`` (every torch batch norm, subclasses included), in
    ``module.modules()`` order."""
    return [m for m in module.modules() if isinstance(m, BATCH_NORM_TYPES)]


NVML_CHECK_VARIABLE = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_nvml_check_without_nvml() -> bool:
    """Undo Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` where NVML's library cannot be loaded; whether it did.

    Lightning sets the variable at import so that asking whether CUDA is available reads NVML instead of
    initialising CUDA (which would break fork-started processes). Without ``libnvidia-ml`` on the machine (any
    machine without an NVIDIA driver) torch then tries to load the library on every such question and falls
    back to the CUDA runtime, exactly what it does without the variable, and every Adam/AdamW step asks: ~40 µs
    per optimizer step spent failing to load a library. Where NVML loads, the variable stays."""
    if os.environ.get(NVML_CHECK_VARIABLE) != "1" or not torch.backends.cuda.is_built():
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CHECK_VARIABLE]
        return True
    return False


def attached_trainer(module: Any) -> Any:
    """The trainer a LightningModule is attached to, or None (``LightningModule.trainer`` raises instead)."""
    return module._trainer


def foreach_copy_(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    """``t.copy_(s)`` for every pair, as one multi-tensor operation (one kernel launch per group on a GPU)."""
    torch._foreach_copy_(targets, sources)


def foreach_lerp_(targets: list[torch.Tensor], ends: list[torch.Tensor], weight: float) -> None:
    """``t.lerp_(e, weight)`` for every pair, as one multi-tensor operation."""
    torch._foreach_lerp_(targets, ends, weight)


def drop_wandb_init_setting(logger: Any, name: str) -> None:
    """Remove ``name`` from what Lightning's ``WandbLogger`` will pass to ``wandb.init``."""
    logger._wandb_init.pop(name, None)
