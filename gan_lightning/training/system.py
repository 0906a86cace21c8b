"""The GAN system: two networks, two optimizers, one two-phase min-max loop.

One ``training_step`` is one generator iteration:

1. **D phase**, ``n_critic`` times. G is held fixed: fakes reach D detached, so no gradient reaches G. Only D's
   optimizer steps, either once on real and fake together (``d_step: joint``) or once on the fake batch and
   once on the real batch (``d_step: split``).
2. **G phase**. D is held fixed: its parameters take no gradient and its normalization statistics (batch-norm
   running stats, spectral-norm power-iteration vectors) do not move, while gradients flow from D's output
   back through D into G. Only G's optimizer steps.

The fakes of the last D step are generated with their graph kept and reused by the G phase, so one iteration
costs ``n_critic`` generator forwards, not ``n_critic + 1``.

What each phase adds to its loss is pluggable: the loss (``gan_lightning.objectives.losses``), the regularizers
(``gan_lightning.objectives.regularizers``), the augmentation of everything D sees (``gan_lightning.objectives.augment``) and the
condition (``gan_lightning.conditioning``, which owns where conditions come from and how they are drawn).

Only the generator's optimizer step counts as a Lightning step, so ``trainer.global_step``, ``max_steps`` and
every step-based cadence count generator iterations.
"""

from __future__ import annotations

import inspect
import time
import weakref
from typing import Any, Literal, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor, nn

from gan_lightning.training import loop as lean_loop
from gan_lightning.objectives.augment import Augment
from gan_lightning.training.checks import check_choice, check_networks, check_objective, check_range
from gan_lightning.runtime.compat import (batch_norm_modules, cli_hyperparameters_active, counted_optimizer_step,
                                  spectral_norm_modules, step_counter)
from gan_lightning.conditioning import Conditioning
from gan_lightning.training.ema import make_ema, update_ema
from gan_lightning.errors import UserError
from gan_lightning.objectives.losses import GANLoss, LossName, get_loss
from gan_lightning.nets.base import Discriminator, Generator
from gan_lightning.runtime.parametrized import restore_parametrizations, strip_parametrizations
from gan_lightning.sampling.refinement import LatentRefinement
from gan_lightning.objectives.regularizers import Context, Regularizer, Side
from gan_lightning.runtime.resume import check_finite, check_same_model, gather_rng_states, provenance, set_rng_state

D_STEPS = ("joint", "split")
PRIORS = ("normal", "uniform")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


_PLAIN_VALUES = frozenset({type(None), str, bool, int, float})


def _no_op_closure() -> None:
    return None


# The hooks Lightning's backward and optimizer step dispatch to every callback and to the module.
_BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")
_STEP_HOOKS = _BACKWARD_HOOKS + ("on_before_optimizer_step",)


def direct_steps_possible(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether the step may run ``loss.backward()`` and the optimizer steps itself, not through Lightning's
    strategy and precision plugin: one device in full precision (the plugin leaves losses and steps as they
    are), Lightning's default no-op profiler, and no callback implementing a hook that the dispatch would call
    (nor the module, beyond its own ``on_before_optimizer_step``, which the direct steps call). Then both paths
    run the same operations, and the direct one skips a dozen hook dispatches per iteration; otherwise every
    backward and step goes through Lightning, hooks and all."""
    if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
        return False
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return False
    if any(is_overridden(hook, callback, pl.Callback) for callback in trainer.callbacks for hook in _STEP_HOOKS):
        return False
    return not any(is_overridden(hook, module, pl.LightningModule)
                   for hook in _BACKWARD_HOOKS + ("backward", "manual_backward"))


class _Parts:
    """What ``held_fixed`` and ``spectral_norm_frozen`` toggle in a module, found once per module (the step runs
    them several times per iteration; walking the module each time would cost more than the toggling)."""

    _cache: "weakref.WeakKeyDictionary[nn.Module, _Parts]" = weakref.WeakKeyDictionary()

    def __init__(self, module: nn.Module) -> None:
        self.params = list(module.parameters())
        self.norms = batch_norm_modules(module)
        self.spectral = spectral_norm_modules(module)

    @classmethod
    def of(cls, module: nn.Module) -> "_Parts":
        parts = cls._cache.get(module)
        if parts is None:
            parts = cls._cache[module] = cls(module)
        return parts


def held_fixed(module: nn.Module) -> "_HeldFixed":
    """Run ``module`` in training mode while nothing about it changes: parameters take no gradient (inputs
    still do), batch norm normalises with batch statistics but does not update its running statistics, and
    spectral norm uses its current power-iteration vectors instead of advancing them. A context manager."""
    return _HeldFixed(_Parts.of(module))


def spectral_norm_frozen(module: nn.Module) -> "_SpectralNormFrozen":
    """Spectral norm in ``module`` uses its current power-iteration vectors instead of advancing them. A context
    manager.

    The D phase advances them on its first D call only (one power iteration per D step): a second in-place
    update between a forward and its backward would invalidate what a compiled D saved for the backward."""
    return _SpectralNormFrozen(_Parts.of(module))


# Plain classes rather than generator-based context managers: the step enters these several times per iteration.
class _SpectralNormFrozen:
    __slots__ = ("parts", "frozen")

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts
        self.frozen: list[nn.Module] = []

    def __enter__(self) -> None:
        # torch's spectral-norm parametrization advances its vectors only in training mode.
        self.frozen = [m for m in self.parts.spectral if m.training]
        for m in self.frozen:
            m.eval()

    def __exit__(self, *exc: Any) -> None:
        for m in self.frozen:
            m.train()


class _HeldFixed:
    __slots__ = ("parts", "params", "norms", "spectral")

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts
        self.params: list[nn.Parameter] = []
        self.norms: list[nn.Module] = []
        self.spectral = _SpectralNormFrozen(parts)

    def __enter__(self) -> None:
        self.params = [p for p in self.parts.params if p.requires_grad]
        self.norms = [m for m in self.parts.norms if m.track_running_stats]
        for p in self.params:
            p.requires_grad_(False)
        for m in self.norms:
            m.track_running_stats = False
        self.spectral.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.spectral.__exit__(*exc)
        for p in self.params:
            p.requires_grad_(True)
        for m in self.norms:
            m.track_running_stats = True


class _FitRefs:
    """What a training step uses, looked up once per fit. Reached through Lightning's properties and
    ``nn.Module.__getattr__``, each costs a microsecond or more, and a step would make a few dozen such lookups."""

    __slots__ = ("strategy", "optimizers", "opt_g", "opt_d", "g_net", "d_net", "discriminator", "generator_ema",
                 "conditioning", "device", "d_held", "d_frozen", "steps", "before_step", "critic_d", "critic_g")

    def __init__(self, module: "GAN") -> None:
        trainer = module.trainer
        self.strategy = trainer.strategy
        self.optimizers = self.strategy._lightning_optimizers
        self.opt_g, self.opt_d = module.optimizers()
        self.g_net, self.d_net = module._trained_g(), module._trained_d()
        self.discriminator = module.discriminator
        self.generator_ema = module.generator_ema
        self.conditioning = module.conditioning
        self.device = module.device
        parts = _Parts.of(self.discriminator)
        # Each entered once per phase, never nested (penalties' critics freeze spectral norm with their own).
        self.d_held, self.d_frozen = _HeldFixed(parts), _SpectralNormFrozen(parts)
        # Counts the G steps: trainer.global_step under manual optimization.
        self.steps = step_counter(trainer)
        # The direct steps call on_before_optimizer_step only where it does something: gradient clipping, or
        # a subclass's own hook.
        self.before_step = module.grad_clip_norm > 0 or is_overridden("on_before_optimizer_step", module, GAN)
        self.critic_d = module._held_critic(self.d_net)
        self.critic_g = module._held_critic(self.discriminator)


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
        check_networks(generator, discriminator)
        check_objective(self.loss, regularizers, discriminator, d_step)
        if augment is not None:
            augment.check_shape(tuple(generator.out_shape))
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema: Optional[Generator] = make_ema(generator) if ema_decay > 0 else None
        self.augment = augment
        self.regularizers = regularizers
        # The hooks each regularizer adds, resolved once (the step calls only these).
        self._d_real_regs = [r for r in regularizers if r.overrides("d_real")]
        self._d_fake_regs = [r for r in regularizers if r.overrides("d_fake")]
        self._g_regs = [r for r in regularizers if r.overrides("g")]
        self._real_grad = any(r.needs_real_grad for r in regularizers)
        self._fake_grad = any(r.needs_fake_grad for r in regularizers)
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
        self._batch_checked = False
        self._direct_steps = False
        self._log_every, self._last_step = 1, -1
        self._readouts_wanted = True  # d_phase's D(x) and D(G(z)) statistics
        self._log_calls = 0
        self._schedulers: list[Any] = []
        self._images_seen, self._seconds_before, self._world_size, self._fit_started = 0, 0.0, 1, time.perf_counter()

    # nn.Module.__setattr__ tests every value against Parameter, Buffer, Module and Tensor (Python-level instance
    # checks, a few µs a call). Lightning sets _current_fx_name twice around each of the ~10 hooks it calls per
    # training step, which made this the largest single cost of its loop around a small step. Plain values (None,
    # str, bool, int, float) under a name that is not a registered parameter, buffer or submodule end where
    # nn.Module would put them (object.__setattr__, properties included), without the tests.
    def __setattr__(self, name: str, value: Any) -> None:
        state = self.__dict__
        if (type(value) in _PLAIN_VALUES and "_modules" in state and name not in state["_parameters"]
                and name not in state["_buffers"] and name not in state["_modules"]):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def log(self, *args: Any, **kwargs: Any) -> None:
        # Counted for the lean training batch (gan_lightning.training.loop): while nothing is logged, by the module or a
        # callback, the logged values cannot change and their recomputation after each batch is skipped.
        self._log_calls += 1
        super().log(*args, **kwargs)
        # Lightning moves a logged value's accumulator to the value's device at every call, at a cost far above
        # the logging itself; the accumulators this leaves skip that when they are on the device already.
        trainer = self._trainer
        results = trainer._results if trainer is not None else None
        if results is not None:
            lean_loop.on_device_results(results)

    # Spawn-started strategies pickle the module; torch's parametrizations (spectral norm) refuse pickling, so
    # they travel as plain modules with a record of their parametrizations and are rebuilt exactly.
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if "_refs" in state:  # this fit's trainer objects stay behind
            state = {name: value for name, value in state.items() if name != "_refs"}
        return strip_parametrizations(state)

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
    # (see gan_lightning.training.strategies); the held-fixed network is always called unwrapped, so no gradient
    # synchronisation is set up for it.
    def _trained_g(self) -> nn.Module:
        return self.__dict__.get("_g_wrapped") or self.generator

    def _trained_d(self) -> nn.Module:
        return self.__dict__.get("_d_wrapped") or self.discriminator

    def _fit_refs(self) -> "_FitRefs":
        """What every step looks up, found once per fit (and again whenever the strategy's optimizers change)."""
        refs = self.__dict__.get("_refs")
        # The refs are dropped at every fit's start and end, so the strategy they were found under is this fit's.
        if refs is None or refs.optimizers is not refs.strategy._lightning_optimizers:
            refs = self.__dict__["_refs"] = _FitRefs(self)
        return refs

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
            if any(r.double_backward for r in self.regularizers):
                # Input-gradient penalties differentiate D's gradient again; compiled graphs have no double backward.
                rank_zero_warn("model.compile: the discriminator stays uncompiled with input-gradient penalties "
                               "(torch.compile has no double backward); the generator is compiled")
                nets = nets[:1]
            for net in nets:
                net.compile(mode=self.compile_mode)
            self._compiled = True

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
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

    def _plain_scores(self, x: Tensor, c: Optional[Tensor]) -> Tensor:
        """D's scores ``(N,)`` on ``x`` as it is, without augmentation: what refinement climbs."""
        return self._critic(self.discriminator, x, c, augment=False)[0]

    # ------------------------------------------------------------------ the two phases
    def _critic(self, net: nn.Module, x: Tensor, c: Optional[Tensor],
                augment: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """D's scores ``(N,)`` on (augmented, unless ``augment=False``) ``x`` and, with a class head, its class
        logits ``(N, K)``."""
        if augment and self.augment is not None:
            x = self.augment(x)
        out = net(x, c)
        return out if isinstance(out, tuple) else (out, None)

    @staticmethod
    def _terms(regs: list[Regularizer], hook: str, ctx: Context) -> Optional[Tensor]:
        """The sum of the terms ``regs`` add in ``hook``, in their order; None when none adds one."""
        total = None
        for reg in regs:
            term = getattr(reg, hook)(ctx)
            if term is not None:
                total = term if total is None else total + term
        return total

    @staticmethod
    def _plus(loss: Tensor, *terms: Optional[Tensor]) -> Tensor:
        for term in terms:
            if term is not None:
                loss = loss + term
        return loss

    def _optimizer_step(self, optimizer: Any, loss: Tensor, counts: bool) -> None:
        if self._direct_steps:
            # Full precision on one device with no hook implemented: Lightning's backward would only call
            # loss.backward(), and its optimizer step only this module's on_before_optimizer_step and the step
            # (G's counted as a training step).
            refs = self._fit_refs()
            optimizer = optimizer.optimizer
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if refs.before_step:
                self.on_before_optimizer_step(optimizer)
            if counts:
                counted_optimizer_step(refs.steps, optimizer)
            else:
                optimizer.step()
            return
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        # Gradient clipping runs in on_before_optimizer_step, after the precision plugin has unscaled.
        if counts:
            optimizer.step()  # through Lightning: bumps global_step.
        else:
            # Straight to the strategy (precision plugin, grad scaler included) without Lightning's step counter,
            # so that D steps do not count as training steps.
            self.trainer.strategy.optimizer_step(optimizer.optimizer, _no_op_closure, model=self)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Called by the precision plugin after it unscales 16-mixed gradients and before the step, so the limit
        # applies to the true gradient norm.
        if self.grad_clip_norm > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm")

    def d_phase(self, real: Tensor, c_real: Optional[Tensor], fake: Tensor, c_fake: Optional[Tensor]) -> dict[str, Tensor]:
        """One D update on a real batch and a (detached) fake batch; returns detached statistics."""
        refs = self._fit_refs()
        opt_d, d_net, augment = refs.opt_d, refs.d_net, self.augment
        fake = fake.detach()
        if self._real_grad:
            real = real.detach().requires_grad_(True)
        if self._fake_grad:
            fake = fake.requires_grad_(True)
        ctx = Context(Side(real, c_real), Side(fake, c_fake), critic=refs.critic_d,
                      interpolation_weights=self.interpolation_weights)
        real_side, fake_side = ctx.real, ctx.fake
        if self.d_step_mode == "joint":
            real_side.scores, real_side.aux = self._critic(d_net, real, c_real)  # advances spectral norm once
            real_terms = self._terms(self._d_real_regs, "d_real", ctx)
            with refs.d_frozen:
                fake_side.scores, fake_side.aux = self._critic(d_net, fake, c_fake)
            fake_terms = self._terms(self._d_fake_regs, "d_fake", ctx)
            d_loss = self.loss.d(real_side.scores, fake_side.scores)
            self._optimizer_step(opt_d, self._plus(d_loss, real_terms, fake_terms), counts=False)
        else:
            fake_side.scores, fake_side.aux = self._critic(d_net, fake, c_fake)
            loss_fake = self.loss.d_fake(fake_side.scores)
            self._optimizer_step(opt_d, self._plus(loss_fake, self._terms(self._d_fake_regs, "d_fake", ctx)),
                                 counts=False)
            real_side.scores, real_side.aux = self._critic(d_net, real, c_real)
            loss_real = self.loss.d_real(real_side.scores)
            self._optimizer_step(opt_d, self._plus(loss_real, self._terms(self._d_real_regs, "d_real", ctx)),
                                 counts=False)
            d_loss = loss_real + loss_fake
        if augment is not None:
            augment.observe(real_side.scores.detach())
        stats = {"d_loss": d_loss.detach()}
        if self._readouts_wanted:  # D(x) and D(G(z)) cost a few small ops; the step skips them when not logging
            stats["d_real"] = self.loss.readout(real_side.scores.detach()).mean()
            stats["d_fake"] = self.loss.readout(fake_side.scores.detach()).mean()
        stats.update(ctx.stats)
        return stats

    def _held_critic(self, d_net: nn.Module):
        """D as penalties on other points call it: augmented, spectral norm held at this step's vectors."""

        def critic(x: Tensor, c: Optional[Tensor]) -> Tensor:
            with spectral_norm_frozen(self.discriminator):
                return self._critic(d_net, x, c)[0]

        return critic

    def g_phase(self, fake: Tensor, c_fake: Optional[Tensor], real: Optional[Tensor] = None,
                c_real: Optional[Tensor] = None) -> dict[str, Tensor]:
        """One G update through the held-fixed D; ``fake`` must still carry its graph back to G. ``real`` is
        scored (without gradient) only for losses that use D's real scores in G's loss."""
        refs = self._fit_refs()
        d_net = refs.discriminator
        with refs.d_held:
            fake_scores, fake_aux = self._critic(d_net, fake, c_fake)
            real_scores = None
            if self.loss.uses_real_in_g:
                with torch.no_grad():
                    real_scores = self._critic(d_net, real, c_real)[0]
            ctx = Context(None, Side(fake, c_fake, fake_scores, fake_aux), critic=refs.critic_g,
                          interpolation_weights=self.interpolation_weights)
            g_loss = self._plus(self.loss.g(fake_scores, real_scores), self._terms(self._g_regs, "g", ctx))
            self._optimizer_step(refs.opt_g, g_loss, counts=True)
        ctx.stats["g_loss"] = g_loss.detach()
        return ctx.stats

    def _check_batch(self, x: Tensor) -> None:
        """Once per fit: every D step must get a full batch (``n_critic * batch_size`` samples per batch)."""
        self._batch_checked = True
        k = self.n_critic
        datamodule = getattr(self.trainer, "datamodule", None)
        per_step = getattr(datamodule, "batch_size", None)
        if x.shape[0] < k or (isinstance(per_step, int) and x.shape[0] < k * per_step):
            want = f"{k} x {per_step}" if isinstance(per_step, int) else f"at least {k}"
            raise UserError(
                f"data: batches of {x.shape[0]} samples cannot feed n_critic={k} D steps ({want} needed); the data "
                "module must draw n_critic * batch_size samples per batch (GANDataModule: draws_per_step, which "
                "the CLI sets from model.n_critic)"
            )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (list, tuple)) else (batch, None)
        if not self._batch_checked:
            self._check_batch(x)
        refs = self._fit_refs()
        self._images_seen += x.shape[0] * self._world_size
        c = refs.conditioning.from_batch(x, y)
        k = self.n_critic
        if k == 1:
            reals, conds = (x,), (c,)
        else:
            reals = x.chunk(k)
            conds = c.chunk(k) if c is not None else (None,) * k
        g_net = refs.g_net
        step = refs.steps.total.completed + 1  # this generator step (trainer.global_step once G's optimizer steps)
        # Lightning writes logged values only every log_every_n_steps; logging on the other steps is overhead.
        log_now = step % self._log_every == 0 or step == self._last_step
        self._readouts_wanted = log_now
        for i, (real, c_real) in enumerate(zip(reals, conds)):
            n = real.shape[0]
            z = self.sample_z(n, device=refs.device)
            c_fake = self.fake_conditions(c_real, n)
            # Only the last D step's fakes are reused by the G phase and need a graph.
            if i == k - 1:
                fake = g_net(z, c_fake)
            else:
                with torch.no_grad():
                    fake = g_net(z, c_fake)
            stats = self.d_phase(real, c_real, fake, c_fake)
        stats.update(self.g_phase(fake, c_fake, real, c_real))
        self._readouts_wanted = True
        if refs.generator_ema is not None:
            update_ema(refs.generator_ema, self.generator, self.ema_decay, copy_only=step <= self.ema_start)
        for scheduler in self._schedulers:
            scheduler.step()
        if log_now:
            if self.augment is not None:
                stats.update(self.augment.stats())
            logged = {f"train/{k}": v for k, v in stats.items()}
            logged.update(self.progress())
            self.log_dict(logged, on_step=True, on_epoch=False, prog_bar=False)

    def progress(self) -> dict[str, float]:
        """Thousands of real images D has seen (all processes; StyleGAN's kimg), wall seconds of training, and
        seconds per kimg, counted across resumes."""
        seconds = self._seconds_before + (time.perf_counter() - self._fit_started)
        kimg = self._images_seen / 1000.0
        return {"progress/kimg": kimg, "progress/seconds": seconds,
                "progress/sec_per_kimg": seconds / kimg if kimg else 0.0}

    def on_fit_start(self) -> None:
        self._batch_checked = False
        self.__dict__.pop("_refs", None)
        trainer = self.trainer
        # The logging cadence, read once: every step under fast_dev_run, else every log_every_n_steps and the last.
        self._log_every = 1 if trainer.fast_dev_run else max(1, trainer.log_every_n_steps)
        self._last_step = trainer.max_steps
        self._world_size = self.trainer.world_size
        self._fit_started = time.perf_counter()

    # ------------------------------------------------------------------ checkpoints: exact resume, provenance
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called on every process (it gathers); only process 0 writes the file.
        check_finite(self, self.global_step)
        checkpoint["rng_states"] = gather_rng_states()
        progress = self.progress()
        checkpoint["progress"] = {"images": self._images_seen, "seconds": progress["progress/seconds"]}
        checkpoint["provenance"] = provenance(self.trainer.default_root_dir if self._trainer is not None else None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None:
            check_same_model(self.state_dict(), checkpoint.get("state_dict", {}))
        progress = checkpoint.get("progress") or {}
        self._images_seen = int(progress.get("images", 0))
        self._seconds_before = float(progress.get("seconds", 0.0))
        states = checkpoint.get("rng_states")
        if states and self._trainer is not None:  # resuming fit (not load_from_checkpoint)
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
        self._direct_steps = direct_steps_possible(self.trainer, self)
        self._schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        self.__dict__.pop("_refs", None)  # found again at the first step, with this fit's networks and optimizers
        # One device, nothing unusual: training batches skip the hook dispatches that would do nothing.
        lean_loop.install(self.trainer, self)

    def on_train_end(self) -> None:
        lean_loop.uninstall(self.trainer)
        self.__dict__.pop("_refs", None)


# Lightning reads training_step's signature on every batch (which arguments to pass) and on every self.log call;
# a stored signature spares it re-deriving one from the code object each time (~15 µs per look).
GAN.training_step.__signature__ = inspect.signature(GAN.training_step)  # type: ignore[attr-defined]
