"""The GAN system: two networks, two optimizers, one two-phase min-max loop (SPEC §2).

One ``training_step`` is one generator iteration:

1. **D phase**, ``n_critic`` times. G is held fixed: fakes reach D detached, so no gradient reaches G. Only D's
   optimizer steps, either once on real and fake together (``d_step: joint``) or once on the fake batch and
   once on the real batch (``d_step: split``).
2. **G phase**. D is held fixed: its parameters take no gradient and its normalization statistics (batch-norm
   running stats, spectral-norm power-iteration vectors) do not move, while gradients flow from D's output
   back through D into G. Only G's optimizer steps.

The fakes of the last D step are generated with their graph kept and reused by the G phase, so one iteration
costs ``n_critic`` generator forwards, not ``n_critic + 1``.

Only the generator's optimizer step counts as a Lightning step, so ``trainer.global_step``, ``max_steps`` and
every step-based cadence count generator iterations (SPEC §6).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from gan_lightning.conditioning import check_labels
from gan_lightning.losses import gradient_penalty, get_loss, r1_penalty
from gan_lightning.nets.base import Discriminator, Generator
from gan_lightning.errors import UserError

D_STEPS = ("joint", "split")
PRIORS = ("normal", "uniform")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def _no_op_closure() -> None:
    return None


@contextlib.contextmanager
def held_fixed(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in training mode while nothing about it changes: parameters take no gradient (inputs
    still do), batch norm normalises with batch statistics but does not update its running statistics, and
    spectral norm uses its current power-iteration vectors instead of advancing them."""
    params = [p for p in module.parameters() if p.requires_grad]
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
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


@contextlib.contextmanager
def spectral_norm_frozen(module: nn.Module) -> Iterator[None]:
    """Spectral norm in ``module`` uses its current power-iteration vectors instead of advancing them.

    The D phase advances them on its first D call only (one power iteration per D step): a second in-place
    update between a forward and its backward would invalidate what a compiled D saved for the backward."""
    # torch.nn.utils.parametrizations.spectral_norm advances its vectors only in training mode.
    spectral = [m for m in module.modules() if type(m).__name__ == "_SpectralNorm" and m.training]
    for m in spectral:
        m.eval()
    try:
        yield
    finally:
        for m in spectral:
            m.train()


class GAN(pl.LightningModule):
    """A GAN or conditional GAN trained with the two-phase loop; conditional when the networks have
    ``num_classes > 0``.

    Batches are ``x`` or ``(x, y)``: ``x`` of shape ``(N, *data_shape)``, ``y`` int64 labels of shape ``(N,)``.
    With ``n_critic = k`` a batch of ``k * B`` real samples is split into ``k`` D steps of ``B`` (the data
    modules of this package draw ``k * batch_size`` per batch for this reason).
    """

    def __init__(
        self,
        generator: Generator,                                # G: noise (and labels) -> samples.
        discriminator: Discriminator,                        # D: samples (and labels) -> one score each.
        loss: str = "non_saturating",                        # minimax | non_saturating | hinge | wasserstein | least_squares.
        d_step: str = "joint",                               # joint: one D step on real+fake; split: a fake step then a real step.
        n_critic: int = 1,                                   # D steps per G step.
        gp_weight: float = 0.0,                              # WGAN-GP gradient penalty weight, 0 = off (10 is usual).
        r1_weight: float = 0.0,                              # R1 penalty gamma (adds gamma/2 * E||grad D(x)||^2), 0 = off.
        latent_prior: str = "normal",                        # normal: N(0, I); uniform: U(-1, 1).
        ema_decay: float = 0.0,                              # Decay of the EMA copy of G used for sampling, 0 = no EMA.
        ema_start: int = 0,                                  # G steps before the EMA starts averaging (copies G until then).
        grad_clip_norm: float = 0.0,                         # Clip each network's gradient norm to this, 0 = off.
        compile: str = "none",                               # none | default | reduce-overhead | max-autotune: torch.compile G and D.
        g_optimizer: OptimizerCallable = torch.optim.Adam,   # G's optimizer, e.g. Adam(lr=2e-4, betas=[0.5, 0.999]).
        d_optimizer: OptimizerCallable = torch.optim.Adam,   # D's optimizer, configured independently.
        g_lr_scheduler: Optional[LRSchedulerCallable] = None,  # G's learning-rate schedule, stepped once per G step.
        d_lr_scheduler: Optional[LRSchedulerCallable] = None,  # D's, stepped once per G step too (not per D step).
    ) -> None:
        super().__init__()
        if _given_hyperparameters.get() is not None:
            # Launched from the CLI: the parsed config (class paths included) is saved, so a checkpoint rebuilds
            # the exact networks and optimizers it was trained with.
            self.save_hyperparameters()
        else:
            self.save_hyperparameters(
                ignore=["generator", "discriminator", "g_optimizer", "d_optimizer", "g_lr_scheduler", "d_lr_scheduler"]
            )
        self.loss = get_loss(loss)
        if d_step not in D_STEPS:
            raise UserError(f"model.d_step: must be one of {D_STEPS}, got {d_step!r}")
        if latent_prior not in PRIORS:
            raise UserError(f"model.latent_prior: must be one of {PRIORS}, got {latent_prior!r}")
        if n_critic < 1:
            raise UserError(f"model.n_critic: must be >= 1 D steps per G step, got {n_critic}")
        if compile not in COMPILE_MODES:
            raise UserError(f"model.compile: must be one of {COMPILE_MODES}, got {compile!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise UserError(f"model.ema_decay: must be in [0, 1) (0 = no EMA), got {ema_decay}")
        for name in ("gp_weight", "r1_weight", "grad_clip_norm"):
            if locals()[name] < 0:
                raise UserError(f"model.{name}: must be >= 0 (0 = off), got {locals()[name]}")
        if tuple(generator.out_shape) != tuple(discriminator.in_shape):
            raise UserError(
                f"model: generator.out_shape {tuple(generator.out_shape)} does not match discriminator.in_shape "
                f"{tuple(discriminator.in_shape)}; give both networks the same image size and channels"
            )
        if generator.num_classes != discriminator.num_classes:
            raise UserError(
                f"model: generator.num_classes={generator.num_classes} but discriminator.num_classes="
                f"{discriminator.num_classes}; set both to the number of classes in the data (0 = unconditional)"
            )
        if generator.condition != discriminator.condition:
            raise UserError(
                f"model: the generator is conditioned on {generator.condition!r} but the discriminator on "
                f"{discriminator.condition!r}; give both networks a conditioning method of the same kind"
            )
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema: Optional[Generator] = None
        if ema_decay > 0:
            self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        self.d_step_mode = d_step
        self.n_critic = int(n_critic)
        self.gp_weight = float(gp_weight)
        self.r1_weight = float(r1_weight)
        self.latent_prior = latent_prior
        self.ema_decay = float(ema_decay)
        self.ema_start = int(ema_start)
        self.grad_clip_norm = float(grad_clip_norm)
        self.compile_mode = compile
        self._g_optimizer = g_optimizer
        self._d_optimizer = d_optimizer
        self._g_lr_scheduler = g_lr_scheduler
        self._d_lr_scheduler = d_lr_scheduler

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    @property
    def condition(self) -> str:
        """none | label | spatial (see gan_lightning.conditioning)."""
        return self.generator.condition

    @property
    def conditional(self) -> bool:
        return self.condition != "none"

    @property
    def aux_weight(self) -> float:
        return self.discriminator.conditioning.aux_weight

    @property
    def sampling_generator(self) -> Generator:
        """The generator samples come from: the EMA copy when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    # The networks the two phases call. A distributed strategy may wrap the trained network of each phase
    # (see gan_lightning.strategies); the held-fixed network is always called unwrapped, so no gradient
    # synchronisation is set up for it.
    def _trained_g(self) -> nn.Module:
        return getattr(self, "_g_wrapped", None) or self.generator

    def _trained_d(self) -> nn.Module:
        return getattr(self, "_d_wrapped", None) or self.discriminator

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self) -> Any:
        optimizers = [self._g_optimizer(self.generator.parameters()), self._d_optimizer(self.discriminator.parameters())]
        if self._g_lr_scheduler is None and self._d_lr_scheduler is None:
            return optimizers
        # Manual optimization: Lightning saves and restores the schedulers; training_step steps them.
        schedulers = []
        for make, opt, role in zip((self._g_lr_scheduler, self._d_lr_scheduler), optimizers, ("g", "d")):
            if make is None:
                continue
            scheduler = make(opt)
            if getattr(scheduler, "total_steps", 0) is None:  # e.g. LinearDecay: the run's length
                if self.trainer.max_steps < 1:
                    raise UserError(f"model.{role}_lr_scheduler: total_steps is unset and trainer.max_steps is not "
                                    "given; set one of them")
                scheduler.total_steps = self.trainer.max_steps
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                raise UserError(f"model.{role}_lr_scheduler: ReduceLROnPlateau needs a monitored metric each step; "
                                "use a step-based schedule (e.g. CosineAnnealingLR, LinearLR)")
            schedulers.append({"scheduler": scheduler, "interval": "step", "name": f"lr-{role}"})
        return optimizers, schedulers

    def configure_model(self) -> None:
        if self.compile_mode != "none" and not getattr(self, "_compiled", False):
            # In place (nn.Module.compile): parameter names and checkpoints stay those of the plain networks.
            nets = [self.generator, self.discriminator]
            if self.gp_weight > 0 or self.r1_weight > 0:
                # The penalties differentiate D's gradient again; compiled graphs have no double backward.
                rank_zero_warn("model.compile: the discriminator stays uncompiled with gp_weight/r1_weight "
                               "(torch.compile has no double backward); the generator is compiled")
                nets = nets[:1]
            for net in nets:
                net.compile(mode=self.compile_mode)
            self._compiled = True

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "draws_per_step"):
            datamodule.draws_per_step = self.n_critic
        shape = tuple(getattr(datamodule, "data_shape", ()) or ())
        if shape and shape != tuple(self.generator.out_shape):
            raise UserError(
                f"data: samples of shape {shape} but the generator makes {tuple(self.generator.out_shape)}; match the "
                "data's image_size/channels and the networks' (or out_shape/in_shape for vectors)"
            )
        if datamodule is not None and hasattr(datamodule, "num_classes") and self.condition == "label":
            if datamodule.num_classes != self.num_classes:
                raise UserError(
                    f"model.generator.num_classes={self.num_classes} but the data has {datamodule.num_classes} "
                    "classes; set the networks' num_classes to the data's"
                )

    # ------------------------------------------------------------------ sampling
    def sample_z(self, n: int, generator: Optional[torch.Generator] = None, device: Any = None) -> Tensor:
        """Noise from the latent prior, shape ``(n, latent_dim)``."""
        device = self.device if device is None else device
        shape = (n, self.latent_dim)
        if self.latent_prior == "normal":
            return torch.randn(shape, generator=generator, device=device)
        return torch.rand(shape, generator=generator, device=device).mul_(2.0).sub_(1.0)

    def sample_labels(self, n: int, generator: Optional[torch.Generator] = None, device: Any = None) -> Optional[Tensor]:
        """Uniform class labels ``(n,)`` for a label-conditional model, else None."""
        if self.condition != "label":
            return None
        device = self.device if device is None else device
        return torch.randint(0, self.num_classes, (n,), generator=generator, device=device)

    def check_labels(self, y: Optional[Tensor], where: str = "labels") -> None:
        if not self.conditional:
            if y is not None:
                raise UserError(f"{where}: this model is unconditional; give no condition")
            return
        if y is None:
            raise UserError(f"{where}: this model is conditioned on a {self.condition}; give one per sample")
        if self.condition == "label":
            check_labels(y, self.num_classes, where)

    def interpolation_weights(self, n: int) -> Tensor:
        """Per-sample weights ``(n,)`` of the real sample in the gradient penalty's interpolates."""
        return torch.rand(n, device=self.device)

    @torch.no_grad()
    def generate(self, z: Tensor, y: Optional[Tensor] = None, ema: bool = True) -> Tensor:
        """Samples for given noise (and labels), in eval mode, from the EMA generator unless ``ema=False``."""
        self.check_labels(y)
        net = self.sampling_generator if ema else self.generator
        was_training = net.training
        net.eval()
        try:
            return net(z, y) if self.conditional else net(z)
        finally:
            net.train(was_training)

    # ------------------------------------------------------------------ the two phases
    def _split_batch(self, batch: Any) -> tuple[Tensor, Optional[Tensor]]:
        """Real samples and their condition: the labels, the spatial map made from x, or None."""
        x, y = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (list, tuple)) else (batch, None)
        if self.condition == "spatial":
            return x, self.generator.conditioning.condition_from(x)
        if self.condition == "label":
            if y is None:
                raise UserError("data: this model is class-conditional but the batches carry no labels; use data.labels: class")
            return x, y
        return x, None

    def _d(self, net: nn.Module, x: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        """D's scores ``(N,)`` and, with an auxiliary classifier, its class logits ``(N, K)``."""
        out = net(x, y) if self.conditional else net(x)
        return out if isinstance(out, tuple) else (out, None)

    def _aux_loss(self, logits: Optional[Tensor], y: Optional[Tensor]) -> Tensor | float:
        if logits is None or self.aux_weight == 0:
            return 0.0
        return self.aux_weight * nn.functional.cross_entropy(logits, y)

    def _g(self, net: nn.Module, z: Tensor, y: Optional[Tensor]) -> Tensor:
        return net(z, y) if self.conditional else net(z)

    def _penalties(self, d_net: nn.Module, real: Tensor, y: Optional[Tensor], fake: Tensor) -> tuple[Tensor, Tensor]:
        """D's real-side logits and the terms that go with them: R1 (which needs the input gradient at the real
        samples), the gradient penalty, and an auxiliary classifier's class loss on real samples."""
        if self.r1_weight > 0:
            real = real.detach().requires_grad_(True)
        real_logits, real_aux = self._d(d_net, real, y)
        penalty = real_logits.new_zeros(()) + self._aux_loss(real_aux, y)
        if self.r1_weight > 0:
            penalty = penalty + 0.5 * self.r1_weight * r1_penalty(real_logits, real)
        if self.gp_weight > 0:
            eps = self.interpolation_weights(real.shape[0])
            with spectral_norm_frozen(self.discriminator):
                penalty = penalty + self.gp_weight * gradient_penalty(lambda x: self._d(d_net, x, y)[0], real, fake, eps)
        return real_logits, penalty

    def _optimizer_step(self, optimizer: Any, loss: Tensor, counts: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.grad_clip_norm > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm")
        if counts:
            optimizer.step()  # through Lightning: bumps global_step.
        else:
            # Straight to the strategy (precision plugin, grad scaler included) without Lightning's step counter,
            # so that D steps do not count as training steps.
            self.trainer.strategy.optimizer_step(optimizer.optimizer, _no_op_closure, model=self)

    def d_phase(self, real: Tensor, y_real: Optional[Tensor], fake: Tensor, y_fake: Optional[Tensor]) -> dict[str, Tensor]:
        """One D update on a real batch and a (detached) fake batch; returns detached statistics."""
        _, opt_d = self.optimizers()
        d_net = self._trained_d()
        fake = fake.detach()
        if self.d_step_mode == "joint":
            real_logits, penalty = self._penalties(d_net, real, y_real, fake)
            with spectral_norm_frozen(self.discriminator):
                fake_logits, fake_aux = self._d(d_net, fake, y_fake)
            loss_real, loss_fake = self.loss.d_real(real_logits), self.loss.d_fake(fake_logits)
            self._optimizer_step(opt_d, loss_real + loss_fake + penalty + self._aux_loss(fake_aux, y_fake), counts=False)
        else:
            fake_logits, fake_aux = self._d(d_net, fake, y_fake)
            loss_fake = self.loss.d_fake(fake_logits)
            self._optimizer_step(opt_d, loss_fake + self._aux_loss(fake_aux, y_fake), counts=False)
            real_logits, penalty = self._penalties(d_net, real, y_real, fake)
            loss_real = self.loss.d_real(real_logits)
            self._optimizer_step(opt_d, loss_real + penalty, counts=False)
        return {
            "d_loss": (loss_real + loss_fake).detach(),
            "d_penalty": penalty.detach(),  # R1, gradient penalty and real-side class loss
            "d_real": self.loss.readout(real_logits.detach()).mean(),
            "d_fake": self.loss.readout(fake_logits.detach()).mean(),
        }

    def g_phase(self, fake: Tensor, y_fake: Optional[Tensor]) -> Tensor:
        """One G update through the held-fixed D; ``fake`` must still carry its graph back to G."""
        opt_g, _ = self.optimizers()
        with held_fixed(self.discriminator):
            fake_logits, fake_aux = self._d(self.discriminator, fake, y_fake)
            g_loss = self.loss.g(fake_logits) + self._aux_loss(fake_aux, y_fake)
            self._optimizer_step(opt_g, g_loss, counts=True)
        return g_loss.detach()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = self._split_batch(batch)
        k = self.n_critic
        if x.shape[0] < k:
            raise UserError(f"data: a batch of {x.shape[0]} samples cannot feed n_critic={k} D steps")
        reals = x.chunk(k)
        labels = y.chunk(k) if y is not None else [None] * k
        g_net = self._trained_g()
        for i, (real, y_real) in enumerate(zip(reals, labels)):
            n = real.shape[0]
            z = self.sample_z(n)
            # Label models draw fresh labels; spatial models generate from the real batch's own maps.
            y_fake = y_real if self.condition == "spatial" else self.sample_labels(n)
            last = i == k - 1
            # Only the last D step's fakes are reused by the G phase and need a graph.
            with torch.set_grad_enabled(last):
                fake = self._g(g_net, z, y_fake)
            stats = self.d_phase(real, y_real, fake, y_fake)
        g_loss = self.g_phase(fake, y_fake)
        self.update_ema()
        self._step_schedulers()
        trainer = self.trainer
        # Lightning writes logged values only every log_every_n_steps; logging on the other steps is overhead.
        if trainer.fast_dev_run or self.global_step % max(1, trainer.log_every_n_steps) == 0 \
                or self.global_step == trainer.max_steps:
            self._log_step(stats, g_loss)

    def _log_step(self, stats: dict[str, Tensor], g_loss: Tensor) -> None:
        self.log_dict(
            {
                "train/d_loss": stats["d_loss"],
                "train/g_loss": g_loss,
                "train/d_real": stats["d_real"],
                "train/d_fake": stats["d_fake"],
            },
            on_step=True,
            on_epoch=False,
            prog_bar=False,
        )
        if self.gp_weight > 0 or self.r1_weight > 0 or self.aux_weight > 0:
            self.log("train/d_penalty", stats["d_penalty"], on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ schedules and EMA
    def _step_schedulers(self) -> None:
        if self._g_lr_scheduler is None and self._d_lr_scheduler is None:
            return
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.generator_ema is None:
            return
        ema_params = list(self.generator_ema.parameters())
        params = list(self.generator.parameters())
        if self.global_step <= self.ema_start:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.ema_decay)
        # Normalization statistics are not averaged: the EMA generator uses the live generator's.
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            b_ema.copy_(b)
