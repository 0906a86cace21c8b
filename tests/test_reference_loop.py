"""``fit`` does exactly the GAN algorithm: a loop written out by hand here, with plain torch and none of the
library's helpers (no held-fixed context, no loss or regularizer classes), reaches the same G, D and EMA weights
bit for bit from the same seed, in the configurations the step's code paths differ on: a joint D step with R1,
two split D steps per G step with the gradient penalty, and two joint D steps with the hinge loss. D has spectral
norm (its power iteration advances once per D step and never in the G phase); G has batch norm."""

from __future__ import annotations

from itertools import cycle
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.data import ToyDataModule
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.objectives import GradientPenalty, R1
from gan_lightning.training import GAN

BATCH, STEPS, LR, EMA = 16, 4, 1e-3, 0.9


def networks() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=3, hidden=[16, 16], norm="batch")
    d = MLPDiscriminator(in_shape=[2], hidden=[16, 16], maxout_pieces=2, norm="spectral")
    return g, d


def adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=LR, betas=(0.5, 0.99))


def spectral_norms(d: nn.Module) -> list[nn.Module]:
    return [m for m in d.modules() if type(m).__name__ == "_SpectralNorm"]


def d_scores(d: nn.Module, x: Tensor, advance: bool) -> Tensor:
    """D's scores; spectral norm's power iteration advances only when ``advance`` (it runs in training mode)."""
    sn = spectral_norms(d)
    if not advance:
        for m in sn:
            m.eval()
    out = d(x, None)
    for m in sn:
        m.train()
    return out


def optimizer_step(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def sq_grad_norm(scores: Tensor, x: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


def hand_written(config: str, batches: Iterator, g: nn.Module, d: nn.Module, ema: nn.Module) -> None:
    opt_g, opt_d = adam(g.parameters()), adam(d.parameters())
    k = 1 if config == "joint_r1" else 2
    for _ in range(STEPS):
        x = next(batches)
        x = x[0] if isinstance(x, (list, tuple)) else x
        for i, real in enumerate(x.chunk(k)):
            z = torch.randn(real.shape[0], 3)
            with torch.set_grad_enabled(i == k - 1):  # the last D step's fakes are reused by G
                fake = g(z, None)
            fake_d = fake.detach()
            if config == "joint_r1":
                real_in = real.detach().requires_grad_(True)
                real_s = d_scores(d, real_in, advance=True)
                fake_s = d_scores(d, fake_d, advance=False)
                loss = F.softplus(-real_s).mean() + F.softplus(fake_s).mean()
                loss = loss + 0.5 * 0.5 * sq_grad_norm(real_s, real_in).mean()  # R1, gamma 0.5
                optimizer_step(opt_d, loss)
            elif config == "split_gp":
                optimizer_step(opt_d, d_scores(d, fake_d, advance=True).mean())  # Wasserstein, fake step
                real_s = d_scores(d, real, advance=True)
                eps = torch.rand(real.shape[0]).view(-1, 1)
                x_hat = (eps * real + (1.0 - eps) * fake_d).requires_grad_(True)
                norm = (sq_grad_norm(d_scores(d, x_hat, advance=False), x_hat) + 1e-12).sqrt()
                optimizer_step(opt_d, -real_s.mean() + 10.0 * (norm - 1.0).pow(2).mean())
            else:  # joint hinge
                real_s = d_scores(d, real, advance=True)
                fake_s = d_scores(d, fake_d, advance=False)
                optimizer_step(opt_d, F.relu(1.0 - real_s).mean() + F.relu(1.0 + fake_s).mean())
        # G phase: D's parameters take no gradient and its spectral norm does not advance.
        for p in d.parameters():
            p.requires_grad_(False)
        scores = d_scores(d, fake, advance=False)
        g_loss = F.softplus(-scores).mean() if config == "joint_r1" else -scores.mean()
        optimizer_step(opt_g, g_loss)
        for p in d.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), g.parameters()):
                pe.lerp_(p, 1.0 - EMA)
            for be, b in zip(ema.buffers(), g.buffers()):
                be.copy_(b)


def library_gan(config: str, g: nn.Module, d: nn.Module) -> GAN:
    if config == "joint_r1":
        kwargs = dict(loss="non_saturating", regularizers=[R1(gamma=0.5)])
    elif config == "split_gp":
        kwargs = dict(loss="wasserstein", regularizers=[GradientPenalty(weight=10.0)], d_step="split", n_critic=2)
    else:
        kwargs = dict(loss="hinge", n_critic=2)
    return GAN(g, d, ema_decay=EMA, g_optimizer=adam, d_optimizer=adam, **kwargs)


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa)


@pytest.mark.parametrize("config", ["joint_r1", "split_gp", "joint_hinge"])
def test_fit_reaches_the_hand_written_loops_weights(config, make_trainer):
    k = 1 if config == "joint_r1" else 2
    g, d = networks()
    ema = networks()[0].requires_grad_(False)
    ema.load_state_dict(g.state_dict())
    data = ToyDataModule(num_samples=512, batch_size=BATCH, draws_per_step=k)
    data.setup("fit")
    torch.manual_seed(5)
    hand_written(config, cycle(data.train_dataloader()), g, d, ema)

    g2, d2 = networks()
    model = library_gan(config, g2, d2)
    torch.manual_seed(5)
    make_trainer(STEPS).fit(model, ToyDataModule(num_samples=512, batch_size=BATCH, draws_per_step=k))

    assert not _same(g, networks()[0])  # they trained
    assert _same(g, model.generator)
    assert _same(d, model.discriminator)
    assert _same(ema, model.generator_ema)


def test_the_comparison_sees_one_changed_step(make_trainer):
    """The same comparison fails when the hand-written loop differs by one detail (here: D's spectral norm also
    advances in the G phase), so the equality above is not vacuous."""
    g, d = networks()
    ema = networks()[0].requires_grad_(False)
    data = ToyDataModule(num_samples=512, batch_size=BATCH, draws_per_step=2)
    data.setup("fit")
    torch.manual_seed(5)
    original = d_scores

    def advancing(d: nn.Module, x: Tensor, advance: bool) -> Tensor:
        return original(d, x, advance=True)

    globals()["d_scores"] = advancing
    try:
        hand_written("joint_hinge", cycle(data.train_dataloader()), g, d, ema)
    finally:
        globals()["d_scores"] = original
    g2, d2 = networks()
    model = library_gan("joint_hinge", g2, d2)
    torch.manual_seed(5)
    make_trainer(STEPS).fit(model, ToyDataModule(num_samples=512, batch_size=BATCH, draws_per_step=2))
    assert not _same(d, model.discriminator)
