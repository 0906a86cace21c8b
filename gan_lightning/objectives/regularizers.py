"""Regularizers: terms added to D's or G's loss in the phase they belong to, listed in ``model.regularizers``.

A regularizer overrides the hooks of the terms it adds; each returns its weighted term (a scalar tensor) and
records what it logs in ``ctx.stats`` (logged as ``train/<key>``):

=====================  ============================================================  =====================
hook                   called                                                        sees
=====================  ============================================================  =====================
``d_real(ctx)``        in the D step on real samples (with the fake step when joint)  ``ctx.real``, ``ctx.fake``
``d_fake(ctx)``        in the D step on generated samples                             ``ctx.fake``
``g(ctx)``             in the G phase, through the held-fixed D                       ``ctx.fake``
=====================  ============================================================  =====================

``ctx.real`` and ``ctx.fake`` are ``Side``s: D's input ``x`` (before augmentation; it requires grad when the
regularizer sets ``needs_real_grad``/``needs_fake_grad``), its condition ``c``, D's scores ``(N,)`` and an
auxiliary classifier's logits ``aux`` (or None). ``ctx.critic(x, c)`` runs D as the phase does (augmentation
included, spectral norm held) for penalties on other points, and ``ctx.interpolation_weights(n)`` draws the
per-sample weights of interpolates. A new regularizer is a subclass named by ``class_path`` in a YAML::

    model:
      regularizers:
        - class_path: gan_lightning.objectives.R1
          init_args: {gamma: 0.1}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import UserError


@dataclass
class Side:
    """What D saw of one side of a step: its input, the condition, its scores and class logits."""

    x: Tensor
    c: Optional[Tensor]
    scores: Optional[Tensor] = None
    aux: Optional[Tensor] = None


@dataclass
class Context:
    """What a regularizer hook gets; ``stats`` collects the values it logs (detached)."""

    real: Optional[Side]
    fake: Side
    critic: Callable[[Tensor, Optional[Tensor]], Tensor]
    interpolation_weights: Callable[[int], Tensor]
    stats: dict[str, Tensor] = field(default_factory=dict)


class Regularizer:
    """Adds nothing; subclasses override the hooks of the terms they add."""

    needs_real_grad: bool = False  # D's real input must require grad (input-gradient penalties on real samples)
    needs_fake_grad: bool = False  # ... and its fake input (input-gradient penalties on generated samples)
    needs_class_head: bool = False  # D must return class logits (an auxiliary classifier)
    double_backward: bool = False   # differentiates D's input gradient (D then stays uncompiled with model.compile)

    def d_real(self, ctx: Context) -> Optional[Tensor]:
        return None

    def d_fake(self, ctx: Context) -> Optional[Tensor]:
        return None

    def g(self, ctx: Context) -> Optional[Tensor]:
        return None

    def overrides(self, hook: str) -> bool:
        """Whether this regularizer adds a term in ``hook`` (the system calls only those)."""
        return getattr(type(self), hook) is not getattr(Regularizer, hook)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _non_negative(value: float, field_name: str) -> float:
    if value < 0:
        raise UserError(f"{field_name}: must be >= 0, got {value}")
    return float(value)


def input_gradient_sq_norm(outputs: Tensor, inputs: Tensor) -> Tensor:
    """Per-sample squared L2 norm of d(sum outputs)/d(inputs), shape ``(N,)``, kept differentiable."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor | None = None
) -> Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on interpolates ``x_hat = eps * real + (1 - eps) * fake``,
    ``eps ~ U(0, 1)`` per sample unless given (shape ``(N,)``)."""
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.view((real.shape[0],) + (1,) * (real.dim() - 1)).to(real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    norm = (input_gradient_sq_norm(discriminator(x_hat), x_hat) + 1e-12).sqrt()
    return (norm - 1.0).pow(2).mean()


def r1_penalty(logits: Tensor, x: Tensor) -> Tensor:
    """E[||grad_x D(x)||^2] at the samples ``x`` D scored as ``logits`` (R1 on real samples, R2 on fakes)."""
    return input_gradient_sq_norm(logits, x).mean()


class R1(Regularizer):
    """R1 (Mescheder et al. 2018): ``gamma / 2 * E[||grad_x D(x)||^2]`` on real samples, in D's loss. Logs the
    unweighted mean squared gradient norm as ``train/r1``."""

    needs_real_grad = True
    double_backward = True

    def __init__(
        self,
        gamma: float = 10.0,  # Weight gamma: the term is gamma/2 * E||grad D(x)||^2 (StyleGAN2: 10 at 64px and up).
    ) -> None:
        self.gamma = _non_negative(gamma, "R1.gamma")

    def d_real(self, ctx: Context) -> Tensor:
        penalty = r1_penalty(ctx.real.scores, ctx.real.x)
        ctx.stats["r1"] = penalty.detach()
        return 0.5 * self.gamma * penalty


class R2(Regularizer):
    """R2: the same penalty on generated samples, ``gamma / 2 * E[||grad_x D(G(z))||^2]``, in D's loss; R3GAN
    pairs R1 and R2 with the relativistic loss. Logs ``train/r2``."""

    needs_fake_grad = True
    double_backward = True

    def __init__(
        self,
        gamma: float = 10.0,  # Weight gamma: the term is gamma/2 * E||grad D(G(z))||^2.
    ) -> None:
        self.gamma = _non_negative(gamma, "R2.gamma")

    def d_fake(self, ctx: Context) -> Tensor:
        penalty = r1_penalty(ctx.fake.scores, ctx.fake.x)
        ctx.stats["r2"] = penalty.detach()
        return 0.5 * self.gamma * penalty


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): ``weight * E[(||grad D(x_hat)|| - 1)^2]`` on random interpolates of the
    real and generated batch, in D's loss (computed in the real step). Logs ``train/gp``."""

    double_backward = True

    def __init__(
        self,
        weight: float = 10.0,  # Weight lambda of the penalty (10 in the paper).
    ) -> None:
        self.weight = _non_negative(weight, "GradientPenalty.weight")

    def d_real(self, ctx: Context) -> Tensor:
        eps = ctx.interpolation_weights(ctx.real.x.shape[0])
        penalty = gradient_penalty(lambda x: ctx.critic(x, ctx.real.c), ctx.real.x, ctx.fake.x, eps)
        ctx.stats["gp"] = penalty.detach()
        return self.weight * penalty


class ClassLoss(Regularizer):
    """The AC-GAN class loss (Odena et al. 2017): D's auxiliary classifier (``AuxiliaryClassifier``, or
    ``Projection(classifier: true)``) is trained with ``weight * cross_entropy`` on real and generated samples,
    and G with the same on its samples, so that G draws the class it is asked for. Logs ``train/aux_real``,
    ``train/aux_fake`` and ``train/aux_g``."""

    needs_class_head = True

    def __init__(
        self,
        weight: float = 1.0,  # Weight of the cross-entropy in both phases.
    ) -> None:
        self.weight = _non_negative(weight, "ClassLoss.weight")

    def _term(self, side: Side, key: str, ctx: Context) -> Tensor:
        ce = F.cross_entropy(side.aux, side.c)
        ctx.stats[key] = ce.detach()
        return self.weight * ce

    def d_real(self, ctx: Context) -> Tensor:
        return self._term(ctx.real, "aux_real", ctx)

    def d_fake(self, ctx: Context) -> Tensor:
        return self._term(ctx.fake, "aux_fake", ctx)

    def g(self, ctx: Context) -> Tensor:
        return self._term(ctx.fake, "aux_g", ctx)
