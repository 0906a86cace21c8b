"""The package's on-disk cache: trained domain classifiers (``classifiers/``) and reference features of real
data (``reference/``) live under one folder."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GAN_LIGHTNING_CACHE"  # Set it to put the cache anywhere.


def cache_root() -> Path:
    """The cache folder: ``$GAN_LIGHTNING_CACHE``, else ``$XDG_CACHE_HOME/gan_lightning``, else
    ``~/.cache/gan_lightning``. Nothing is created here; writers make the sub-folders they fill."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gan_lightning"
