"""Mode coverage on the toy 2D mixtures (the PacGAN protocol).

A sample is *high quality* when it lies within 3 standard deviations of its nearest mode. *Modes captured*
counts modes with at least one high-quality sample; *reverse KL* is KL(p || uniform) of the histogram of
high-quality samples over the modes. PacGAN reports these on 2,500 samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_coverage(points: Tensor, modes: Tensor, sigma: float) -> dict[str, float]:
    """``points`` (N, 2) and ``modes`` (M, 2) -> ``modes``, ``high_quality`` (percent), ``reverse_kl``."""
    points, modes = points.double().cpu(), modes.double().cpu()
    dist = torch.cdist(points, modes)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3.0 * sigma
    counts = torch.bincount(nearest[good], minlength=modes.shape[0]).double()
    total = counts.sum()
    if total > 0:
        p = counts / total
        nz = p > 0
        reverse_kl = float((p[nz] * (p[nz] * modes.shape[0]).log()).sum())
    else:
        reverse_kl = math.inf
    return {
        "modes": float((counts > 0).sum()),
        "high_quality": 100.0 * float(good.double().mean()) if len(points) else 0.0,
        "reverse_kl": reverse_kl,
    }
