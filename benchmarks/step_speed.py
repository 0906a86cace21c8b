"""Training-step speed: gan_lightning vs a hand-written PyTorch loop vs the usual Lightning GAN pattern.

Two models, each with the same math in all four variants:

- ``dcgan``: the default experiment (``experiments/cgan_mnist5k.yaml``): a class-conditional DCGAN (conditional
  BN in G, spectral-norm projection D with an auxiliary class head, hinge loss plus the AC-GAN class loss in
  both phases, Adam 3.2e-3, EMA of G) on the embedded MNIST subset held in memory, batch 64; about 50 ms per
  step on one core.
- ``toy``: ``experiments/toy_ring.yaml``'s recipe (MLP G 3x128 without norm, D 3x64 linear maxout with 5
  pieces, non-saturating loss with R1 at gamma 0.1 and its double backward, EMA 0.999, Adam 2e-3 with the linear
  learning-rate decay over the last 70% of the steps) on the 8-mode ring, batch 100; about 10 ms per step, so
  what the framework adds per step shows.

Variants:

- ``plain``: a hand-written PyTorch loop: one G forward per iteration, D step on detached fakes (spectral norm
  advanced once per D step), G step through D with D's parameters frozen, EMA update, schedulers; the batches
  come from the same data module's loader. No logging. The reference (1.00).
- ``gan_lightning``: ``Trainer.fit`` of ``gan_lightning.training.GAN`` as ``fit`` runs it (step logging every 50
  steps, the divergence guard; every backward and optimizer step through Lightning), progress bar and checkpoints
  off.
- ``lightning_floor``: the plain loop's iteration, unchanged, as the ``training_step`` of a LightningModule run by
  ``Trainer.fit`` with the same trainer settings: what Lightning's own loop, data fetching and hooks cost around
  any module.
- ``lightning_public``: the same, with the hand-written step's backwards through ``manual_backward`` and both
  optimizer steps through Lightning's strategy (D's uncounted), as gan_lightning's step must make them so that
  precision plugins, strategies and callbacks' hooks apply: the floor for any step that goes through Lightning's
  public manual-optimization API.
- ``lightning_usual``: the pattern of Lightning's GAN example: ``toggle_optimizer``, G step first, then a D step
  that generates the fakes a second time; logs every step.
- ``plain_again``: a second, independent copy of ``plain``, timed the same way: what "no difference" measures
  as on this machine, i.e. the resolution of the other ratios.

The variants run side by side in one process, each ``fit`` (or loop) in a thread of its own, taking turns
(``Turns``): while one runs, the others wait. Every round gives each variant one turn of ``--steps`` iterations,
in an order rotated by one each round, so a drift of the machine's speed lands on all variants of a round alike;
the shorter the turns, the closer in time the variants they compare. Every variant is also built ``--instances``
times afresh, all at the same rounds, each instance starting with an untimed turn that builds it and warms it
up: on a shared machine the same code on a fresh copy of the same networks can run a few percent faster or
slower for as long as that copy lives, which only fresh copies average out (``plain_again`` shows what is left).
Where turns are shorter than the logging cadence of 50, a figure sums the consecutive turns that hold one
logging step (by default turns of 10 iterations, figures of 50), so that logging weighs what it weighs in a run.

Each variant's ms/step is the median over figures of its time per iteration; ``speed vs plain`` is the median
over figures of plain's time divided by the variant's time in the same figure (higher is faster; targets for
gan_lightning: >= 0.97 on the default networks, and >= 0.90 on the toy networks as a guard), and ``overhead`` the median over
figures of the variant's time minus plain's, in ms per step.

With the toy model, a last table times Lightning's loop by itself (``loop_cost``): ``fit`` of a module whose step
is one optimizer step on a one-element parameter, against iterating the same data loader alone.

    .venv/bin/python benchmarks/step_speed.py [--model dcgan toy] [--steps N] [--warmup N] [--rounds N] [--instances N]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
from functools import partial
from typing import Any, Callable, Iterator, Optional

import lightning.pytorch as pl
from lightning.pytorch.core.optimizer import LightningOptimizer
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.training.guards import DivergenceGuard
from gan_lightning.conditioning import ConditionalBatchNorm, Projection
from gan_lightning.data import EmbeddedMNIST, ToyDataModule
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import R1, ClassLoss
from gan_lightning.training.schedules import LinearDecay
from gan_lightning.training.held_fixed import held_fixed, spectral_norm_frozen
from gan_lightning.training.system import GAN, step_uncounted

from bench_common import median, rotations, table  # noqa: E402  (same folder)

VARIANT_NAMES = ("plain", "gan_lightning", "lightning_floor", "lightning_public", "lightning_usual", "plain_again")
# Per model: iterations per turn, untimed warm-up iterations, batch size, timed rounds, fresh instances.
DEFAULTS = {"dcgan": (10, 50, 64, 100, 10), "toy": (10, 50, 100, 300, 20)}
LOG_EVERY = 50  # the logging cadence of the Lightning variants (_trainer)
TITLES = {
    "dcgan": "class-conditional DCGAN (cgan_mnist5k networks) on embedded MNIST",
    "toy": "toy MLP GAN with R1 (toy_ring networks) on the 8-mode ring",
}


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def cycle(loader: Any) -> Iterator[Any]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


# ------------------------------------------------------------------------------------------------ networks
def nets(seed: int = 0) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    torch.manual_seed(seed)
    g = DCGANGenerator(latent_dim=64, ngf=32, num_classes=10, conditioning=ConditionalBatchNorm())
    d = DCGANDiscriminator(ndf=32, norm="spectral", num_classes=10, conditioning=Projection(classifier=True))
    return g, d


# experiments/cgan_mnist5k.yaml's recipe (tests/test_benchmarks.py checks that they agree); its ema_start only
# delays the averaging, which here runs from step 1.
DEFAULT_EMA, DEFAULT_LR, DEFAULT_BETAS, DEFAULT_CLASS_WEIGHT = 0.995, 3.2e-3, (0.5, 0.999), 1.0


def adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=DEFAULT_LR, betas=DEFAULT_BETAS)


def data(batch: int) -> EmbeddedMNIST:
    dm = EmbeddedMNIST(batch_size=batch)
    dm.setup("fit")
    return dm


# experiments/toy_ring.yaml's recipe (tests/test_benchmarks.py checks that they agree).
TOY_LATENT, TOY_R1_GAMMA, TOY_EMA = 2, 0.1, 0.999
TOY_G_HIDDEN, TOY_D_HIDDEN, TOY_PIECES = [128, 128, 128], [64, 64, 64], 5
TOY_LR, TOY_BETAS, TOY_DECAY_START = 2e-3, (0.5, 0.99), 0.3


def toy_nets(seed: int = 0) -> tuple[MLPGenerator, MLPDiscriminator]:
    torch.manual_seed(seed)
    g = MLPGenerator(out_shape=[2], latent_dim=TOY_LATENT, hidden=TOY_G_HIDDEN, norm="none")
    d = MLPDiscriminator(in_shape=[2], hidden=TOY_D_HIDDEN, maxout_pieces=TOY_PIECES)
    return g, d


def toy_adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=TOY_LR, betas=TOY_BETAS)


def toy_schedule(total_steps: int) -> Callable[[torch.optim.Optimizer], LinearDecay]:
    return partial(LinearDecay, total_steps=total_steps, decay_start=TOY_DECAY_START)


def toy_data(batch: int) -> ToyDataModule:
    dm = ToyDataModule(name="ring", batch_size=batch)
    dm.setup("fit")
    return dm


def _scores(out: Any) -> tuple[Tensor, Optional[Tensor]]:
    """D's scores and, with a class head, its class logits."""
    return out if isinstance(out, tuple) else (out, None)


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * net`` for the parameters; the buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)


def ema_copy(net: nn.Module, make: Callable[[], nn.Module]) -> nn.Module:
    ema = make().requires_grad_(False)
    ema.load_state_dict(net.state_dict())
    return ema


# ------------------------------------------------------------------------------------------------ plain loops
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def plain_optimizer_step(opt: Any, loss: Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def image_iteration(g: nn.Module, d: nn.Module, x: Tensor, y: Tensor, opt_g: Any, opt_d: Any,
                    optimizer_step: Callable[[Any, Tensor], None] = plain_optimizer_step) -> None:
    """One iteration of the hand-written conditional image GAN (hinge loss, class loss with a class head), EMA
    aside: one G forward, a D step on real and detached fakes, a G step through the held-fixed D."""
    dev = x.device
    z = torch.randn(len(x), g.latent_dim, device=dev)
    y_fake = torch.randint(0, g.num_classes, (len(x),), device=dev)
    fake = g(z, y_fake)
    real_logits, real_aux = _scores(d(x, y))
    with spectral_norm_frozen(d):  # one power iteration per D step, as gan_lightning does
        fake_logits, fake_aux = _scores(d(fake.detach(), y_fake))
    d_loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if real_aux is not None:
        d_loss = (d_loss + DEFAULT_CLASS_WEIGHT * F.cross_entropy(real_aux, y)
                  + DEFAULT_CLASS_WEIGHT * F.cross_entropy(fake_aux, y_fake))
    optimizer_step(opt_d, d_loss)
    with held_fixed(d):
        g_logits, g_aux = _scores(d(fake, y_fake))
        g_loss = -g_logits.mean()
        if g_aux is not None:
            g_loss = g_loss + DEFAULT_CLASS_WEIGHT * F.cross_entropy(g_aux, y_fake)
        optimizer_step(opt_g, g_loss)


def toy_iteration(g: nn.Module, d: nn.Module, x: Tensor, opt_g: Any, opt_d: Any, d_params: list[Tensor],
                  optimizer_step: Callable[[Any, Tensor], None] = plain_optimizer_step) -> None:
    """One iteration of the hand-written toy GAN, EMA and schedules aside: non-saturating loss, R1 on the real
    batch (a double backward), D's parameters frozen in the G step."""
    fake = g(torch.randn(len(x), TOY_LATENT))
    real = x.detach().requires_grad_(True)
    real_scores = d(real)
    (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)  # R1: a double backward
    r1 = grad.flatten(1).pow(2).sum(1).mean()
    fake_scores = d(fake.detach())
    loss_d = F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean() + 0.5 * TOY_R1_GAMMA * r1
    optimizer_step(opt_d, loss_d)
    for p in d_params:
        p.requires_grad_(False)
    loss_g = F.softplus(-d(fake)).mean()
    optimizer_step(opt_g, loss_g)
    for p in d_params:
        p.requires_grad_(True)


def plain_image_loop(g: nn.Module, d: nn.Module, ema: nn.Module, batches: Iterator[tuple[Tensor, Tensor]],
                     steps: int, warmup: int, *, make_optimizer: Callable = adam, ema_decay: float = DEFAULT_EMA,
                     device: str = "cpu", precision: str = "32-true", compile_nets: bool = False,
                     tick: Callable[[], None] = lambda: None) -> float:
    """Seconds per iteration of the hand-written conditional image GAN loop (hinge loss): one G forward, a D step
    on real and detached fakes (spectral norm advanced once), a G step through the held-fixed D, the EMA. When D
    has a class head (it returns scores and class logits), the AC-GAN class loss joins both phases: on the real
    and fake digits in D's step, on the fakes in G's. Mixed precision as Lightning runs it: the whole step under
    autocast, and for 16-mixed one grad scaler that unscales, steps and updates after every optimizer step.
    ``tick()`` is called after every iteration."""
    dev = torch.device(device)
    g, d, ema = g.to(dev), d.to(dev), ema.to(dev)
    if compile_nets:
        g.compile()
        d.compile()
    opt_g, opt_d = make_optimizer(g.parameters()), make_optimizer(d.parameters())
    dtype = AUTOCAST.get(precision)
    scaler = torch.amp.GradScaler(dev.type) if precision == "16-mixed" else None

    def optimizer_step(opt: torch.optim.Optimizer, loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            scaler.step(opt)
            scaler.update()

    start = time.perf_counter()
    for step in range(steps + warmup):
        if step == warmup:
            _sync()
            start = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            image_iteration(g, d, x, y, opt_g, opt_d, optimizer_step)
        ema_update(ema, g, ema_decay)
        tick()
    _sync()
    return (time.perf_counter() - start) / steps


def run_plain(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    g, d = nets()
    plain_image_loop(g, d, ema_copy(g, lambda: nets()[0]), cycle(data(batch).train_dataloader()), iterations, 0,
                     tick=tick)


def plain_toy_loop(g: nn.Module, d: nn.Module, ema: nn.Module, batches: Iterator[tuple[Tensor, Tensor]],
                   steps: int, warmup: int, total_steps: int, tick: Callable[[], None] = lambda: None) -> float:
    """Seconds per iteration of the hand-written toy loop: non-saturating loss, R1 on the real batch (a double
    backward), D's parameters frozen in the G step, the EMA, the linear learning-rate decay over ``total_steps``.
    ``tick()`` is called after every iteration."""
    opt_g, opt_d = toy_adam(g.parameters()), toy_adam(d.parameters())
    schedulers = [toy_schedule(total_steps)(opt) for opt in (opt_g, opt_d)]
    d_params = list(d.parameters())
    start = time.perf_counter()
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        x, _ = next(batches)
        toy_iteration(g, d, x, opt_g, opt_d, d_params)
        ema_update(ema, g, TOY_EMA)
        for scheduler in schedulers:
            scheduler.step()
        tick()
    return (time.perf_counter() - start) / steps


def run_plain_toy(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    g, d = toy_nets()
    plain_toy_loop(g, d, ema_copy(g, lambda: toy_nets()[0]), cycle(toy_data(batch).train_dataloader()), iterations,
                   0, iterations, tick=tick)


# ------------------------------------------------------------------------------------------------ Lightning
class _Clock(pl.Callback):
    """Wall time from the end of step ``warmup`` (``trainer.global_step``) to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            _sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, *args: Any) -> None:
        _sync()
        self.end = time.perf_counter()


class _Ticks(pl.Callback):
    """Calls ``tick()`` at the end of every training batch."""

    def __init__(self, tick: Callable[[], None]) -> None:
        self.tick = tick

    def on_train_batch_end(self, *args: Any) -> None:
        self.tick()


def _trainer(steps: int, callback: pl.Callback, **kwargs: Any) -> pl.Trainer:
    """The trainer every Lightning variant runs under: ``max_steps=steps``, logging every 50 steps, the divergence
    guard, ``callback`` (the clock); no logger, progress bar, checkpoints or model summary."""
    options: dict[str, Any] = dict(max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                   callbacks=[callback, DivergenceGuard()], log_every_n_steps=50)
    options.update(kwargs)
    return pl.Trainer(**options)


def default_gan(g: nn.Module, d: nn.Module) -> GAN:
    """The default experiment's model around ``g`` and ``d``."""
    return GAN(g, d, loss="hinge", regularizers=[ClassLoss(weight=DEFAULT_CLASS_WEIGHT)], ema_decay=DEFAULT_EMA,
               g_optimizer=adam, d_optimizer=adam)


def run_gan_lightning(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    g, d = nets()
    _trainer(iterations, _Ticks(tick)).fit(default_gan(g, d), data(batch))


def toy_gan(g: nn.Module, d: nn.Module, total_steps: int) -> GAN:
    """The toy experiment's model around ``g`` and ``d``, its learning rates decaying over ``total_steps``."""
    schedule = toy_schedule(total_steps)
    return GAN(g, d, loss="non_saturating", regularizers=[R1(gamma=TOY_R1_GAMMA)], ema_decay=TOY_EMA,
               g_optimizer=toy_adam, d_optimizer=toy_adam, g_lr_scheduler=schedule, d_lr_scheduler=schedule)


def run_gan_lightning_toy(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    g, d = toy_nets()
    _trainer(iterations, _Ticks(tick)).fit(toy_gan(g, d, iterations), toy_data(batch))


class UsualLightningGAN(pl.LightningModule):
    """Lightning's GAN example pattern, with the dcgan model's networks, losses and EMA."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = nets()
        self.ema = ema_copy(self.generator, lambda: nets()[0])

    def configure_optimizers(self) -> Any:
        return [adam(self.generator.parameters()), adam(self.discriminator.parameters())]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(x), 64)
        y_fake = torch.randint(0, 10, (len(x),))
        self.toggle_optimizer(opt_g)
        fake = self.generator(z, y_fake)
        g_logits, g_aux = _scores(self.discriminator(fake, y_fake))
        g_loss = -g_logits.mean() + F.cross_entropy(g_aux, y_fake)
        self.manual_backward(g_loss)
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)
        self.toggle_optimizer(opt_d)
        real_logits, real_aux = _scores(self.discriminator(x, y))
        fake_logits, fake_aux = _scores(self.discriminator(self.generator(z, y_fake).detach(), y_fake))
        d_loss = (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
                  + F.cross_entropy(real_aux, y) + F.cross_entropy(fake_aux, y_fake))
        self.manual_backward(d_loss)
        opt_d.step()
        opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)
        ema_update(self.ema, self.generator, DEFAULT_EMA)
        self.log_dict({"g_loss": g_loss.detach(), "d_loss": d_loss.detach()})


class UsualLightningToyGAN(pl.LightningModule):
    """Lightning's GAN example pattern, with the toy model's networks, loss, R1, EMA and schedules."""

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = toy_nets()
        self.ema = ema_copy(self.generator, lambda: toy_nets()[0])
        self.total_steps = total_steps

    def configure_optimizers(self) -> Any:
        optimizers = [toy_adam(self.generator.parameters()), toy_adam(self.discriminator.parameters())]
        return optimizers, [toy_schedule(self.total_steps)(opt) for opt in optimizers]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, _ = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(x), TOY_LATENT)
        self.toggle_optimizer(opt_g)
        g_loss = F.softplus(-self.discriminator(self.generator(z))).mean()
        self.manual_backward(g_loss)
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)
        self.toggle_optimizer(opt_d)
        real = x.detach().requires_grad_(True)
        real_scores = self.discriminator(real)
        (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)
        r1 = grad.flatten(1).pow(2).sum(1).mean()
        fake_scores = self.discriminator(self.generator(z).detach())
        d_loss = F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean() + 0.5 * TOY_R1_GAMMA * r1
        self.manual_backward(d_loss)
        opt_d.step()
        opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)
        ema_update(self.ema, self.generator, TOY_EMA)
        for scheduler in self.lr_schedulers():
            scheduler.step()
        self.log_dict({"g_loss": g_loss.detach(), "d_loss": d_loss.detach(), "r1": r1.detach()})


class LightningFloor(pl.LightningModule):
    """The hand-written iteration (``image_iteration`` or ``toy_iteration``, the EMA, the schedules) as the
    ``training_step`` of a LightningModule with manual optimization: Lightning's loop, data fetching and hooks
    around a step that adds nothing to the plain loop's (no logging; G's step through Lightning's optimizer wrapper
    so that it counts). What any Lightning module pays per step; gan_lightning's own cost is what it adds.

    With ``public=True`` (``lightning_public``) the same iteration is written as Lightning's manual-optimization
    guide has it and as gan_lightning's step must be: every backward through ``manual_backward`` and every optimizer
    step through the strategy (D's with ``step_uncounted``, so that only G's counts, as in gan_lightning). That is
    what letting precision plugins, strategies and callbacks' hooks apply costs around the hand-written step."""

    def __init__(self, model: str, total_steps: int, public: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.public = public
        make = nets if model == "dcgan" else toy_nets
        self.generator, self.discriminator = make()
        self.ema = ema_copy(self.generator, lambda: make()[0])
        self.total_steps = total_steps

    def configure_optimizers(self) -> Any:
        make = adam if self.model == "dcgan" else toy_adam
        optimizers = [make(self.generator.parameters()), make(self.discriminator.parameters())]
        if self.model == "dcgan":
            return optimizers
        return optimizers, [toy_schedule(self.total_steps)(opt) for opt in optimizers]

    def on_train_start(self) -> None:
        self.d_params = list(self.discriminator.parameters())
        self.schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]

    def public_step(self, opt: LightningOptimizer, loss: Tensor) -> None:
        """Lightning's manual optimization: ``manual_backward``, then the step through the strategy (G's counted)."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if opt.optimizer is self.opt_g:
            opt.step()
        else:
            step_uncounted(self, opt)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        if self.public:
            self.opt_g = opt_g.optimizer
            step: Callable[[Any, Tensor], None] = self.public_step
        else:
            step, opt_d = plain_optimizer_step, opt_d.optimizer
        if self.model == "dcgan":
            x, y = batch
            image_iteration(self.generator, self.discriminator, x, y, opt_g, opt_d, step)
            ema_update(self.ema, self.generator, DEFAULT_EMA)
        else:
            toy_iteration(self.generator, self.discriminator, batch[0], opt_g, opt_d, self.d_params, step)
            ema_update(self.ema, self.generator, TOY_EMA)
            for scheduler in self.schedulers:
                scheduler.step()


def run_lightning_floor(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(iterations, _Ticks(tick)).fit(LightningFloor("dcgan", iterations), data(batch))


def run_lightning_floor_toy(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(iterations, _Ticks(tick)).fit(LightningFloor("toy", iterations), toy_data(batch))


def run_lightning_public(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(iterations, _Ticks(tick)).fit(LightningFloor("dcgan", iterations, public=True), data(batch))


def run_lightning_public_toy(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(iterations, _Ticks(tick)).fit(LightningFloor("toy", iterations, public=True), toy_data(batch))


# Both optimizer steps count as Lightning steps here: twice the steps for the same iterations (batches).
def run_lightning_usual(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(2 * iterations, _Ticks(tick)).fit(UsualLightningGAN(), data(batch))


def run_lightning_usual_toy(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(2 * iterations, _Ticks(tick)).fit(UsualLightningToyGAN(iterations), toy_data(batch))


VARIANTS: dict[str, dict[str, Callable[[int, int, Callable[[], None]], None]]] = {
    "dcgan": {"plain": run_plain, "gan_lightning": run_gan_lightning, "lightning_floor": run_lightning_floor,
              "lightning_public": run_lightning_public, "lightning_usual": run_lightning_usual,
              "plain_again": run_plain},
    "toy": {"plain": run_plain_toy, "gan_lightning": run_gan_lightning_toy, "lightning_floor": run_lightning_floor_toy,
            "lightning_public": run_lightning_public_toy, "lightning_usual": run_lightning_usual_toy,
            "plain_again": run_plain_toy},
}


# ------------------------------------------------------------------------------------------------ the loop alone
class EmptyStep(pl.LightningModule):
    """A manual-optimization module whose step does nothing but one counted optimizer step on a one-element
    parameter: ``Trainer.fit`` of it costs Lightning's loop (fetching, batch transfer, hooks, progress, logging
    checks) and the data loader, and next to no compute."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.p = nn.Parameter(torch.zeros(1))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD([self.p], lr=0.0)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        self.optimizers().step()


def run_empty_step(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    _trainer(iterations, _Ticks(tick)).fit(EmptyStep(), toy_data(batch))


def run_data_loader(iterations: int, batch: int, tick: Callable[[], None]) -> None:
    loader = cycle(toy_data(batch).train_dataloader())
    for _ in range(iterations):
        next(loader)
        tick()


def loop_cost(batches: int = 500, warmup: int = 100, rounds: int = 5, batch: int = 100) -> dict[str, Any]:
    """Per-batch seconds of ``fit`` with ``EmptyStep`` on the toy data (same trainer settings as the variants)
    and of iterating the same data loader alone, taking turns of ``batches`` batches (``Turns``): their
    difference is what Lightning's loop costs per training step whatever the step does."""
    runners = {"fit_empty_step": run_empty_step, "data_loader_alone": run_data_loader}
    times = Turns(_with_batch(runners, batch), batches, warmup, rounds).run()
    return {"batches": batches, "warmup": warmup, "rounds": rounds, "batch": batch, "times": times}


def loop_markdown(result: dict[str, Any]) -> str:
    times = result["times"]
    loop = [f - d for f, d in zip(times["fit_empty_step"], times["data_loader_alone"])]
    head = (f"Lightning's loop by itself: `fit` of a module whose step is one optimizer step on a one-element "
            f"parameter, against iterating the same toy data loader alone; batch {result['batch']}, turns of "
            f"{result['batches']} batches after {result['warmup']} untimed, rounds: {result['rounds']}")
    rows = [("fit, empty step", f"{1000 * median(times['fit_empty_step']):.3f}"),
            ("data loader alone", f"{1000 * median(times['data_loader_alone']):.3f}"),
            ("Lightning's loop (difference, median over rounds)", f"{1000 * median(loop):.3f}")]
    return head + "\n\n" + table(["what", "ms per training step (median)"], rows)


# ------------------------------------------------------------------------------------------------ measuring
def _with_batch(runners: dict[str, Callable[[int, int, Callable[[], None]], None]],
                batch: int) -> dict[str, Callable[[int, Callable[[], None]], None]]:
    """``run(iterations, batch, tick)`` runners as ``Turns`` calls them: ``run(iterations, tick)``."""
    return {name: (lambda iterations, tick, run=run: run(iterations, batch, tick)) for name, run in runners.items()}


class _Abort(Exception):
    """Another variant failed: the ones waiting for their turn stop."""


class Turns:
    """Variants side by side in one process, each in a thread of its own, taking turns: one runs while the others
    wait. Every variant is built ``instances`` times afresh (networks, optimizers, data loader, trainer): each
    instance first takes an untimed turn that builds it and runs ``warmup`` iterations, then its share of the
    ``rounds`` timed rounds (as equal as they divide), in each of which every variant runs ``steps`` iterations,
    the order rotated by one each round. All variants start a new instance in the same round.

    A turn's figure is its wall time per iteration, from the end of the iteration before the turn to the end of
    its last, so that a slow drift of the machine's speed (other tenants, clock changes) lands on every variant of
    a round alike; a variant's teardown runs before the next turn starts. Fresh instances matter as much: the
    same code on a second copy of the same networks can run a few percent faster or slower for as long as that
    copy lives (where its tensors landed in memory), which more rounds of one copy never average out.

    A finished instance's garbage is collected before the next turn: a fit leaves its trainer, loops and module in
    reference cycles, which Python's collector would otherwise free at some later moment, in the middle of
    another variant's timed turn or of the next instance's run, leaving the freed memory as holes among the live
    instance's tensors (every allocation then searches more free chunks: a plain toy loop whose thread had first
    filled 100 MB with odd-sized buffers and freed two thirds of them ran 14-27% slower in five runs). A single
    fit, as a user runs it, has no previous instance to collect.

    Each instance's share of the rounds is a multiple of ``unit`` rounds, so that figures that sum ``unit``
    consecutive rounds never span two instances.

    ``runners[name](iterations, tick)`` builds one instance and runs ``warmup + k * steps`` iterations, ``k`` that
    instance's timed rounds, calling ``tick()`` after each (a callback's ``on_train_batch_end`` in
    ``Trainer.fit``)."""

    def __init__(self, runners: dict[str, Callable[..., None]], steps: int, warmup: int, rounds: int,
                 instances: int = 1, unit: int = 1) -> None:
        if steps < 1 or rounds < 1 or unit < 1 or rounds % unit or not 1 <= instances <= rounds // unit:
            raise ValueError("Turns: steps, rounds and unit must be >= 1, rounds a multiple of unit, instances "
                             "between 1 and rounds / unit")
        self.runners, self.steps, self.warmup, self.rounds = runners, steps, max(1, warmup), rounds
        # Timed rounds of each instance, in multiples of ``unit``; an instance's turns are its warm-up turn and these.
        units = rounds // unit
        self.shares = [unit * (units // instances + (1 if j < units % instances else 0)) for j in range(instances)]
        self.schedule = [name for order in rotations(list(runners), rounds + instances) for name in order]
        self.times: dict[str, list[float]] = {name: [] for name in runners}
        self.turns_done = {name: 0 for name in runners}  # of the current instance, its warm-up turn included
        self.turn, self.in_turn, self.started = 0, 0, 0.0
        self.failed: Optional[BaseException] = None
        self.cond = threading.Condition()

    def run(self) -> dict[str, list[float]]:
        """Seconds per iteration of every variant in every timed round: ``times[variant][round]``."""
        threads = [threading.Thread(target=self._thread, args=(name,), name=f"variant {name}") for name in self.runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.failed is not None:
            raise self.failed
        return self.times

    def tick(self, name: str, share: int) -> None:
        self.in_turn += 1
        done = self.turns_done[name]
        if done > share:
            raise RuntimeError(f"{name} ran more iterations than its {self.warmup} + {share} x {self.steps}")
        if self.in_turn < (self.warmup if done == 0 else self.steps):
            return
        if done > 0:
            _sync()
            self.times[name].append((time.perf_counter() - self.started) / self.steps)
        self.turns_done[name] = done + 1
        if done < share:  # after the instance's last turn the thread passes once the runner has returned
            self._pass()
            self._wait(name)

    def _thread(self, name: str) -> None:
        try:
            for j, share in enumerate(self.shares):
                if j:
                    self._pass()
                self._wait(name)
                self.turns_done[name] = 0
                self.runners[name](self.warmup + share * self.steps, partial(self.tick, name, share))
                if self.turns_done[name] != share + 1:
                    raise RuntimeError(f"{name} stopped after {self.turns_done[name]} of its {share + 1} turns")
                gc.collect()  # the instance's reference cycles (a whole trainer), while no other variant runs
        except _Abort:
            return
        except BaseException as err:  # noqa: BLE001 - re-raised by run() in the main thread
            with self.cond:
                self.failed = self.failed or err
                self.cond.notify_all()
            return
        self._pass()

    def _wait(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.failed is not None
                               or (self.turn < len(self.schedule) and self.schedule[self.turn] == name))
            if self.failed is not None:
                raise _Abort
        self.in_turn = 0
        _sync()
        self.started = time.perf_counter()

    def _pass(self) -> None:
        with self.cond:
            self.turn += 1
            self.cond.notify_all()


def measure(model: str, steps: Optional[int] = None, warmup: Optional[int] = None, rounds: Optional[int] = None,
            batch: Optional[int] = None, instances: Optional[int] = None) -> dict[str, Any]:
    """Seconds per iteration of every variant in every figure (``times[variant][figure]``), with the settings.

    The variants take turns of ``steps`` iterations over ``rounds`` rounds, each variant built ``instances`` times
    afresh (``Turns``). Where ``steps`` divides the logging cadence (50), a figure sums the ``50 / steps``
    consecutive turns that hold one logging step of every variant, so that short turns (which pair the variants
    more closely in time) weigh logging exactly as often as it happens."""
    d_steps, d_warmup, d_batch, d_rounds, d_instances = DEFAULTS[model]
    steps, warmup, batch = steps or d_steps, d_warmup if warmup is None else warmup, batch or d_batch
    rounds, instances = rounds or d_rounds, instances or d_instances
    group = LOG_EVERY // steps if steps < LOG_EVERY and LOG_EVERY % steps == 0 and warmup % LOG_EVERY == 0 else 1
    figures = max(1, rounds // group)
    instances = max(1, min(instances, figures))
    turns = Turns(_with_batch(VARIANTS[model], batch), steps, warmup, figures * group, instances, unit=group).run()
    times = {name: [sum(values[i:i + group]) / group for i in range(0, len(values), group)]
             for name, values in turns.items()}
    return {"model": model, "steps": steps, "warmup": warmup, "rounds": figures * group, "group": group,
            "instances": instances, "batch": batch, "times": times}


def summary(result: dict[str, Any]) -> list[dict[str, float]]:
    """Per variant: median ms/step, median per-round speed vs plain and overhead over plain in ms/step."""
    times = result["times"]
    plain = times["plain"]
    rows = []
    for name, values in times.items():
        rows.append({
            "variant": name,
            "ms": 1000 * median(values),
            "speed": median([p / v for p, v in zip(plain, values)]),
            "overhead_ms": 1000 * median([v - p for p, v in zip(plain, values)]),
        })
    return rows


def markdown(result: dict[str, Any], threads: int) -> str:
    group = result.get("group", 1)
    figures = (f"each figure {group} consecutive turns ({group * result['steps']} iterations)" if group > 1
               else "each figure one turn")
    head = (f"{TITLES[result['model']]}, batch {result['batch']}, turns of {result['steps']} iterations, "
            f"rounds: {result['rounds']}, {figures}, every variant built {result.get('instances', 1)} times "
            f"afresh with {result['warmup']} warm-up iterations each, threads: {threads}")
    rows = [(r["variant"], f"{r['ms']:.2f}", f"{r['speed']:.3f}x",
             "—" if r["variant"] == "plain" else f"{r['overhead_ms']:+.2f}") for r in summary(result)]
    text = head + "\n\n" + table(["variant", "ms / step (median)", "speed vs plain (median ratio)",
                                  "overhead vs plain (ms / step, median)"], rows)
    times = result["times"]
    if "gan_lightning" in times and "lightning_public" in times:
        pairs = list(zip(times["lightning_public"], times["gan_lightning"]))
        text += ("\n\ngan_lightning against `lightning_public` (the hand-written step through the same public API), "
                 f"in the same figures: {median([p / v for p, v in pairs]):.3f}x, "
                 f"{1000 * median([v - p for p, v in pairs]):+.2f} ms / step (medians)")
    return text


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="iterations per turn, a divisor or multiple of the logging cadence of 50 (default: 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations of every instance first (default: 50)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds of turns (default: dcgan 100, toy 300)")
    parser.add_argument("--instances", type=int, default=None, help="times every variant is built afresh (default: dcgan 10, toy 20)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: dcgan 64, toy 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps timings stable on a busy CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for model in args.model:
        result = measure(model, args.steps, args.warmup, args.rounds, args.batch, args.instances)
        print("\nstep speed: " + markdown(result, args.threads) + "\n", flush=True)
    if "toy" in args.model:
        print("\n" + loop_markdown(loop_cost(rounds=args.rounds or 15)) + "\n", flush=True)


if __name__ == "__main__":
    main()
