"""The exponential moving average of G's weights that samples come from (Karras et al. 2018; Yazici et al. 2019)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from gan_lightning.runtime.compat import foreach_copy_, foreach_lerp_


def make_ema(generator: nn.Module) -> nn.Module:
    """A copy of ``generator`` outside autograd, to be updated by ``update_ema``."""
    return copy.deepcopy(generator).requires_grad_(False)


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float, copy_only: bool = False) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for every parameter (a plain copy when ``copy_only``, e.g.
    before the averaging starts). Buffers are not averaged: the EMA copy takes the live network's buffers
    (batch-norm running statistics, spectral-norm vectors), the statistics of the weights it averages."""
    ema_params, params = list(ema.parameters()), list(net.parameters())
    if copy_only:
        foreach_copy_(ema_params, params)
    else:
        foreach_lerp_(ema_params, params, 1.0 - decay)
    ema_buffers, buffers = list(ema.buffers()), list(net.buffers())
    if buffers:
        foreach_copy_(ema_buffers, buffers)
