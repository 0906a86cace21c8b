"""What ``sample`` and ``evaluate`` read from a checkpoint written by ``fit``: its contents, read without running
pickled code (``read_checkpoint``), the trained GAN (``load_gan``) and the data it was trained on
(``data_from_checkpoint``, ``real_from_checkpoint``)."""

from __future__ import annotations

import importlib
import os
import pickle
import re

import torch

from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.runtime.compat import CLASS_PATH_KEY, INSTANTIATOR_KEY
from gan_lightning.training.system import GAN


def read_checkpoint(ckpt_path: str, trust: bool = False) -> dict:
    """A checkpoint's contents, read without executing pickled code: ``torch.load(weights_only=True)`` allows
    tensors, containers and plain values only (what ``fit`` writes). A file that needs more is refused with a
    line saying how to trust it explicitly (``trust=True``: a full unpickle, for files from a trusted source)."""
    if not os.path.isfile(ckpt_path):
        raise DataNotFound(f"--ckpt_path: no checkpoint at {ckpt_path!r}; fit writes runs/<experiment>/<run>/checkpoints/last.ckpt")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        if not trust and found:
            raise UserError(f"--ckpt_path: {ckpt_path!r} holds a pickled object{what} beyond tensors and plain values, "
                            "and loading it could run code from the file; if you trust its source, add "
                            "--trust_checkpoint") from None
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a readable PyTorch checkpoint (UnpicklingError)") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a checkpoint written by `python -m gan_lightning fit`")
    return ckpt


def load_gan(ckpt_path: str, device: str = "cpu", trust: bool = False) -> GAN:
    """A trained GAN from a checkpoint written by ``fit``, in eval mode (read as ``read_checkpoint`` does)."""
    ckpt = read_checkpoint(ckpt_path, trust)
    hparams = ckpt.get("hyper_parameters", {})
    if INSTANTIATOR_KEY not in hparams or "generator" not in hparams:
        raise UserError(
            f"--ckpt_path: {ckpt_path!r} was not written by `python -m gan_lightning fit`; load it in Python with "
            "GAN.load_from_checkpoint(path, generator=..., discriminator=...)"
        )
    model = GAN.load_from_checkpoint(ckpt_path, map_location=device, weights_only=not trust)
    return model.eval()


def data_from_checkpoint(ckpt_path: str, trust: bool = False):
    """The data module a checkpoint was trained on, rebuilt from the config the CLI saved in it."""
    ckpt = read_checkpoint(ckpt_path, trust)
    hp = dict(ckpt.get("datamodule_hyper_parameters") or {})
    class_path = hp.pop(CLASS_PATH_KEY, None)
    hp.pop(INSTANTIATOR_KEY, None)
    if not class_path:
        raise UserError(f"--ckpt_path: {ckpt_path!r} holds no data config; give the reference data with --data")
    module, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, GANDataModule)):
        raise UserError(f"--ckpt_path: the data class {class_path!r} in the checkpoint is not a GANDataModule")
    return cls(**hp)


def real_from_checkpoint(ckpt_path: str, seed: int = 0, trust: bool = False):
    """``real(n)``: ``n`` training samples of the data a checkpoint was trained on (a seeded subset, cycled)."""

    def real(n: int) -> torch.Tensor:
        x, _ = data_from_checkpoint(ckpt_path, trust).real_samples(n, seed=seed)
        return x[torch.arange(n) % len(x)]

    return real
