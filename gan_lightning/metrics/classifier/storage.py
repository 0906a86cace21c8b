"""Saving and loading domain classifiers, and the cache that holds one per data set.

``get_classifier("MNIST", root)`` loads ``<cache>/classifiers/MNIST.pt`` (``<cache>`` is
``gan_lightning.runtime.cache.cache_root()``), training the classifier and writing that file the first time only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from gan_lightning.runtime.cache import cache_root
from gan_lightning.metrics.classifier import training
from gan_lightning.metrics.classifier.network import DomainClassifier
from gan_lightning.errors import DataNotFound, UserError

FORMAT = 1  # Bumped when the checkpoint layout changes; an older file is reported, never half-loaded.


def save_classifier(model: DomainClassifier, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write ``{format, init_args, state_dict, **meta}`` atomically: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # A per-process temporary name: two processes filling the same cache never write into one file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": FORMAT, "init_args": model.init_args(), "state_dict": state, **meta}, tmp)
    os.replace(tmp, path)


def load_classifier(path: str | os.PathLike, device: str = "cpu") -> tuple[DomainClassifier, dict[str, Any]]:
    """A saved classifier in eval mode, and its metadata (``data``, ``test_accuracy``, ...)."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataNotFound(
            f"classifier checkpoint {path!r} does not exist; train one with "
            "`python -m gan_lightning classifier --data NAME --root DIR --out PATH`"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"classifier checkpoint {path!r} is not readable ({type(err).__name__}); delete it and "
                        "train again with `python -m gan_lightning classifier`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"classifier checkpoint {path!r} was not written by this version of "
                        "`python -m gan_lightning classifier`; delete it and train again")
    model = DomainClassifier(**ckpt["init_args"])
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "init_args", "format")}
    return model.to(device).eval(), meta


def classifier_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the cached classifier of data set ``name`` lives: ``<cache>/classifiers/<name>.pt``, or
    ``<cache_dir>/<name>.pt`` when ``cache_dir`` is given."""
    training.check_dataset(name)
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "classifiers"
    return base / f"{name}.pt"


def get_classifier(name: str, root: str = "data", cache_dir: str | os.PathLike | None = None,
                   device: str = "cpu", **train_kwargs: Any) -> tuple[DomainClassifier, dict[str, Any]]:
    """The cached classifier of ``name``, training it (and filling the cache) the first time only.

    ``train_kwargs`` go to ``train_classifier`` and matter only when it trains; a cached file is used whatever
    settings wrote it (its metadata says which).
    """
    path = classifier_path(name, cache_dir)
    if path.is_file():
        return load_classifier(path, device)
    print(f"no cached {name} classifier at {path}; training one (once)", file=sys.stderr, flush=True)
    model, meta = training.train_classifier(name, root, out=str(path), device=device, **train_kwargs)
    return model, meta
