"""Saving and loading domain classifiers, and where the cache keeps one per data set:
``<cache>/classifiers/<name>.pt`` (``<cache>`` is ``gan_lightning.runtime.cache.cache_root()``), which
``get_classifier`` (``training``) fills the first time a data set's classifier is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.metrics.classifier.datasets import check_dataset
from gan_lightning.metrics.classifier.network import DomainClassifier
from gan_lightning.runtime.cache import cache_root
from gan_lightning.runtime.files import atomic_write

FORMAT = 1  # Bumped when the checkpoint layout changes; an older file is reported, never half-loaded.


def save_classifier(model: DomainClassifier, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write ``{format, init_args, state_dict, **meta}`` atomically: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # A new temporary name per write: two processes filling the same cache never write into one file.
    with atomic_write(path, "wb") as f:
        torch.save({"format": FORMAT, "init_args": model.init_args(), "state_dict": state, **meta}, f)


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
    check_dataset(name)
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "classifiers"
    return base / f"{name}.pt"

