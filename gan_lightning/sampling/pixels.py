"""The one mapping between stored pixels and data space: uint8 0..255 <-> float [-1, 1].

``to_float`` is how the data modules and the metrics read uint8 images; ``to_uint8`` is how ``sample`` and the
metrics write generated ones. ``to_uint8(to_float(u)) == u`` for every grey level u.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_float(images: Tensor) -> Tensor:
    """uint8 images 0..255 -> float32 in [-1, 1] (``x / 127.5 - 1``: 0 -> -1 and 255 -> 1 exactly).

    Any other dtype is taken as already in [-1, 1] and returned as float32 (the same tensor when it already is).
    """
    if images.dtype == torch.uint8:
        # In place on the fresh float copy: one allocation, as fast as a data loader needs.
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 0..255, rounding to the nearest grey level; values outside are clamped."""
    return images.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
