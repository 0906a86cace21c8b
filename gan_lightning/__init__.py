"""gan_lightning: GANs and conditional GANs in PyTorch Lightning.

``import gan_lightning`` imports nothing heavy (no torch, Lightning or W&B), so the command line starts at
Python's own speed; ``gan_lightning.GAN`` imports the training system (torch and Lightning) the first time it is
used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["GAN"]

# Names this package exports lazily, by the module that defines them.
_LAZY = {"GAN": "gan_lightning.training"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups find it without calling this function
        return value
    raise AttributeError(f"module 'gan_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
