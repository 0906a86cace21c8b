"""Drawing samples reproducibly: noise and labels from each sample's global index and a seed.

Sample ``i`` of a seeded draw always gets the same noise and label, however the draw is split into batches or
processes; metrics and ``sample`` rely on this. The sampling tools keep it: truncated noise is a pure function of
(seed, index, psi), and an interpolation between samples ``2r`` and ``2r + 1`` starts and ends at exactly their
noise.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from gan_lightning.errors import UserError
from gan_lightning.sampling.pixels import to_uint8  # noqa: F401 - also importable from here, next to draw

_BLOCK = 1024  # noise is generated in seeded blocks of this many samples.


def noise_for(indices: Tensor, latent_dim: int, prior: str, seed: int, truncation: Optional[float] = None) -> Tensor:
    """Noise ``(len(indices), latent_dim)`` for global sample indices, a pure function of (index, seed), and of
    ``truncation`` when it is given (see ``truncate``)."""
    indices = indices.long().cpu()
    out = torch.empty(len(indices), latent_dim)
    for block in indices.div(_BLOCK, rounding_mode="floor").unique().tolist():
        g = torch.Generator().manual_seed(seed * 1_000_003 + block)
        z = torch.randn(_BLOCK, latent_dim, generator=g) if prior == "normal" else torch.rand(_BLOCK, latent_dim, generator=g) * 2 - 1
        sel = indices.div(_BLOCK, rounding_mode="floor") == block
        out[sel] = z[indices[sel] % _BLOCK]
    return out if truncation is None else truncate(out, indices, truncation, prior, seed)


def check_truncation(psi: Optional[float], field: str = "--truncation") -> None:
    """Refuse a truncation threshold that is not a positive finite number (None means no truncation)."""
    if psi is not None and not (math.isfinite(psi) and psi > 0):
        raise UserError(f"{field}: the threshold psi must be a finite number > 0 (e.g. 0.5; omit it for no "
                        f"truncation), got {psi}")


def _stream_seed(seed: int, block: int, stream: int) -> int:
    """A 64-bit seed for an auxiliary random stream of a block, independent of the noise's own stream."""
    return int(np.random.SeedSequence([seed % 2**64, block, stream]).generate_state(1, np.uint64)[0])


def _uniform_for(indices: Tensor, width: int, seed: int, stream: int) -> Tensor:
    """Uniform numbers in [0, 1) ``(len(indices), width)`` in float64, a pure function of (index, seed, stream)."""
    out = torch.empty(len(indices), width, dtype=torch.float64)
    blocks = indices.div(_BLOCK, rounding_mode="floor")
    for block in blocks.unique().tolist():
        g = torch.Generator().manual_seed(_stream_seed(seed, block, stream))
        u = torch.rand(_BLOCK, width, generator=g, dtype=torch.float64)
        sel = blocks == block
        out[sel] = u[indices[sel] % _BLOCK]
    return out


_TRUNCATION_STREAM = 1


def truncate(z: Tensor, indices: Tensor, psi: float, prior: str, seed: int) -> Tensor:
    """The truncation trick on the noise ``z`` of global sample ``indices``.

    Normal prior: the BigGAN truncation trick (Brock et al. 2019): every coordinate outside ``[-psi, psi]`` is
    resampled from N(0, 1) until it falls inside, i.e. replaced by a draw from the standard normal truncated to
    ``[-psi, psi]``; that draw is made in one step by the inverse CDF from a seeded uniform number of its own
    (seed, index, coordinate), so sample ``i`` stays a pure function of (seed, i, psi). Coordinates already inside
    are kept, so a ``psi`` above every ``|z|`` changes nothing. Uniform prior: ``z`` is scaled to
    ``[-psi, psi]`` (``psi >= 1`` changes nothing). Lower ``psi``: less variety, more typical samples."""
    check_truncation(psi, "truncation")
    if prior != "normal":
        return z * psi if psi < 1 else z
    # The largest float32 <= psi, so that every kept or redrawn coordinate satisfies |z| <= psi exactly.
    bound = torch.tensor(psi, dtype=torch.float64).to(z.dtype)
    if float(bound) > psi:
        bound = torch.nextafter(bound, torch.zeros_like(bound))
    outside = z.abs() > bound
    if not bool(outside.any()):
        return z
    u = _uniform_for(indices.long().cpu(), z.shape[1], seed, _TRUNCATION_STREAM)
    low = torch.special.ndtr(torch.tensor(-float(bound), dtype=torch.float64))
    redrawn = torch.special.ndtri(low + u * (1 - 2 * low)).to(z.dtype).clamp_(-bound, bound)
    return torch.where(outside, redrawn.to(z.device), z)


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical linear interpolation (Shoemake 1985; White 2016 for GAN latents): ``(N, K, D)`` points
    ``sin((1 - t) w) / sin(w) * a + sin(t w) / sin(w) * b`` for ``a``, ``b`` ``(N, D)`` and weights ``t`` ``(K,)``,
    where ``w`` is the angle between ``a`` and ``b``; linear interpolation where ``sin(w)`` is ~0. The path
    follows the great circle from ``a`` to ``b``; ``t = 0`` and ``t = 1`` give exactly ``a`` and ``b``."""
    a64, b64, t64 = a.double(), b.double(), t.double().reshape(1, -1)
    cos = (a64 * b64).sum(1) / (a64.norm(dim=1) * b64.norm(dim=1)).clamp_min(1e-300)
    omega = cos.clamp(-1.0, 1.0).acos().reshape(-1, 1)
    so = omega.sin()
    flat = so < 1e-7
    safe = torch.where(flat, torch.ones_like(so), so)
    wa = torch.where(flat, 1 - t64, torch.sin((1 - t64) * omega) / safe)
    wb = torch.where(flat, t64, torch.sin(t64 * omega) / safe)
    out = (wa[:, :, None] * a64[:, None, :] + wb[:, :, None] * b64[:, None, :]).to(a.dtype)
    out[:, t.reshape(-1) == 0] = a[:, None, :]
    out[:, t.reshape(-1) == 1] = b[:, None, :]
    return out


def interpolation_noise(rows: int, points: int, latent_dim: int, prior: str, seed: int,
                        truncation: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """Noise ``(rows * points, latent_dim)`` and weights ``t`` ``(rows * points,)``: row ``r`` is ``points``
    points along the slerp from the noise of sample ``2r`` to that of sample ``2r + 1`` of the seeded draw
    (truncated first when ``truncation`` is given), ``t`` evenly spaced from 0 to 1."""
    if points < 2:
        raise UserError(f"--interpolate: needs >= 2 points per row (the two endpoints included), got {points}")
    z = noise_for(torch.arange(2 * rows), latent_dim, prior, seed, truncation)
    t = torch.linspace(0.0, 1.0, points)
    path = slerp(z[0::2], z[1::2], t)
    return path.reshape(rows * points, latent_dim), t.repeat(rows)


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


def _device(model) -> torch.device:
    """Where ``model`` (a GAN, or a generator on its own) computes."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _generate(model, z: Tensor, c: Optional[Tensor], ema: bool, refine: bool) -> Tensor:
    """``model.generate`` for a GAN; for a generator on its own, its forward pass in eval mode."""
    if hasattr(model, "sampling_generator"):  # a GAN
        return model.generate(z, c, ema=ema, refine=refine)
    was_training = model.training
    model.eval()
    try:
        return model(z, c)
    finally:
        model.train(was_training)


@torch.no_grad()
def draw_indices(model, index: Tensor, seed: int = 0, labels: Optional[Tensor] = None, ema: bool = True,
                 truncation: Optional[float] = None, refine: bool = True) -> Tensor:
    """Samples number ``index`` of the seeded draw (with their labels or conditions), in data space, on the CPU;
    through the model's refinement when it has one, unless ``refine=False``. ``model`` is a GAN, or a generator
    on its own (``gan_lightning.nets.Generator``: its own latent prior, no EMA copy, no refinement)."""
    device = _device(model)
    z = noise_for(index, model.latent_dim, model.latent_prior, seed, truncation).to(device)
    y = labels.to(device) if labels is not None else None
    return _generate(model, z, y, ema, refine).float().cpu()


@torch.no_grad()
def draw(model, n: int, seed: int = 0, labels: Optional[Tensor] = None, batch_size: int = 500,
         start: int = 0, ema: bool = True, truncation: Optional[float] = None, refine: bool = True) -> Tensor:
    """Samples ``start .. start+n-1`` of the seeded draw, in data space, on the CPU (refined as ``draw_indices``)."""
    out = []
    for lo in range(0, n, batch_size):
        idx = torch.arange(start + lo, start + min(n, lo + batch_size))
        y = labels[lo : lo + len(idx)] if labels is not None else None
        out.append(draw_indices(model, idx, seed, y, ema, truncation, refine))
    return torch.cat(out) if out else torch.empty(0)


class Drawn(NamedTuple):
    """What ``sample`` returns: ``samples, conditions = gan.sample(16)``."""

    samples: Tensor               # (n, *out_shape) in data space (images in [-1, 1]), float32, on the CPU
    conditions: Optional[Tensor]  # the class labels (n,) or other conditions each sample was drawn with; None


def sample(model, n: int, labels: Optional[Union[Sequence[int], Tensor]] = None, seed: Optional[int] = None,
           truncation: Optional[float] = None, condition_images: Optional[Tensor] = None, batch_size: int = 500,
           ema: bool = True, refine: bool = True) -> Drawn:
    """``n`` samples and their conditions in one call: samples ``0..n-1`` of the seeded draw, exactly what
    ``python -m gan_lightning sample --num n --seed S`` writes (before rounding images to uint8), from the EMA
    generator when there is one and through the model's refinement when it has one.

    ``model`` is a GAN or a generator on its own. ``labels``: class labels cycled to ``n`` (default: evenly over all
    classes). ``seed``: sample ``i`` gets the noise of ``(seed, i)``; None draws a seed from torch's global random
    stream, so that ``torch.manual_seed`` fixes it too. ``truncation``: the truncation trick's threshold psi
    (``truncate``). ``condition_images``: for models conditioned on images, images ``(N, C, H, W)`` in [-1, 1] whose
    conditions are cycled to ``n`` (default: training images of the data module the model is fitted on)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"sample: n must be an integer >= 1, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"sample: batch_size must be an integer >= 1, got {batch_size!r}")
    check_truncation(truncation, "truncation")
    generator = getattr(model, "generator", model)
    if getattr(generator, "waits_for_classes", False):
        raise UserError("sample: the networks wait for num_classes, which they take from the data when training "
                        "starts; fit the model first, or give num_classes to one network")
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()))
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"sample: seed must be an integer >= 0 (or None for a random one), got {seed!r}")
    if isinstance(labels, Tensor):
        if labels.is_floating_point() or labels.dim() != 1:
            raise UserError(f"labels: expected class labels, a list of ints or an int64 tensor (N,), got "
                            f"{labels.dtype} of shape {tuple(labels.shape)}")
        labels = labels.tolist()
    images = None
    if condition_images is not None:
        out_shape = tuple(generator.out_shape)
        if not isinstance(condition_images, Tensor) or tuple(condition_images.shape[1:]) != out_shape \
                or not condition_images.is_floating_point() or len(condition_images) == 0:
            what = (f"{condition_images.dtype} of shape {tuple(condition_images.shape)}"
                    if isinstance(condition_images, Tensor) else type(condition_images).__name__)
            raise UserError(f"condition_images: expected float images (N, {', '.join(map(str, out_shape))}) in "
                            f"[-1, 1], got {what}")
        images = condition_images.detach().float().cpu()
    conditions = model.conditioning.sample_conditions(n, labels=labels, images=images, real=_real(model, seed))
    samples = draw(model, n, seed=seed, labels=conditions, batch_size=batch_size, ema=ema, truncation=truncation,
                   refine=refine)
    return Drawn(samples, conditions)


def _real(model, seed: int) -> Any:
    """``real(n)``: ``n`` training samples of the data module ``model`` is fitted on (a seeded subset, cycled), as
    the ``sample`` command takes them from the checkpoint's data; None without one."""
    from gan_lightning.runtime.compat import attached_trainer

    trainer = attached_trainer(model) if hasattr(model, "sampling_generator") else None  # a GAN (a LightningModule)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is None or not hasattr(datamodule, "real_samples"):
        return None

    def real(n: int) -> Tensor:
        x, _ = datamodule.real_samples(n, seed=seed)
        return x[torch.arange(n) % len(x)]

    return real


@torch.no_grad()
def draw_from(model, z: Tensor, labels: Optional[Tensor] = None, batch_size: int = 500, ema: bool = True) -> Tensor:
    """Samples for given noise ``z`` (and conditions), ``batch_size`` per generator call, in data space, on the CPU."""
    out = []
    for lo in range(0, len(z), batch_size):
        y = labels[lo : lo + batch_size].to(model.device) if labels is not None else None
        out.append(model.generate(z[lo : lo + batch_size].to(model.device), y, ema=ema).float().cpu())
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


def save_pngs(images: Tensor, folder: str, start: int = 0) -> list[str]:
    """One PNG per uint8 image ``(N, C, H, W)`` (C = 1: grayscale, C = 3: RGB) into an existing ``folder``, named
    ``000000.png``, ``000001.png``, ... from ``start``; returns the file names. The pixels are stored exactly."""
    from PIL import Image

    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"save_pngs: expected uint8 images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}")
    names = []
    pixels = images.permute(0, 2, 3, 1).contiguous().numpy()
    for i, image in enumerate(pixels, start):
        name = f"{i:06d}.png"
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(os.path.join(folder, name))
        names.append(name)
    return names
