"""What ``sample``, ``evaluate`` and ``export`` read from a checkpoint: its contents, read without running pickled code
(``read_checkpoint``), the trained GAN (``load_gan``) and the data it was trained on (``data_from_checkpoint``,
``real_from_checkpoint``).

A checkpoint written by ``fit`` holds the command line's config, which rebuilds every part of the model. One of a
GAN built in Python holds, under ``hyper_parameters["recorded"]``, how each part was built
(``gan_lightning.conditioning.record_of``): the networks' class paths and arguments, and the class paths (with
arguments, where their classes record them) of the loss, regularizers, augmentation, refinement and data module.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from gan_lightning.conditioning import build, import_class
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.nets.base import Discriminator, Generator
from gan_lightning.objectives.augment import Augment
from gan_lightning.objectives.losses import GANLoss
from gan_lightning.objectives.regularizers import Regularizer
from gan_lightning.runtime.compat import CLASS_PATH_KEY, INSTANTIATOR_KEY
from gan_lightning.sampling.refinement import LatentRefinement
from gan_lightning.training.system import GAN

RECORDED_KEY = "recorded"  # hyper_parameters[RECORDED_KEY]: how a GAN built in Python was built


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
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a checkpoint written by a gan_lightning GAN")
    return ckpt


def load_gan(ckpt_path: str, device: str = "cpu", trust: bool = False) -> GAN:
    """A trained GAN from a checkpoint written by ``fit`` or by a GAN built in Python, in eval mode (read as
    ``read_checkpoint`` does).

    From Python, the networks and the refinement are rebuilt exactly from what they recorded. The loss, the
    regularizers and the augmentation do not change what the model draws; each is rebuilt from its class path,
    with its recorded arguments where its class records them and with its defaults otherwise, and its state is
    loaded as saved."""
    ckpt = read_checkpoint(ckpt_path, trust)
    hparams = ckpt.get("hyper_parameters") or {}
    if INSTANTIATOR_KEY in hparams and "generator" in hparams:
        model = GAN.load_from_checkpoint(ckpt_path, map_location=device, weights_only=not trust)
        return model.eval()
    recorded = hparams.get(RECORDED_KEY)
    if not isinstance(recorded, dict) or "generator" not in recorded or "discriminator" not in recorded:
        raise UserError(
            f"--ckpt_path: {ckpt_path!r} says nothing of how its networks were built (not written by a gan_lightning "
            "GAN); load it in Python with GAN.load_from_checkpoint(path, generator=..., discriminator=...)"
        )
    parts = {
        "generator": _rebuild(recorded["generator"], Generator, "generator", exact=True),
        "discriminator": _rebuild(recorded["discriminator"], Discriminator, "discriminator", exact=True),
        "refinement": _rebuild(recorded.get("refinement"), LatentRefinement, "refinement", exact=True),
        "loss": _rebuild(recorded.get("loss"), GANLoss, "loss", exact=False),
        "regularizers": [_rebuild(r, Regularizer, f"regularizers[{i}]", exact=False)
                         for i, r in enumerate(recorded.get("regularizers") or [])],
        "augment": _rebuild(recorded.get("augment"), Augment, "augment", exact=False),
    }
    if parts["loss"] is None:
        del parts["loss"]
    try:
        model = GAN.load_from_checkpoint(ckpt_path, map_location=device, weights_only=not trust, **parts)
    except RuntimeError as err:  # load_state_dict: the rebuilt model does not hold what the checkpoint holds
        first = str(err).strip().splitlines()[0]
        raise UserError(f"--ckpt_path: the model rebuilt from {ckpt_path!r} does not fit its weights "
                        f"({first})") from None
    return model.eval()


def _rebuild(record: Any, base: type, field: str, exact: bool) -> Any:
    """One part of a GAN built in Python, from ``record_of``'s record (see ``load_gan``). ``exact``: the part
    changes the samples, so it must be rebuilt with its recorded arguments."""
    if record is None or isinstance(record, str):
        return record  # none, or a loss by name
    where = f"--ckpt_path: model.{field}"
    if not isinstance(record, dict) or "class_path" not in record:
        raise UserError(f"{where}: the checkpoint's record of it is not a class description")
    if "init_args" in record:
        return build(record, base, f"model.{field}")
    if exact:
        raise UserError(f"{where}: {record.get('problem') or record['class_path'] + ' recorded no arguments'}; the "
                        "checkpoint cannot rebuild it, so sample and evaluate cannot use it")
    cls = import_class(record["class_path"], f"model.{field}")
    if not issubclass(cls, base):
        raise UserError(f"{where}: {record['class_path']!r} is not a {base.__name__}")
    try:
        return cls()
    except TypeError as err:
        raise UserError(f"{where}: {record['class_path']} recorded no arguments and needs some ({err}); load the "
                        "checkpoint in Python with GAN.load_from_checkpoint(path, ...)") from None


def data_from_checkpoint(ckpt_path: str, trust: bool = False):
    """The data module a checkpoint was trained on, rebuilt from the config the CLI saved in it, or, for a GAN
    built in Python, from the data module's class (recorded by the GAN) and its saved hyperparameters."""
    ckpt = read_checkpoint(ckpt_path, trust)
    hp = dict(ckpt.get("datamodule_hyper_parameters") or {})
    class_path = hp.pop(CLASS_PATH_KEY, None)
    hp.pop(INSTANTIATOR_KEY, None)
    if not class_path:
        recorded = (ckpt.get("hyper_parameters") or {}).get(RECORDED_KEY)
        data = recorded.get("data") if isinstance(recorded, dict) else None
        if isinstance(data, dict) and ("init_args" in data or hp):
            class_path = data.get("class_path")
            hp = dict(data.get("init_args") or hp)
    if not class_path:
        raise UserError(f"--ckpt_path: {ckpt_path!r} holds no data config; give the reference data with --data")
    cls = import_class(class_path, "--ckpt_path: data")
    if not issubclass(cls, GANDataModule):
        raise UserError(f"--ckpt_path: the data class {class_path!r} in the checkpoint is not a GANDataModule")
    return cls(**hp)


def real_from_checkpoint(ckpt_path: str, seed: int = 0, trust: bool = False):
    """``real(n)``: ``n`` training samples of the data a checkpoint was trained on (a seeded subset, cycled)."""

    def real(n: int) -> torch.Tensor:
        x, _ = data_from_checkpoint(ckpt_path, trust).real_samples(n, seed=seed)
        return x[torch.arange(n) % len(x)]

    return real
