"""The exponential moving average of G's weights that samples come from (Karras et al. 2018; Yazici et al. 2019)."""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn


def make_ema(generator: nn.Module) -> nn.Module:
    """A copy of ``generator`` outside autograd, to be updated by ``update_ema``."""
    return copy.deepcopy(generator).requires_grad_(False)


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float, copy_only: bool = False) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for every parameter (a plain copy when ``copy_only``, e.g.
    before the averaging starts). Normalization statistics are not averaged: the EMA copy takes the live
    network's buffers."""
    ema_params, params, ema_buffers, buffers = _pairs(ema, net)
    if copy_only:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    if buffers:
        torch._foreach_copy_(ema_buffers, buffers)


_PAIRS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _pairs(ema: nn.Module, net: nn.Module) -> tuple[list, list, list, list]:
    """The parameters and floating-point buffers of both networks, listed once per EMA copy."""
    cached = _PAIRS.get(ema)
    if cached is None or cached[0] is not net:
        buffers = [(a, b) for a, b in zip(ema.buffers(), net.buffers())]
        cached = (net, list(ema.parameters()), list(net.parameters()), [a for a, _ in buffers], [b for _, b in buffers])
        _PAIRS[ema] = cached
    return cached[1:]
