"""Drawing samples reproducibly: noise and labels from each sample's global index and a seed.

Sample ``i`` of a seeded draw always gets the same noise and label, however the draw is split into batches or
processes; metrics and ``sample`` rely on this.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from gan_lightning.errors import UserError
from gan_lightning.pixels import to_uint8  # noqa: F401 - also importable from here, next to draw

_BLOCK = 1024  # noise is generated in seeded blocks of this many samples.


def noise_for(indices: Tensor, latent_dim: int, prior: str, seed: int) -> Tensor:
    """Noise ``(len(indices), latent_dim)`` for global sample indices, a pure function of (index, seed)."""
    indices = indices.long().cpu()
    out = torch.empty(len(indices), latent_dim)
    for block in indices.div(_BLOCK, rounding_mode="floor").unique().tolist():
        g = torch.Generator().manual_seed(seed * 1_000_003 + block)
        z = torch.randn(_BLOCK, latent_dim, generator=g) if prior == "normal" else torch.rand(_BLOCK, latent_dim, generator=g) * 2 - 1
        sel = indices.div(_BLOCK, rounding_mode="floor") == block
        out[sel] = z[indices[sel] % _BLOCK]
    return out


def labels_for(n: int, num_classes: int, labels: Optional[Sequence[int]] = None, field: str = "--labels") -> Optional[Tensor]:
    """Labels ``(n,)``: the given ones cycled to length n, or evenly over all classes; None when unconditional."""
    if num_classes == 0:
        if labels:
            raise UserError(f"{field}: this model is unconditional; drop {field}")
        return None
    pool = torch.as_tensor(list(labels) if labels else range(num_classes), dtype=torch.long)
    bad = pool[(pool < 0) | (pool >= num_classes)]
    if len(bad):
        raise UserError(f"{field}: label {int(bad[0])} is outside [0, {num_classes}); use labels 0..{num_classes - 1}")
    return pool[torch.arange(n) % len(pool)]


@torch.no_grad()
def draw_indices(model, index: Tensor, seed: int = 0, labels: Optional[Tensor] = None, ema: bool = True) -> Tensor:
    """Samples number ``index`` of the seeded draw (with their labels or conditions), in data space, on the CPU."""
    z = noise_for(index, model.latent_dim, model.latent_prior, seed).to(model.device)
    y = labels.to(model.device) if labels is not None else None
    return model.generate(z, y, ema=ema).float().cpu()


@torch.no_grad()
def draw(model, n: int, seed: int = 0, labels: Optional[Tensor] = None, batch_size: int = 500,
         start: int = 0, ema: bool = True) -> Tensor:
    """Samples ``start .. start+n-1`` of the seeded draw, in data space, on the CPU."""
    out = []
    for lo in range(0, n, batch_size):
        idx = torch.arange(start + lo, start + min(n, lo + batch_size))
        y = labels[lo : lo + len(idx)] if labels is not None else None
        out.append(draw_indices(model, idx, seed, y, ema))
    return torch.cat(out) if out else torch.empty(0)


def save_grid(images: Tensor, path: str, nrow: int) -> None:
    """A PNG grid of images in [-1, 1], ``nrow`` images per row."""
    import torchvision

    torchvision.utils.save_image(images.float(), path, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)


def save_scatter(points: Tensor, path: str, modes: Optional[Tensor] = None) -> None:
    """A PNG scatter plot of 2D points (and the data's modes, if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    p = points.float().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5, color="tab:blue", label="samples")
    if modes is not None:
        ax.scatter(modes[:, 0].numpy(), modes[:, 1].numpy(), s=30, marker="x", color="tab:red", label="modes")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
