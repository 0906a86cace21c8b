"""Training-step speed: gan_lightning vs a hand-written PyTorch loop vs the usual Lightning GAN pattern.

All three run the same math on the same networks and data: a class-conditional DCGAN (conditional BN in G,
spectral-norm projection D, hinge loss, Adam, EMA of G) on the embedded MNIST subset held in memory.

- ``plain``: a hand-written PyTorch loop — one G forward per iteration, D step on detached fakes (spectral
  norm advanced once per D step), G step through D with D's parameters frozen; no logging. The reference (1.00).
- ``gan_lightning``: ``Trainer.fit`` of ``gan_lightning.system.GAN`` with its step logging on, progress bar
  and checkpoints off.
- ``lightning_usual``: the pattern of Lightning's GAN example — ``toggle_optimizer``, G step first, then a D
  step that generates the fakes a second time.

Rounds alternate between the variants (in a rotating order); each variant's time is the median over rounds of
the seconds per iteration after warm-up. Ratios are speeds relative to ``plain`` (higher is faster; target for gan_lightning
>= 0.95).

    .venv/bin/python benchmarks/step_speed.py [--steps 150] [--warmup 20] [--rounds 3] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from gan_lightning.conditioning import ConditionalBatchNorm, Projection
from gan_lightning.data import EmbeddedMNIST
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator
from gan_lightning.system import GAN, held_fixed, spectral_norm_frozen


def nets(seed: int = 0):
    torch.manual_seed(seed)
    g = DCGANGenerator(latent_dim=64, ngf=32, num_classes=10, conditioning=ConditionalBatchNorm())
    d = DCGANDiscriminator(ndf=32, norm="spectral", num_classes=10, conditioning=Projection())
    return g, d


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def data(batch: int) -> EmbeddedMNIST:
    dm = EmbeddedMNIST(batch_size=batch)
    dm.setup("fit")
    return dm


def run_plain(steps: int, warmup: int, batch: int) -> float:
    g, d = nets()
    ema = nets()[0].requires_grad_(False)
    ema.load_state_dict(g.state_dict())
    opt_g, opt_d = adam(g.parameters()), adam(d.parameters())
    loader = data(batch).train_dataloader()
    it = iter(loader)
    start = None
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        z = torch.randn(len(x), 64)
        y_fake = torch.randint(0, 10, (len(x),))
        fake = g(z, y_fake)
        real_logits = d(x, y)
        with spectral_norm_frozen(d):  # one power iteration per D step, as gan_lightning does
            fake_logits = d(fake.detach(), y_fake)
        loss_d = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with held_fixed(d):
            loss_g = -d(fake, y_fake).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(g.parameters()), 1e-3)
    return (time.perf_counter() - start) / steps


class _Clock(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, *args) -> None:
        self.end = time.perf_counter()


def _trainer(steps: int, clock: _Clock) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
                      log_every_n_steps=50)


def run_gan_lightning(steps: int, warmup: int, batch: int) -> float:
    g, d = nets()
    model = GAN(g, d, loss="hinge", ema_decay=0.999, g_optimizer=adam, d_optimizer=adam)
    clock = _Clock(warmup)
    _trainer(steps + warmup, clock).fit(model, data(batch))
    return (clock.end - clock.start) / steps


class UsualLightningGAN(pl.LightningModule):
    """Lightning's GAN example pattern, with the same networks, loss and EMA."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = nets()
        self.ema = nets()[0].requires_grad_(False)
        self.ema.load_state_dict(self.generator.state_dict())

    def configure_optimizers(self):
        return [adam(self.generator.parameters()), adam(self.discriminator.parameters())]

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(x), 64)
        y_fake = torch.randint(0, 10, (len(x),))
        self.toggle_optimizer(opt_g)
        fake = self.generator(z, y_fake)
        g_loss = -self.discriminator(fake, y_fake).mean()
        self.manual_backward(g_loss)
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)
        self.toggle_optimizer(opt_d)
        d_loss = F.relu(1 - self.discriminator(x, y)).mean() + F.relu(
            1 + self.discriminator(self.generator(z, y_fake).detach(), y_fake)).mean()
        self.manual_backward(d_loss)
        opt_d.step()
        opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.generator.parameters()), 1e-3)
        self.log_dict({"g_loss": g_loss.detach(), "d_loss": d_loss.detach()})


def run_lightning_usual(steps: int, warmup: int, batch: int) -> float:
    clock = _Clock(2 * warmup)  # both optimizer steps count as Lightning steps here
    _trainer(2 * (steps + warmup), clock).fit(UsualLightningGAN(), data(batch))
    return (clock.end - clock.start) / steps


VARIANTS = {"plain": run_plain, "gan_lightning": run_gan_lightning, "lightning_usual": run_lightning_usual}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps timings stable on a busy CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for r in range(args.rounds):
        # Rotate the order each round, so that no variant always runs first or after the same one.
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(VARIANTS[name](args.steps, args.warmup, args.batch))
    ref = statistics.median(times["plain"])
    print(f"\nstep speed: class-conditional DCGAN on embedded MNIST, batch {args.batch}, {args.steps} timed "
          f"iterations after {args.warmup} warm-up, {args.rounds} rounds, {args.threads} thread(s)\n")
    print("| variant | ms / iteration (median) | speed vs plain |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {1000 * med:.1f} | {ref / med:.3f}x |")


if __name__ == "__main__":
    main()
