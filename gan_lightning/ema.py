"""The exponential moving average of G's weights that samples come from (Karras et al. 2018; Yazici et al. 2019)."""

from __future__ import annotations

import copy

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
    ema_params = list(ema.parameters())
    params = list(net.parameters())
    if copy_only:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)
