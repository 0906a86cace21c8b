"""Metrics and the callbacks that log them: mode coverage on the toy mixtures (``toy``); FID, KID, Inception
Score, precision/recall and the conditional-GAN metrics on images (``image``, ``features``, ``conditional``);
condition error of spatially conditioned generators (``spatial``); the domain classifier whose features the
image metrics use offline (``classifier``); the callbacks that sample and evaluate during
training (``callbacks``).

Class paths for YAMLs: ``gan_lightning.metrics.ImageMetrics``, ``gan_lightning.metrics.ToyMetrics``,
``gan_lightning.metrics.SampleGrid``.

The names are exported lazily: importing a submodule (``gan_lightning.metrics.classifier.datasets``, say) does not
import the callbacks, and with them Lightning and torchmetrics; ``gan_lightning.metrics.ImageMetrics`` does.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["mode_coverage", "ImageMetrics", "ToyMetrics", "SampleGrid"]

# Exported name -> the module that defines it.
_LAZY = {
    "mode_coverage": "gan_lightning.metrics.toy",
    "ImageMetrics": "gan_lightning.metrics.callbacks",
    "ToyMetrics": "gan_lightning.metrics.callbacks",
    "SampleGrid": "gan_lightning.metrics.callbacks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gan_lightning.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
