"""Regularizers: terms added to D's or G's loss in the phase they belong to, listed in ``model.regularizers``.

A regularizer is an ``nn.Module`` (the GAN holds them in an ``nn.ModuleList``, so their buffers move with the
model and their state is saved in checkpoints under ``regularizers.<i>.``). It overrides the hooks of the terms
it adds; each returns its weighted term (a scalar tensor), or None where it adds nothing this step, and records
what it logs in ``ctx.stats`` (logged as ``train/<key>``). The system calls every hook a regularizer overrides
once per D step (``d_real``, ``d_fake``) or G step (``g``):

====================  ===============================================================  ==============================
hook                  called                                                           sees
====================  ===============================================================  ==============================
``d_real(ctx)``       joint D step: after both D forwards, before ``d_fake``;          ``ctx.real``, ``ctx.fake``,
                      split D step: in the real step (the second)                      both with their scores
``d_fake(ctx)``       joint D step: after ``d_real``;                                  ``ctx.fake`` (joint: and
                      split D step: in the fake step (the first)                       ``ctx.real`` with scores)
``g(ctx)``            in the G phase, through the held-fixed D                         ``ctx.fake``
====================  ===============================================================  ==============================

In a joint D step every term enters one loss and one backward. In a split D step (``d_step: split``) the fake
step's loss is backpropagated and D updated before the real batch is scored, so: in the fake step
``ctx.real.scores`` is None, and in the real step ``ctx.fake.scores`` are the fake step's, whose graph is spent
(use them as values only; a term on them cannot train D there).

``ctx.real`` and ``ctx.fake`` are ``Side``s: D's input ``x`` (before augmentation; it requires grad when a
regularizer's ``needs_real_grad``/``needs_fake_grad`` is True), its condition ``c``, D's scores ``(N,)`` and an
auxiliary classifier's logits ``aux`` (or None). The system reads ``needs_real_grad``/``needs_fake_grad`` once per
D step, right before D's forward, and then calls the hooks; a regularizer may answer differently from step to
step (the lazy penalties below ask for an input gradient only on the steps they compute). ``ctx.critic(x, c)``
runs D as the phase does (augmentation included, spectral norm held) for penalties on other points, and
``ctx.interpolation_weights(n)`` draws the per-sample weights of interpolates. In ``g`` hooks ``ctx.generator`` is
G as the phase trains it and ``ctx.sample_z(n)`` draws noise from the latent prior, for terms that run a
generator forward of their own (a path-length penalty).

State that must survive a checkpoint lives in buffers (tensors: EMAs of scores) or in
``get_extra_state``/``set_extra_state`` (Python values: step counts that decide control flow). Hooks never wait
for the device: no ``.item()``, ``float()``/``bool()`` of a tensor, nor a decision on a tensor's value.

``R1``, ``R2`` and ``GradientPenalty`` take ``every``: the penalty is computed on every ``every``-th D step (the
first included) with its weight multiplied by ``every`` ("lazy regularization", StyleGAN2: Karras et al. 2020,
R1 every 16 minibatches); the cadence is saved in checkpoints, so a resumed run keeps it. ``LeCam`` anchors D's
scores to EMAs of its past scores (Tseng et al. 2021). ``PathLength`` is StyleGAN2's path-length penalty on G,
lazy in the same way (every 4 G steps by default).

A new regularizer is a subclass named by ``class_path`` in a YAML::

    model:
      regularizers:
        - class_path: gan_lightning.objectives.R1
          init_args: {gamma: 0.1, every: 16}
        - class_path: gan_lightning.objectives.LeCam
          init_args: {weight: 0.3}
        - class_path: gan_lightning.objectives.PathLength   # with gan_lightning.nets.stylegan2.StyleGAN2Generator
          init_args: {weight: 2.0, every: 4}
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

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
    # In the G phase only: G as the phase trains it and noise from the latent prior, for terms on a forward of
    # their own (e.g. a path-length penalty); None in the D phase.
    generator: Optional[nn.Module] = None
    sample_z: Optional[Callable[[int], Tensor]] = None


class Regularizer(nn.Module):
    """Adds nothing; subclasses override the hooks of the terms they add (and call ``super().__init__()``)."""

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

    def extra_repr(self) -> str:
        # The constructor's arguments where they are kept under their own names: R1(gamma=10.0, every=1).
        params = inspect.signature(type(self).__init__).parameters.values()
        names = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return ", ".join(f"{name}={self.__dict__[name]!r}" for name in names if name in self.__dict__)


def _non_negative(value: float, field_name: str) -> float:
    if value < 0:
        raise UserError(f"{field_name}: must be >= 0, got {value}")
    return float(value)


def _positive_int(value: int, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(f"{field_name}: must be an integer >= 1, got {value!r}")
    return int(value)


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


class LazyRegularizer(Regularizer):
    """A penalty computed on every ``every``-th D step, with its weight multiplied by ``every`` (lazy
    regularization, StyleGAN2: Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

    The regularizer counts its own hook calls (the system calls an overriding hook once per D step); the call
    whose count is a multiple of ``every`` computes the penalty, the first call included, and the others return
    None without computing anything. The count is a Python int saved as extra state, so a resumed run continues
    the cadence exactly. The penalty is folded into the D loss of the step it is due on: there is no separate
    regularization step, so, unlike StyleGAN2's separate pass, Adam's learning rate and betas need no correction.
    """

    def __init__(self, every: int, field_name: str) -> None:
        super().__init__()
        self.every = _positive_int(every, field_name)
        self.steps = 0  # hook calls so far, one per D step (saved as extra state)

    @property
    def due(self) -> bool:
        """Whether the next hook call computes the penalty."""
        return self.steps % self.every == 0

    def _advance(self) -> bool:
        """Count this hook call; whether it computes the penalty."""
        due = self.due
        self.steps += 1
        return due

    def get_extra_state(self) -> Any:
        return {"steps": self.steps}

    def set_extra_state(self, state: Any) -> None:
        self.steps = int(state["steps"])


class R1(LazyRegularizer):
    """R1 (Mescheder et al. 2018): ``gamma / 2 * E[||grad_x D(x)||^2]`` on real samples, in D's loss. Logs the
    unweighted mean squared gradient norm as ``train/r1`` on the steps it is computed. With ``every = k`` it is
    computed on every k-th D step with weight ``k * gamma / 2`` and D's real input requires grad only then
    (see ``LazyRegularizer``; StyleGAN2 uses k = 16)."""

    double_backward = True

    def __init__(
        self,
        gamma: float = 10.0,  # Weight gamma: the term is gamma/2 * E||grad D(x)||^2 (StyleGAN2: 10 at 64px and up).
        every: int = 1,       # Compute it every this many D steps, weighted by this (StyleGAN2's lazy R1: 16).
    ) -> None:
        super().__init__(every, "R1.every")
        self.gamma = _non_negative(gamma, "R1.gamma")

    @property
    def needs_real_grad(self) -> bool:
        return self.due

    def d_real(self, ctx: Context) -> Optional[Tensor]:
        if not self._advance():
            return None
        penalty = r1_penalty(ctx.real.scores, ctx.real.x)
        ctx.stats["r1"] = penalty.detach()
        # The Python floats multiply first: with every = 1 the term is exactly 0.5 * gamma * penalty.
        return 0.5 * self.gamma * self.every * penalty


class R2(LazyRegularizer):
    """R2: the same penalty on generated samples, ``gamma / 2 * E[||grad_x D(G(z))||^2]``, in D's loss; R3GAN
    pairs R1 and R2 with the relativistic loss. Logs ``train/r2``. ``every`` as for ``R1``."""

    double_backward = True

    def __init__(
        self,
        gamma: float = 10.0,  # Weight gamma: the term is gamma/2 * E||grad D(G(z))||^2.
        every: int = 1,       # Compute it every this many D steps, weighted by this (lazy regularization).
    ) -> None:
        super().__init__(every, "R2.every")
        self.gamma = _non_negative(gamma, "R2.gamma")

    @property
    def needs_fake_grad(self) -> bool:
        return self.due

    def d_fake(self, ctx: Context) -> Optional[Tensor]:
        if not self._advance():
            return None
        penalty = r1_penalty(ctx.fake.scores, ctx.fake.x)
        ctx.stats["r2"] = penalty.detach()
        return 0.5 * self.gamma * self.every * penalty


class GradientPenalty(LazyRegularizer):
    """WGAN-GP (Gulrajani et al. 2017): ``weight * E[(||grad D(x_hat)|| - 1)^2]`` on random interpolates of the
    real and generated batch, in D's loss (computed in the real step). Logs ``train/gp``. ``every`` as for ``R1``
    (the interpolates are D inputs of their own, so neither of D's batch inputs needs grad)."""

    double_backward = True

    def __init__(
        self,
        weight: float = 10.0,  # Weight lambda of the penalty (10 in the paper).
        every: int = 1,        # Compute it every this many D steps, weighted by this (lazy regularization).
    ) -> None:
        super().__init__(every, "GradientPenalty.every")
        self.weight = _non_negative(weight, "GradientPenalty.weight")

    def d_real(self, ctx: Context) -> Optional[Tensor]:
        if not self._advance():
            return None
        eps = ctx.interpolation_weights(ctx.real.x.shape[0])
        penalty = gradient_penalty(lambda x: ctx.critic(x, ctx.real.c), ctx.real.x, ctx.fake.x, eps)
        ctx.stats["gp"] = penalty.detach()
        return self.weight * self.every * penalty


class LeCam(Regularizer):
    """LeCam regularization (Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data",
    CVPR 2021; reference implementation github.com/google/lecam-gan, built on BigGAN-PyTorch): D's loss gets

        ``weight * (E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2])``

    where ``ema_real`` and ``ema_fake`` are exponential moving averages of the batch mean of D's real and fake
    scores. It pulls real scores down towards past fake scores and fake scores up towards past real scores
    (only where they have crossed), which bounds D's confidence when it over-fits a small data set; the paper
    relates the regularized objective to the LeCam (triangular) divergence. Logs the unweighted term as
    ``train/lecam`` on the steps it is added.

    As in the reference, each D step first updates the EMAs with that step's detached score means (``ema =
    decay * ema + (1 - decay) * mean``), then computes the term against them. During the first ``start`` D steps
    the EMAs copy the current means instead of averaging and no term is added (the reference: ``start_itr =
    1000`` iterations of 4 D steps, EMA decay 0.9, ``--LC 0.3`` on CIFAR-10/100); here ``start`` counts D steps.
    The very first D step always copies, so the EMAs never average with their initial zeros. Across processes
    the score means are averaged, so every process keeps the EMAs of the global batch, as the reference's single
    data-parallel process did.

    Where the halves run: in a joint D step ``d_real`` sees both sides' scores and adds the whole term (both
    halves, after updating both EMAs), and ``d_fake`` adds nothing. In a split D step the fake step's graph is
    gone by the real step, so ``d_fake`` adds the fake half in the fake step (updating ``ema_fake``; ``ema_real``
    is then the previous steps' average, since D has not scored this step's real batch yet) and ``d_real`` adds
    the real half in the real step (updating ``ema_real``; ``ema_fake`` includes this step's fakes).

    State: the EMAs are buffers (``ema_real``, ``ema_fake``) and the count of D steps is extra state, so both are
    saved in checkpoints and a resumed run continues exactly.
    """

    def __init__(
        self,
        weight: float = 0.3,  # Weight lambda of the term (the reference on CIFAR-10/100 with BigGAN: 0.3).
        decay: float = 0.9,   # Decay of the EMAs of D's mean real and fake scores (the reference's BigGAN code: 0.9).
        start: int = 1000,    # D steps during which the EMAs copy the current means and no term is added.
    ) -> None:
        super().__init__()
        self.weight = _non_negative(weight, "LeCam.weight")
        if not 0.0 <= decay < 1.0:
            raise UserError(f"LeCam.decay: must be in [0, 1), got {decay}")
        self.decay = float(decay)
        if isinstance(start, bool) or not isinstance(start, numbers.Integral) or start < 0:
            raise UserError(f"LeCam.start: must be an integer >= 0, got {start!r}")
        self.start = int(start)
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.steps = 0  # D steps so far (saved as extra state)
        # Within a split D step only: the fake step's unweighted half, logged with the real half.
        self._split_fake_half: Optional[Tensor] = None
        self._split_fake_seen = False

    def _means(self, *scores: Tensor) -> Tensor:
        """The detached batch means of ``scores``, averaged across processes, in the EMAs' dtype."""
        means = torch.stack([s.detach().to(self.ema_real.dtype).mean() for s in scores])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(means)
            means = means / dist.get_world_size()
        return means

    @torch.no_grad()
    def _update(self, ema: Tensor, mean: Tensor, step: int) -> None:
        if step < max(self.start, 1):
            ema.copy_(mean)
        else:
            ema.mul_(self.decay).add_(mean, alpha=1.0 - self.decay)

    def _active(self, step: int) -> bool:
        return step >= self.start

    def _real_half(self, real_scores: Tensor) -> Tensor:
        return F.relu(real_scores - self.ema_fake).pow(2).mean()

    def _fake_half(self, fake_scores: Tensor) -> Tensor:
        return F.relu(self.ema_real - fake_scores).pow(2).mean()

    def d_real(self, ctx: Context) -> Optional[Tensor]:
        step = self.steps
        self.steps += 1
        real = ctx.real.scores
        split, fake_half = self._split_fake_seen, self._split_fake_half
        self._split_fake_seen, self._split_fake_half = False, None
        if split:
            self._update(self.ema_real, self._means(real)[0], step)
        else:
            fake = ctx.fake.scores
            if fake is None:
                raise RuntimeError("LeCam.d_real: a joint D step must score both batches before the d_real hooks "
                                   "run (ctx.fake.scores is None)")
            means = self._means(real, fake)
            self._update(self.ema_real, means[0], step)
            self._update(self.ema_fake, means[1], step)
        if not self._active(step):
            return None
        real_half = self._real_half(real)
        if split:
            ctx.stats["lecam"] = real_half.detach() + fake_half
            return self.weight * real_half
        term = real_half + self._fake_half(fake)
        ctx.stats["lecam"] = term.detach()
        return self.weight * term

    def d_fake(self, ctx: Context) -> Optional[Tensor]:
        if ctx.real is not None and ctx.real.scores is not None:
            return None  # a joint D step: d_real, which ran first, added both halves
        # The fake step of a split D step (D has not scored the real batch yet); d_real follows in the real step.
        step = self.steps
        fake = ctx.fake.scores
        self._split_fake_seen = True
        self._update(self.ema_fake, self._means(fake)[0], step)
        if not self._active(step):
            return None
        fake_half = self._fake_half(fake)
        self._split_fake_half = fake_half.detach()
        return self.weight * fake_half

    def get_extra_state(self) -> Any:
        return {"steps": self.steps}

    def set_extra_state(self, state: Any) -> None:
        self.steps = int(state["steps"])


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
        super().__init__()
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


class PathLength(LazyRegularizer):
    """StyleGAN2's path-length regularization (Karras et al. 2020, "Analyzing and Improving the Image Quality of
    StyleGAN"; as in StyleGAN2-ADA's ``training/loss.py``), in G's loss: on a G forward of its own over
    ``N // batch_shrink`` fresh noise vectors (with the conditions of the phase's first fakes),

        ``a_i = sqrt(mean_l ||d<G(w)_i, y_i> / d w_il||^2)``, ``y_i ~ N(0, I) / sqrt(H * W)``

    over the layers' ``ws`` ``w_il``, and the term ``weight * mean_i (a_i - m)^2`` with ``m = pl_mean + decay *
    (mean_i a_i - pl_mean)``, ``pl_mean`` the exponential moving average of the lengths (a buffer, so it resumes
    exactly). As in the reference, ``m`` keeps its gradient through this step's mean. Logs the unweighted penalty
    as ``train/pl_penalty`` and ``train/pl_mean`` on the steps it is computed.

    Lazy (``LazyRegularizer``): computed on every ``every``-th G step (the first included) with its weight
    multiplied by ``every`` (the reference: 4). The generator must have ``images_and_ws(z, c)`` returning the
    images and the ``ws`` ``(N, num_ws, w_dim)`` they were made from (``gan_lightning.nets.stylegan2``). Under a
    distributed strategy the forward runs on the unwrapped generator, inside the G phase's single backward (its
    gradients reach the same parameters), and ``pl_mean`` follows the mean over all processes, so every process
    keeps the same buffer.
    """

    double_backward = True

    def __init__(
        self,
        weight: float = 2.0,     # Weight of the penalty (StyleGAN2 and StyleGAN2-ADA: 2).
        every: int = 4,          # Compute it every this many G steps, weighted by this (the reference: 4).
        batch_shrink: int = 2,   # Its batch is the phase's batch size divided by this (the reference: 2).
        decay: float = 0.01,     # Decay of the moving average of the path lengths (the reference: 0.01).
    ) -> None:
        super().__init__(every, "PathLength.every")
        self.weight = _non_negative(weight, "PathLength.weight")
        self.batch_shrink = _positive_int(batch_shrink, "PathLength.batch_shrink")
        if not 0.0 < decay <= 1.0:
            raise UserError(f"PathLength.decay: must be in (0, 1], got {decay}")
        self.decay = float(decay)
        self.register_buffer("pl_mean", torch.zeros(()))

    def g(self, ctx: Context) -> Optional[Tensor]:
        if not self._advance():
            return None
        if ctx.generator is None or ctx.sample_z is None:
            raise RuntimeError("PathLength.g: the G phase's context carries no generator or sample_z")
        net = getattr(ctx.generator, "module", ctx.generator)  # a DistributedDataParallel wrapper's network
        if not callable(getattr(net, "images_and_ws", None)):
            raise UserError(f"model.regularizers: PathLength needs a generator with images_and_ws (e.g. "
                            f"gan_lightning.nets.stylegan2.StyleGAN2Generator); {type(net).__name__} has none")
        n = max(1, ctx.fake.x.shape[0] // self.batch_shrink)
        c = ctx.fake.c[:n] if ctx.fake.c is not None else None
        images, ws = net.images_and_ws(ctx.sample_z(n), c)
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        mean = lengths.mean()
        pl_mean = self.pl_mean.lerp(mean.to(self.pl_mean.dtype), self.decay)
        with torch.no_grad():
            batch_mean = mean.detach().to(self.pl_mean.dtype)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                batch_mean = batch_mean.clone()
                dist.all_reduce(batch_mean)
                batch_mean = batch_mean / dist.get_world_size()
            self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, self.decay))
        penalty = (lengths - pl_mean).square().mean()
        ctx.stats["pl_penalty"] = penalty.detach()
        ctx.stats["pl_mean"] = self.pl_mean.detach().clone()
        return self.weight * self.every * penalty
