"""The GAN system: two networks, two optimizers, one two-phase min-max loop.

One ``training_step`` is one generator iteration:

1. **D phase**, ``n_critic`` times. G is held fixed: fakes reach D detached, so no gradient reaches G. Only D's
   optimizer steps, either once on real and fake together (``d_step: joint``) or once on the fake batch and
   once on the real batch (``d_step: split``).
2. **G phase**. D is held fixed (``held_fixed``): its parameters take no gradient and its normalization
   statistics (batch-norm running stats, spectral-norm power-iteration vectors) do not move, while gradients
   flow from D's output back through D into G. Only G's optimizer steps.

The fakes of the last D step are generated with their graph kept and reused by the G phase, so one iteration
costs ``n_critic`` generator forwards, not ``n_critic + 1``. Nothing in the step waits for the device: values
to log stay tensors.

What each phase adds to its loss is pluggable: the loss (``gan_lightning.objectives.losses``), the regularizers
(``gan_lightning.objectives.regularizers``), the augmentation of everything D sees
(``gan_lightning.objectives.augment``) and the condition (``gan_lightning.conditioning``, which owns where
conditions come from and how they are drawn).

Every backward goes through ``manual_backward`` and every optimizer step through Lightning's strategy, so
precision plugins, gradient scaling, distributed strategies and callbacks' hooks all apply. Only the generator's
optimizer step counts as a Lightning step (``step_uncounted`` keeps D's out of the count), so
``trainer.global_step``, ``max_steps`` and every step-based cadence count generator iterations.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Literal, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning, record_of
from gan_lightning.errors import UserError
from gan_lightning.nets.base import Discriminator, Generator, build_for_data, pair_classes
from gan_lightning.objectives.augment import Augment
from gan_lightning.objectives.losses import GANLoss, LossName, get_loss
from gan_lightning.objectives.regularizers import Context, Regularizer, Side
from gan_lightning.runtime.compat import attached_trainer, cli_hyperparameters_active
from gan_lightning.runtime.loggers import log_at_step
from gan_lightning.runtime.parametrized import restore_parametrizations, strip_parametrizations
from gan_lightning.runtime.resume import (check_finite, check_same_model, gather_rng_states, provenance,
                                          set_rng_state)
from gan_lightning.sampling.draw import Drawn
from gan_lightning.sampling.draw import sample as draw_sample
from gan_lightning.sampling.refinement import LatentRefinement
from gan_lightning.training.checks import check_choice, check_networks, check_objective, check_range
from gan_lightning.training.ema import make_ema, update_ema
from gan_lightning.training.held_fixed import held_fixed, spectral_norm_frozen

D_STEPS = ("joint", "split")
PRIORS = ("normal", "uniform")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def step_uncounted(module: pl.LightningModule, optimizer: LightningOptimizer) -> None:
    """``optimizer.step()`` through the trainer's strategy, as ``LightningOptimizer.step`` makes it (precision
    plugin, gradient scaler, ``on_before_optimizer_step`` hooks) but without adding to Lightning's count of
    optimizer steps: under manual optimization every counted step is one ``trainer.global_step``, and a GAN's
    steps count generator iterations, not D's updates."""
    module.trainer.strategy.optimizer_step(optimizer.optimizer, _no_closure, model=module)


def _no_closure() -> None:
    return None


def _built(field_name: str, make: Callable[[Any], Any], arg: Any) -> Any:
    """An optimizer or scheduler made from the config; the ``ValueError`` with which torch's optimizers and
    schedulers reject an argument (a negative learning rate, betas outside [0, 1)) becomes one line naming the
    field."""
    try:
        return make(arg)
    except ValueError as error:
        raise UserError(f"{field_name}: {error}; fix the value in the config") from None


def _sum(first: Tensor, terms: list[Optional[Tensor]]) -> Tensor:
    """``first`` plus every term that is not None, in order (no ``+ 0`` for absent terms)."""
    for term in terms:
        if term is not None:
            first = first + term
    return first


class GAN(pl.LightningModule):
    """A GAN or conditional GAN trained with the two-phase loop; conditional when the networks' conditioning
    is (see ``gan_lightning.conditioning``).

    Batches are ``x`` or ``(x, y)``: ``x`` of shape ``(N, *data_shape)``, ``y`` int64 labels of shape ``(N,)``.
    With ``n_critic = k`` a batch of ``k * B`` real samples is split into ``k`` D steps of ``B``: the data
    module draws ``k * batch_size`` per batch (the CLI sets the package's data modules' ``draws_per_step`` from
    ``model.n_critic``).
    """

    def __init__(
        self,
        generator: Generator,                                # G: noise (and conditions) -> samples.
        discriminator: Discriminator,                        # D: samples (and conditions) -> one score each.
        loss: Union[LossName, GANLoss] = "non_saturating",   # A loss name, or a class_path to a GANLoss subclass.
        regularizers: Optional[list[Regularizer]] = None,    # Extra loss terms, e.g. [{class_path: gan_lightning.objectives.R1}].
        augment: Optional[Augment] = None,                   # Differentiable augmentation of all D sees (gan_lightning.objectives.augment).
        d_step: Literal["joint", "split"] = "joint",         # joint: one D step on real+fake; split: a fake step then a real step.
        n_critic: int = 1,                                   # D steps per G step.
        latent_prior: Literal["normal", "uniform"] = "normal",  # normal: N(0, I); uniform: U(-1, 1).
        refinement: Optional[LatentRefinement] = None,       # D-guided refinement of every sample drawn (gan_lightning.sampling.refinement).
        ema_decay: float = 0.0,                              # Decay of the EMA copy of G used for sampling, 0 = no EMA.
        ema_start: int = 0,                                  # G steps before the EMA starts averaging (copies G until then).
        grad_clip_norm: float = 0.0,                         # Clip each network's gradient norm to this, 0 = off.
        compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none",  # torch.compile G and D.
        g_optimizer: OptimizerCallable = torch.optim.Adam,   # G's optimizer, e.g. Adam(lr=2e-4, betas=[0.5, 0.999]).
        d_optimizer: OptimizerCallable = torch.optim.Adam,   # D's optimizer, configured independently.
        g_lr_scheduler: Optional[LRSchedulerCallable] = None,  # G's learning-rate schedule, stepped once per G step.
        d_lr_scheduler: Optional[LRSchedulerCallable] = None,  # D's, stepped once per G step too (not per D step).
    ) -> None:
        super().__init__()
        if cli_hyperparameters_active():
            # Launched from the CLI: the parsed config (class paths included) is saved, so a checkpoint rebuilds
            # the exact networks, loss, regularizers and optimizers it was trained with.
            self.save_hyperparameters()
        else:
            self.save_hyperparameters(ignore=["generator", "discriminator", "g_optimizer", "d_optimizer",
                                              "g_lr_scheduler", "d_lr_scheduler", "loss", "regularizers", "augment",
                                              "refinement"])
            # Built in Python: how each part was built (class paths, and the arguments of those that record them),
            # so that sample, evaluate and export rebuild the model (gan_lightning.commands.checkpoints.load_gan).
            # The networks' records are added once they are built.
            self.hparams["recorded"] = {"loss": record_of(loss), "regularizers": record_of(list(regularizers or [])),
                                        "augment": record_of(augment), "refinement": record_of(refinement)}
        regularizers = list(regularizers or [])
        self.loss = get_loss(loss)
        check_choice("d_step", d_step, D_STEPS)
        check_choice("latent_prior", latent_prior, PRIORS)
        check_choice("compile", compile, COMPILE_MODES)
        check_range("n_critic", n_critic, 1, hint=" D steps per G step")
        check_range("ema_decay", ema_decay, 0.0, 1.0, hint=" (0 = no EMA)")
        check_range("grad_clip_norm", grad_clip_norm, 0.0, hint=" (0 = off)")
        for i, reg in enumerate(regularizers):
            if not isinstance(reg, Regularizer):
                raise UserError(f"model.regularizers[{i}]: {type(reg).__name__} is not a gan_lightning.objectives.Regularizer")
            if "training" not in vars(reg):  # set by nn.Module.__init__
                raise UserError(f"model.regularizers[{i}]: {type(reg).__name__}.__init__ must call super().__init__() "
                                "(regularizers are nn.Modules)")
        # A network built without num_classes takes the other's; when both wait, the data's (in setup).
        pair_classes(generator, discriminator)
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema: Optional[Generator] = None
        self.augment = augment
        # nn.Modules, so that their state (EMAs, counters) travels in checkpoints and resumes exactly.
        self.regularizers = nn.ModuleList(regularizers)
        self.d_step_mode = d_step
        self.n_critic = int(n_critic)
        self.latent_prior = latent_prior
        if refinement is not None and not isinstance(refinement, LatentRefinement):
            raise UserError(f"model.refinement: {type(refinement).__name__} is not a gan_lightning.sampling.LatentRefinement")
        self.refinement = refinement
        self.ema_decay = float(ema_decay)
        self.ema_start = int(ema_start)
        self.grad_clip_norm = float(grad_clip_norm)
        self.compile_mode = compile
        self._g_optimizer = g_optimizer
        self._d_optimizer = d_optimizer
        self._g_lr_scheduler = g_lr_scheduler
        self._d_lr_scheduler = d_lr_scheduler
        # Progress counted across resumes (saved in checkpoints): real images seen and seconds of training.
        self._images_seen, self._seconds_before, self._fit_started = 0, 0.0, time.perf_counter()
        self._step_logs: Optional[dict[str, Tensor]] = None  # the last step's values, until they are logged
        if not generator.waits_for_classes:
            self._networks_built()

    def _networks_built(self) -> None:
        """Once both networks are built: checks them against each other and the objective, gives G the latent
        prior, makes the EMA copy of G and records the networks (built in Python)."""
        generator, discriminator = self.generator, self.discriminator
        check_networks(generator, discriminator)
        check_objective(self.loss, list(self.regularizers), discriminator, self.d_step_mode)
        if self.augment is not None:
            self.augment.check_shape(tuple(generator.out_shape))
        generator.latent_prior = self.latent_prior
        if self.ema_decay > 0:
            self.generator_ema = make_ema(generator)
        if "recorded" in self.hparams:
            self.hparams["recorded"].update(generator=record_of(generator), discriminator=record_of(discriminator))

    # Spawn-started strategies pickle the module; torch's parametrizations (spectral norm) refuse pickling, so
    # they travel as plain modules with a record of their parametrizations and are rebuilt exactly.
    def __getstate__(self) -> dict[str, Any]:
        return strip_parametrizations(super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(restore_parametrizations(state))

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    @property
    def conditioning(self) -> Conditioning:
        """The generator's conditioning module: it owns how the model's conditions are made, drawn and checked."""
        return self.generator.conditioning

    @property
    def condition(self) -> str:
        """The kind of condition (``conditioning.kind``), for messages and reports."""
        return self.conditioning.kind

    @property
    def conditional(self) -> bool:
        return self.conditioning.conditional

    @property
    def sampling_generator(self) -> Generator:
        """The generator samples come from: the EMA copy when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    # The networks the two phases call. A distributed strategy may wrap the trained network of each phase
    # (gan_lightning.training.strategies); the held-fixed network is always called unwrapped, so no gradient
    # synchronisation is set up for it.
    def _trained_g(self) -> nn.Module:
        return self.__dict__.get("_g_wrapped") or self.generator

    def _trained_d(self) -> nn.Module:
        return self.__dict__.get("_d_wrapped") or self.discriminator

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self) -> Any:
        optimizers = [_built("model.g_optimizer", self._g_optimizer, self.generator.parameters()),
                      _built("model.d_optimizer", self._d_optimizer, self.discriminator.parameters())]
        if self._g_lr_scheduler is None and self._d_lr_scheduler is None:
            return optimizers
        # Manual optimization: Lightning saves and restores the schedulers; training_step steps them.
        schedulers = []
        for make, opt, role in zip((self._g_lr_scheduler, self._d_lr_scheduler), optimizers, ("g", "d")):
            if make is None:
                continue
            scheduler = _built(f"model.{role}_lr_scheduler", make, opt)
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
            if any(r.double_backward for r in self.regularizers):
                # Input-gradient penalties differentiate D's gradient again; compiled graphs have no double backward.
                rank_zero_warn("model.compile: the discriminator stays uncompiled with input-gradient penalties "
                               "(torch.compile has no double backward); the generator is compiled")
                nets = nets[:1]
            for net in nets:
                net.compile(mode=self.compile_mode)
            self._compiled = True

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if attached_trainer(self) is not None else None
        if self.generator.waits_for_classes:  # neither network was given num_classes: the data's
            build_for_data(self.generator, self.discriminator, getattr(datamodule, "num_classes", None))
            self._networks_built()
        if datamodule is not None and "recorded" in self.hparams:
            self.hparams["recorded"]["data"] = record_of(datamodule)
        shape = tuple(getattr(datamodule, "data_shape", ()) or ())
        if shape and shape != tuple(self.generator.out_shape):
            raise UserError(
                f"data: samples of shape {shape} but the generator makes {tuple(self.generator.out_shape)}; match the "
                "data's image_size/channels and the networks' (or out_shape/in_shape for vectors)"
            )
        if datamodule is not None:
            self.conditioning.check_data(datamodule)

    # ------------------------------------------------------------------ sampling
    def sample_z(self, n: int, generator: Optional[torch.Generator] = None, device: Any = None) -> Tensor:
        """Noise from the latent prior, shape ``(n, latent_dim)``."""
        device = self.device if device is None else device
        shape = (n, self.latent_dim)
        if self.latent_prior == "normal":
            return torch.randn(shape, generator=generator, device=device)
        return torch.rand(shape, generator=generator, device=device).mul_(2.0).sub_(1.0)

    def fake_conditions(self, c_real: Optional[Tensor], n: int) -> Optional[Tensor]:
        """The conditions of a training step's ``n`` fakes (drawn by the conditioning module)."""
        return self.conditioning.for_fakes(c_real, n, self.device)

    def interpolation_weights(self, n: int) -> Tensor:
        """Per-sample weights ``(n,)`` of the real sample in interpolates (gradient penalty)."""
        return torch.rand(n, device=self.device)

    @torch.no_grad()
    def generate(self, z: Tensor, c: Optional[Tensor] = None, ema: bool = True, refine: bool = True) -> Tensor:
        """Samples for given noise (and conditions), in eval mode, from the EMA generator unless ``ema=False``;
        the noise goes through ``model.refinement`` first when there is one, unless ``refine=False``."""
        self.conditioning.check(c, z.shape[0])
        net = self.sampling_generator if ema else self.generator
        refining = refine and self.refinement is not None
        nets = [net, self.discriminator] if refining else [net]
        was_training = [m.training for m in nets]
        for m in nets:
            m.eval()
        try:
            if refining:
                z = self.refinement(z, c, net, self._plain_scores, self.latent_prior)
            return net(z, c)
        finally:
            for m, mode in zip(nets, was_training):
                m.train(mode)

    def sample(self, n: int, labels: Optional[Any] = None, seed: Optional[int] = None,
               truncation: Optional[float] = None, condition_images: Optional[Tensor] = None) -> Drawn:
        """``(samples, conditions)`` in one call: samples ``0..n-1`` of the seeded draw in data space, on the CPU,
        from the EMA generator when there is one (refined when the model has ``refinement``), with their labels
        or conditions; what ``python -m gan_lightning sample`` draws. See ``gan_lightning.sampling.draw.sample``."""
        return draw_sample(self, n, labels=labels, seed=seed, truncation=truncation, condition_images=condition_images)

    def _plain_scores(self, x: Tensor, c: Optional[Tensor]) -> Tensor:
        """D's scores ``(N,)`` on ``x`` as it is, without augmentation: what refinement climbs."""
        return self._critic(self.discriminator, x, c, augment=False)[0]

    # ------------------------------------------------------------------ the training step
    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (list, tuple)) else (batch, None)
        self._check_batch(x)
        self._images_seen += x.shape[0] * self.trainer.world_size
        c = self.conditioning.from_batch(x, y)
        k = self.n_critic
        reals, conds = x.chunk(k), (c.chunk(k) if c is not None else (None,) * k)
        for i, (real, c_real) in enumerate(zip(reals, conds)):
            z = self.sample_z(real.shape[0])
            c_fake = self.fake_conditions(c_real, real.shape[0])
            # Only the last D step's fakes are reused by the G phase, so only they keep their graph back to G.
            with torch.set_grad_enabled(i == k - 1):
                fake = self._trained_g()(z, c_fake)
            _, d_logs = self.d_phase(real, c_real, fake, c_fake)
        _, g_logs = self.g_phase(fake, c_fake, real, c_real)
        if self.generator_ema is not None:
            update_ema(self.generator_ema, self.generator, self.ema_decay, copy_only=self.global_step <= self.ema_start)
        for scheduler in self._lr_schedulers():
            scheduler.step()
        self._step_logs = {**d_logs, **g_logs, **self._augment_stats()}
        if self._logging_step():
            self._write_step_logs()

    def d_phase(self, real: Tensor, c_real: Optional[Tensor], fake: Tensor,
                c_fake: Optional[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One D update on a real batch and a (detached) fake batch. Returns D's loss and the values to log
        (detached): the loss, D(x) and D(G(z)) as the loss reads them, and what the regularizers recorded."""
        d_net, opt_d = self._trained_d(), self.optimizers()[1]
        real = real.detach().requires_grad_(any(r.needs_real_grad for r in self.regularizers))
        fake = fake.detach().requires_grad_(any(r.needs_fake_grad for r in self.regularizers))
        ctx = Context(Side(real, c_real), Side(fake, c_fake), critic=self._penalty_critic(d_net),
                      interpolation_weights=self.interpolation_weights)
        if self.d_step_mode == "joint":
            ctx.real.scores, ctx.real.aux = self._critic(d_net, real, c_real)  # advances spectral norm once
            with spectral_norm_frozen(self.discriminator):
                ctx.fake.scores, ctx.fake.aux = self._critic(d_net, fake, c_fake)
            # The D-real terms run after both forwards: a term may pair both sides' scores (e.g. LeCam).
            d_loss = self.loss.d(ctx.real.scores, ctx.fake.scores)
            self._step(opt_d, _sum(d_loss, self._terms("d_real", ctx) + self._terms("d_fake", ctx)), counted=False)
        else:
            ctx.fake.scores, ctx.fake.aux = self._critic(d_net, fake, c_fake)
            loss_fake = self.loss.d_fake(ctx.fake.scores)
            self._step(opt_d, _sum(loss_fake, self._terms("d_fake", ctx)), counted=False)
            ctx.real.scores, ctx.real.aux = self._critic(d_net, real, c_real)
            loss_real = self.loss.d_real(ctx.real.scores)
            self._step(opt_d, _sum(loss_real, self._terms("d_real", ctx)), counted=False)
            d_loss = loss_real + loss_fake
        real_scores, fake_scores = ctx.real.scores.detach(), ctx.fake.scores.detach()
        if self.augment is not None:
            self.augment.observe(real_scores)
        logs = {"d_loss": d_loss.detach(), "d_real": self.loss.readout(real_scores).mean(),
                "d_fake": self.loss.readout(fake_scores).mean()}
        return d_loss.detach(), {**logs, **ctx.stats}

    def g_phase(self, fake: Tensor, c_fake: Optional[Tensor], real: Optional[Tensor] = None,
                c_real: Optional[Tensor] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """One G update through the held-fixed D; ``fake`` must still carry its graph back to G. ``real`` is
        scored (without gradient) only for losses that use D's real scores in G's loss. Returns G's loss and the
        values to log (detached)."""
        d_net, opt_g = self.discriminator, self.optimizers()[0]
        with held_fixed(d_net):
            fake_scores, fake_aux = self._critic(d_net, fake, c_fake)
            real_scores = None
            if self.loss.uses_real_in_g:
                with torch.no_grad():
                    real_scores = self._critic(d_net, real, c_real)[0]
            ctx = Context(None, Side(fake, c_fake, fake_scores, fake_aux), critic=self._penalty_critic(d_net),
                          interpolation_weights=self.interpolation_weights, generator=self._trained_g(),
                          sample_z=self.sample_z)
            g_loss = _sum(self.loss.g(fake_scores, real_scores), self._terms("g", ctx))
            self._step(opt_g, g_loss, counted=True)
        return g_loss.detach(), {"g_loss": g_loss.detach(), **ctx.stats}

    # ------------------------------------------------------------------ what the phases call
    def _critic(self, net: nn.Module, x: Tensor, c: Optional[Tensor],
                augment: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """D's scores ``(N,)`` on (augmented, unless ``augment=False``) ``x`` and, with a class head, its class
        logits ``(N, K)``."""
        if augment and self.augment is not None:
            x = self.augment(x)
        out = net(x, c)
        return out if isinstance(out, tuple) else (out, None)

    def _penalty_critic(self, d_net: nn.Module) -> Callable[[Tensor, Optional[Tensor]], Tensor]:
        """D as penalties on other points call it (``ctx.critic``): augmented, spectral norm held at this
        step's vectors."""

        def critic(x: Tensor, c: Optional[Tensor]) -> Tensor:
            with spectral_norm_frozen(self.discriminator):
                return self._critic(d_net, x, c)[0]

        return critic

    def _terms(self, hook: str, ctx: Context) -> list[Optional[Tensor]]:
        """The terms the regularizers add in ``hook`` (None where one adds nothing this step), in their order."""
        return [getattr(reg, hook)(ctx) for reg in self.regularizers if reg.overrides(hook)]

    def _step(self, optimizer: LightningOptimizer, loss: Tensor, counted: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        # Gradient clipping runs in on_before_optimizer_step, after the precision plugin has unscaled.
        if counted:
            optimizer.step()  # a training step: trainer.global_step + 1
        else:
            step_uncounted(self, optimizer)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Called by the precision plugin after it unscales 16-mixed gradients and before the step, so the limit
        # applies to the true gradient norm.
        if self.grad_clip_norm > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm")

    def _check_batch(self, x: Tensor) -> None:
        """Every D step must get a full batch (``n_critic * batch_size`` samples per batch)."""
        k = self.n_critic
        per_step = getattr(self.trainer.datamodule, "batch_size", None)
        if x.shape[0] < k or (isinstance(per_step, int) and x.shape[0] < k * per_step):
            want = f"{k} x {per_step}" if isinstance(per_step, int) else f"at least {k}"
            raise UserError(
                f"data: batches of {x.shape[0]} samples cannot feed n_critic={k} D steps ({want} needed); the data "
                "module must draw n_critic * batch_size samples per batch (GANDataModule: draws_per_step, which "
                "the CLI sets from model.n_critic)"
            )

    def _lr_schedulers(self) -> list[Any]:
        schedulers = self.lr_schedulers()
        return [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]

    def _logging_step(self) -> bool:
        """Whether this step's values are logged: every ``log_every_n_steps`` generator steps and every step of a
        ``fast_dev_run``; the last step of a run is logged when training ends (``on_train_end``)."""
        return bool(self.trainer.fast_dev_run) or self.global_step % max(1, self.trainer.log_every_n_steps) == 0

    def _write_step_logs(self) -> None:
        """The last step's values (``train/*``) and the progress counters to the loggers, at the generator step
        just completed, and to ``trainer.callback_metrics``. Written straight to the loggers rather than through
        ``self.log``: values logged with ``self.log`` are collected and reduced by Lightning on every later batch
        of the epoch, a cost paid each step for values written every ``log_every_n_steps``."""
        logs, self._step_logs = self._step_logs, None
        log_at_step(self.trainer, {f"train/{name}": value for name, value in logs.items()} | self.progress())

    def _augment_stats(self) -> dict[str, Tensor]:
        return self.augment.stats() if self.augment is not None else {}

    def progress(self) -> dict[str, float]:
        """Thousands of real images D has seen (all processes; StyleGAN's kimg), wall seconds of training, and
        seconds per kimg, counted across resumes."""
        seconds = self._seconds_before + (time.perf_counter() - self._fit_started)
        kimg = self._images_seen / 1000.0
        return {"progress/kimg": kimg, "progress/seconds": seconds,
                "progress/sec_per_kimg": seconds / kimg if kimg else 0.0}

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()
        self._step_logs = None

    def on_train_end(self) -> None:
        # A run shorter than the logging cadence, or ending between two logging steps, still logs its last step.
        if self._step_logs is not None:
            self._write_step_logs()

    # ------------------------------------------------------------------ checkpoints: exact resume, provenance
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called on every process (it gathers); only process 0 writes the file.
        check_finite(self, self.global_step)
        checkpoint["rng_states"] = gather_rng_states()
        progress = self.progress()
        checkpoint["progress"] = {"images": self._images_seen, "seconds": progress["progress/seconds"]}
        checkpoint["provenance"] = provenance(self.trainer.default_root_dir if attached_trainer(self) is not None else None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if attached_trainer(self) is not None:
            check_same_model(self.state_dict(), checkpoint.get("state_dict", {}))
        progress = checkpoint.get("progress") or {}
        self._images_seen = int(progress.get("images", 0))
        self._seconds_before = float(progress.get("seconds", 0.0))
        states = checkpoint.get("rng_states")
        if states and attached_trainer(self) is not None:  # resuming fit (not load_from_checkpoint)
            # Applied when training starts: the strategy re-seeds each process while it sets up, after loading.
            self._rng_to_restore = states[self.global_rank] if self.global_rank < len(states) else None
            if len(states) != self.trainer.world_size:
                rank_zero_warn(f"--ckpt_path: the checkpoint holds the random streams of {len(states)} processes "
                               f"but this run has {self.trainer.world_size}; the run continues with fresh streams, "
                               "so it will not repeat the uninterrupted run exactly")
                self._rng_to_restore = None

    def on_train_start(self) -> None:
        state = self.__dict__.pop("_rng_to_restore", None)
        if state is not None:
            set_rng_state(state)
