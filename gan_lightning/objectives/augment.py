"""Differentiable augmentation of every image D sees: real and generated, in both phases.

``model.augment`` names one module; the system applies it to D's input on every D call (the real and fake
batches of the D phase, the interpolates of a gradient penalty, the fakes of the G phase), so G's gradient
passes through the augmentation and D never sees an un-augmented image. This is what lets a GAN train on small
data (DiffAugment: Zhao et al. 2020; ADA: Karras et al. 2020) without the augmentations leaking into G's samples.

- ``DiffAugment``: DiffAugment's color, translation and cutout, applied to every image.
- ``AdaptiveAugment``: the same operations, each applied to an image with probability ``p``, and ``p`` tuned as
  in ADA from the sign of D's outputs on real images: ``r_t = E[sign(D(x))]`` over ``interval`` D steps, then
  ``p += sign(r_t - target) * images / (speed_kimg * 1000)``, clamped to [0, 1]. Logged as ``train/augment_p``;
  ``p`` and its statistics are saved in checkpoints.

A new augmentation subclasses ``Augment`` (``forward(x)``; optionally ``observe`` and ``stats``)::

    model:
      augment:
        class_path: gan_lightning.objectives.AdaptiveAugment
        init_args: {target: 0.6}
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import UserError


class Augment(nn.Module):
    """Identity; subclasses transform ``x`` ``(N, C, H, W)`` differentiably."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def observe(self, real_scores: Tensor) -> None:
        """Called after every D step with D's scores ``(N,)`` on the real batch (detached)."""

    def stats(self) -> dict[str, Tensor]:
        """Values to log under ``train/``."""
        return {}

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse data this augmentation cannot transform (called once with the sample shape)."""
        if len(shape) != 3:
            raise UserError(f"model.augment: {type(self).__name__} augments images (C, H, W), but samples have shape "
                            f"{tuple(shape)}; remove model.augment for vector data")


# --------------------------------------------------------------------------- DiffAugment's operations
def brightness(x: Tensor) -> Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ``ratio`` of its size, padding with zeros (a gather: differentiable in x)."""
    n, _, h, w = x.shape
    sx, sy = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sx, sx + 1, size=(n, 1, 1), device=x.device)
    ty = torch.randint(-sy, sy + 1, size=(n, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of ``ratio`` of the image's side at a random position in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), size=(n, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), size=(n, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


OPERATIONS: dict[str, list[Callable[[Tensor], Tensor]]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


def _policy(policy: str, field: str) -> list[Callable[[Tensor], Tensor]]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in names if p not in OPERATIONS]
    if bad or not names:
        raise UserError(f"{field}: unknown augmentation {bad[0] if bad else policy!r}; use a comma-separated subset "
                        f"of {', '.join(OPERATIONS)}")
    return [op for name in names for op in OPERATIONS[name]]


class DiffAugment(Augment):
    """DiffAugment (Zhao et al. 2020): every image D sees gets random brightness, saturation and contrast
    (``color``), a shift of up to 1/8 of its size (``translation``) and a zeroed square of half its size
    (``cutout``); each image draws its own parameters. The paper's choice for small data: all three."""

    def __init__(
        self,
        policy: str = "color,translation,cutout",  # Comma-separated subset of color, translation, cutout.
    ) -> None:
        super().__init__()
        self.policy = policy
        self.ops = _policy(policy, "DiffAugment.policy")

    def forward(self, x: Tensor) -> Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"


class AdaptiveAugment(Augment):
    """ADA-style adaptive augmentation (Karras et al. 2020) over DiffAugment's operations: each operation is
    applied to each image with probability ``p``; every ``interval`` D steps ``p`` moves by
    ``sign(E[sign(D(x))] - target) * images / (speed_kimg * 1000)``, so it rises while D is over-confident on
    the real data (over-fitting) and falls otherwise. Across processes the statistic is averaged."""

    def __init__(
        self,
        policy: str = "color,translation,cutout",  # Operations, as for DiffAugment.
        target: float = 0.6,        # Target of E[sign(D(x))] on real images (ADA: 0.6).
        interval: int = 4,          # D steps between adjustments of p (ADA: 4).
        speed_kimg: float = 500.0,  # Thousands of images for p to move from 0 to 1 (ADA: 500).
        p_init: float = 0.0,        # Initial probability.
        p_max: float = 1.0,         # Upper bound of p.
    ) -> None:
        super().__init__()
        if not -1.0 <= target <= 1.0:
            raise UserError(f"AdaptiveAugment.target: E[sign(D(x))] lies in [-1, 1], got {target}")
        if interval < 1 or speed_kimg <= 0:
            raise UserError("AdaptiveAugment: interval must be >= 1 and speed_kimg > 0")
        if not 0.0 <= p_init <= p_max <= 1.0:
            raise UserError(f"AdaptiveAugment: need 0 <= p_init <= p_max <= 1, got p_init={p_init}, p_max={p_max}")
        self.policy, self.target, self.interval = policy, float(target), int(interval)
        self.speed_kimg, self.p_max = float(speed_kimg), float(p_max)
        self.ops = _policy(policy, "AdaptiveAugment.policy")
        self.register_buffer("p", torch.tensor(float(p_init)))
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.steps = 0  # D steps observed since the last adjustment (saved as extra state)

    def forward(self, x: Tensor) -> Tensor:
        p = self.p.to(x.dtype)
        for op in self.ops:
            apply = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)
            x = apply * op(x) + (1 - apply) * x
        return x

    @torch.no_grad()
    def observe(self, real_scores: Tensor) -> None:
        self.sign_sum += real_scores.detach().sign().sum().double()
        self.count += real_scores.shape[0]
        self.steps += 1
        if self.steps < self.interval:
            return
        stats = torch.stack([self.sign_sum, self.count])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        rt = stats[0] / stats[1].clamp_min(1)
        adjust = torch.sign(rt - self.target) * stats[1] / (self.speed_kimg * 1000.0)
        self.p.copy_((self.p.double() + adjust).clamp(0.0, self.p_max))
        self.sign_sum.zero_()
        self.count.zero_()
        self.steps = 0

    def stats(self) -> dict[str, Tensor]:
        return {"augment_p": self.p.detach()}

    def get_extra_state(self) -> Any:
        return {"steps": self.steps}

    def set_extra_state(self, state: Any) -> None:
        self.steps = int(state.get("steps", 0))

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}, target={self.target}, interval={self.interval}, speed_kimg={self.speed_kimg}"
