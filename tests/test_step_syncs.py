"""The training step never waits for the device: no ``.item()``, ``float()``, ``bool()``, ``.tolist()``,
``.cpu()`` or ``.numpy()`` on a tensor inside ``training_step`` except on the steps that log (where Lightning
needs the values anyway). On a GPU each of these would stall the step until the device catches up; counted
here on CPU by patching the tensor methods."""

from __future__ import annotations

import sys
from functools import partial

import pytest
import torch

from gan_lightning.objectives.augment import AdaptiveAugment, DiffAugment
from gan_lightning.conditioning import ConditionalBatchNorm, Projection
from gan_lightning.data import EmbeddedMNIST, ToyDataModule
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import ClassLoss, R1, R2, GradientPenalty
from gan_lightning.training.schedules import LinearDecay
from gan_lightning.training.system import GAN

SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class Counting(GAN):
    """Counts host syncs made inside training_step, except on the steps that log."""

    syncs: list[str]

    def training_step(self, batch, batch_idx):
        step = self.global_step + 1  # the step this call completes
        logs = step % self.trainer.log_every_n_steps == 0 or step == self.trainer.max_steps
        Counting._active = not logs
        try:
            return super().training_step(batch, batch_idx)
        finally:
            Counting._active = False


@pytest.fixture
def count_syncs(monkeypatch):
    calls: list[str] = []
    Counting._active = False
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            # torch's optimizers read their step counters, which live on the CPU by design (not a device sync)
            if Counting._active and "torch/optim/" not in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
                calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls


def toy(regularizers=(R1(0.1),), **kwargs):
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[32, 32], norm="none")
    d = MLPDiscriminator(in_shape=[2], hidden=[32, 32], maxout_pieces=5)
    model = Counting(g, d, ema_decay=0.99, regularizers=list(regularizers),
                     g_lr_scheduler=partial(LinearDecay, decay_start=0.5),
                     d_lr_scheduler=partial(LinearDecay, decay_start=0.5), **kwargs)
    return model, ToyDataModule(num_samples=512, batch_size=32, draws_per_step=kwargs.get("n_critic", 1))


def cgan(**kwargs):
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=8, ngf=8, num_classes=10, conditioning=ConditionalBatchNorm())
    d = DCGANDiscriminator(ndf=8, norm="spectral", num_classes=10, conditioning=Projection(classifier=True))
    return Counting(g, d, ema_decay=0.9, **kwargs), EmbeddedMNIST(batch_size=16, draws_per_step=kwargs.get("n_critic", 1))


CASES = {
    "toy_r1_ema_schedule": lambda: toy(),
    "toy_gp_split": lambda: toy(regularizers=[GradientPenalty(1.0)], loss="wasserstein", d_step="split", n_critic=2),
    "cgan_sn_projection_diffaugment": lambda: cgan(loss="hinge", regularizers=[ClassLoss(0.5)], augment=DiffAugment()),
    "cgan_relativistic_r1_r2_ada": lambda: cgan(loss="relativistic", regularizers=[R1(0.1), R2(0.1), ClassLoss(0.5)],
                                                augment=AdaptiveAugment(interval=2, p_init=0.3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_training_step_makes_no_host_sync(make_trainer, count_syncs, name):
    model, data = CASES[name]()
    trainer = make_trainer(8, log_every_n_steps=4)
    trainer.fit(model, data)
    assert trainer.global_step == 8
    assert count_syncs == [], f"host syncs inside training_step: {sorted(set(count_syncs))}"


def test_the_counter_sees_a_sync(make_trainer, count_syncs):
    """The check itself works: a step that reads a loss value on the host is caught."""

    class Reads(Counting):
        def d_phase(self, *args):
            loss, logs = super().d_phase(*args)
            float(loss)
            return loss, logs

    torch.manual_seed(0)
    model = Reads(MLPGenerator(hidden=[8]), MLPDiscriminator(hidden=[8], maxout_pieces=2))
    make_trainer(3, log_every_n_steps=50).fit(model, ToyDataModule(num_samples=256, batch_size=16))
    assert count_syncs.count("__float__") == 2  # steps 1 and 2; step 3 logs
