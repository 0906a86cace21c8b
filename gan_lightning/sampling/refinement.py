"""Sampling with the discriminator's help: refine each sample's noise before the generator maps it.

A generator is a continuous map of a connected noise distribution, so a model of data with separate modes
(the toy mixtures, well-separated classes) must send some noise across the gaps between them: thin "bridges" of
samples that the discriminator scores as fake. Refinement moves each sample's noise a few gradient steps uphill
on D's score before G maps it, so the noise at a bridge slides to one side of it; noise well inside a mode,
where D's score is flat, barely moves. This is the latent-space form of discriminator-driven sampling
(Tanaka 2019, *Discriminator optimal transport*; Che et al. 2020, *Your GAN is secretly an energy-based
model*, whose Langevin sampler adds noise to the same gradient steps).

Named in an experiment as ``model.refinement``; every sample the model draws then goes through it (grids,
``sample``, whose .npz then says ``refined``). The metrics keep the two apart: ``ToyMetrics``, ``ImageMetrics``
and ``evaluate`` report the generator's own samples under the plain keys (``modes``, ``fid_mnist``) and the
refined ones beside them with a ``_refined`` suffix (``modes_refined``, ``fid_mnist_refined``). Each
sample's refined noise depends only on its own noise and condition (D and G run in eval mode, and the gradient
of a sum of per-sample scores is per sample), so a seeded draw stays the same however it is split into batches
or processes.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from gan_lightning.errors import UserError


class LatentRefinement:
    """``steps`` gradient-ascent steps on the noise ``z`` of each sample::

        z <- z + step_size * (grad_z D(G(z), c) - anchor * (z - z0))

    from the drawn noise ``z0``, then ``G(z)``. ``anchor`` pulls the noise back towards where it was drawn (the
    transport cost of discriminator optimal transport, squared); 0 leaves the few small steps unanchored. With a
    uniform prior the refined noise is kept inside [-1, 1]. Truncated noise (``sample --truncation``) is refined
    from where the truncation put it, and may end up slightly past the threshold.

    D scores the samples as they are, without the training-time augmentation; with an EMA generator, D is the one
    trained against the raw generator, which the EMA copy tracks closely once the learning rate has decayed."""

    def __init__(
        self,
        steps: int = 5,            # Gradient steps per sample (each one forward and backward pass of G and D).
        step_size: float = 0.01,   # Step along D's gradient with respect to the noise.
        anchor: float = 0.0,       # Pull back towards the drawn noise, 0 = none.
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UserError(f"LatentRefinement.steps: must be an integer >= 1, got {steps!r}")
        if not (math.isfinite(step_size) and step_size > 0):
            raise UserError(f"LatentRefinement.step_size: must be a finite number > 0 (e.g. 0.01), got {step_size}")
        if not (math.isfinite(anchor) and anchor >= 0):
            raise UserError(f"LatentRefinement.anchor: must be a finite number >= 0 (0 = no pull back), got {anchor}")
        self.steps, self.step_size, self.anchor = int(steps), float(step_size), float(anchor)

    def __call__(self, z0: Tensor, c: Optional[Tensor], generator: Callable[[Tensor, Optional[Tensor]], Tensor],
                 critic: Callable[[Tensor, Optional[Tensor]], Tensor], prior: str = "normal") -> Tensor:
        """The refined noise for ``z0`` ``(N, latent_dim)`` (and conditions ``c``): ``critic(x, c)`` gives D's
        scores ``(N,)``. Only ``z`` takes gradients; the networks' ``.grad`` are left as they are."""
        # Gradients are needed even when the caller samples under no_grad or inference mode.
        with torch.inference_mode(False), torch.enable_grad():
            z = z0.detach().clone()
            for _ in range(self.steps):
                z.requires_grad_(True)
                scores = critic(generator(z, c), c)
                (grad,) = torch.autograd.grad(scores.sum(), z)
                z = z.detach()
                step = grad if self.anchor == 0 else grad - self.anchor * (z - z0)
                z = z + self.step_size * step
                if prior == "uniform":
                    z = z.clamp(-1.0, 1.0)
        return z.detach()

    def __repr__(self) -> str:
        return f"LatentRefinement(steps={self.steps}, step_size={self.step_size:g}, anchor={self.anchor:g})"
