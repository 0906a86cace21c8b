"""Holding a network fixed while another one trains through it.

In the G phase gradients must flow through D back to G while nothing of D's changes: its parameters take no
gradient, its batch-norm running statistics do not update, and its spectral-norm power-iteration vectors do not
advance. ``torch.no_grad()`` cannot do this (it would cut G's gradient too) and ``eval()`` cannot either (batch
norm would then normalise with running statistics, a different function than the one D trains as).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

from gan_lightning.runtime.compat import batch_norm_modules, spectral_norm_modules


@contextmanager
def spectral_norm_frozen(module: nn.Module) -> Iterator[None]:
    """Spectral norm in ``module`` uses its current power-iteration vectors instead of advancing them.

    torch's spectral-norm parametrization advances its vectors only in training mode, so its modules are put in
    eval mode for the duration. The D phase advances them on its first D call only (one power iteration per D
    step, as in Miyato et al. 2018): a second in-place update between a forward and its backward would also
    invalidate what autograd saved for that backward."""
    frozen = [m for m in spectral_norm_modules(module) if m.training]
    for m in frozen:
        m.eval()
    try:
        yield
    finally:
        for m in frozen:
            m.train()


@contextmanager
def held_fixed(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in training mode while nothing about it changes: parameters take no gradient (inputs still
    do), batch norm normalises with batch statistics but does not update its running statistics, and spectral
    norm uses its current power-iteration vectors."""
    params = [p for p in module.parameters() if p.requires_grad]
    norms = [m for m in batch_norm_modules(module) if m.track_running_stats]
    for p in params:
        p.requires_grad_(False)
    for m in norms:
        m.track_running_stats = False
    try:
        with spectral_norm_frozen(module):
            yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m in norms:
            m.track_running_stats = True
