"""The two-phase step: in each phase only the trained network changes, with every regularizer and with augmentation.

A real Lightning trainer runs a tiny GAN for a few steps; a subclass of ``GAN`` snapshots both networks around
every ``d_phase`` and ``g_phase`` call (parameters *and* buffers: batch-norm running statistics and
``num_batches_tracked``, spectral-norm power-iteration vectors) and records which gradients each phase produced.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning.objectives.augment import AdaptiveAugment, DiffAugment
from gan_lightning.conditioning import AuxiliaryClassifier, LabelConcat
from gan_lightning.data import ToyDataModule
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.objectives.regularizers import ClassLoss, GradientPenalty, R1, R2
from gan_lightning.training.system import GAN

N_CRITIC = 2
MAX_STEPS = 2
BATCH = 8


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, Tensor], after: dict[str, Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


class PhaseSpy(GAN):
    """Records the state of both networks around each phase. Gradients of the network a phase must not train
    are cleared before the phase, so any gradient found afterwards came from that phase."""

    records: list[dict[str, Any]]

    def d_phase(self, real, y_real, fake, y_fake):  # type: ignore[override]
        for p in self.generator.parameters():
            p.grad = None
        g0, d0 = snapshot(self.generator), snapshot(self.discriminator)
        out = super().d_phase(real, y_real, fake, y_fake)
        self.records.append({
            "phase": "d", "g0": g0, "d0": d0,
            "g1": snapshot(self.generator), "d1": snapshot(self.discriminator),
            "g_grads": [p.grad for p in self.generator.parameters()],
            "real_batch": real.shape[0],
        })
        return out

    def g_phase(self, fake, y_fake, real=None, y_real=None):  # type: ignore[override]
        for p in self.discriminator.parameters():
            p.grad = None
        g0, d0 = snapshot(self.generator), snapshot(self.discriminator)
        out = super().g_phase(fake, y_fake, real, y_real)
        self.records.append({
            "phase": "g", "g0": g0, "d0": d0,
            "g1": snapshot(self.generator), "d1": snapshot(self.discriminator),
            "d_grads": [p.grad for p in self.discriminator.parameters()],
            "g_grads": {n: (None if p.grad is None else p.grad.clone()) for n, p in self.generator.named_parameters()},
            "d_training": all(m.training for m in self.discriminator.modules()),
            "d_requires_grad": all(p.requires_grad for p in self.discriminator.parameters()),
        })
        return out


def _images(n: int = 64, classes: int = 1) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH * N_CRITIC, shuffle=True, drop_last=True)


def _toy() -> ToyDataModule:
    data = ToyDataModule(num_samples=256, batch_size=BATCH)
    data.draws_per_step = N_CRITIC
    return data


def mlp_2d() -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[16, 16])  # batch norm in G
    d = MLPDiscriminator(in_shape=[2], hidden=[16, 16], maxout_pieces=2)
    return g, d, {"datamodule": _toy()}, {}


def mlp_regularized() -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    """R1, R2 and the gradient penalty together: input gradients on both sides, interpolates."""
    g, d, data, _ = mlp_2d()
    return g, d, data, {"regularizers": [R1(1.0), R2(1.0), GradientPenalty(10.0)]}


def dcgan_batchnorm() -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    g = DCGANGenerator(latent_dim=8, channels=1, image_size=28, ngf=8)
    d = DCGANDiscriminator(channels=1, image_size=28, ndf=8, norm="batch")
    return g, d, {"train_dataloaders": _images()}, {}


def dcgan_spectral() -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    g = DCGANGenerator(latent_dim=8, channels=1, image_size=28, ngf=8)
    d = DCGANDiscriminator(channels=1, image_size=28, ndf=8, norm="spectral")
    return g, d, {"train_dataloaders": _images()}, {}


def dcgan_augmented() -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    """Spectral norm, R1 through DiffAugment (the input gradient passes through the augmentation)."""
    g, d, data, _ = dcgan_spectral()
    return g, d, data, {"augment": DiffAugment(), "regularizers": [R1(1.0)]}


def dcgan_acgan() -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    """Auxiliary classifier with the class loss in both phases, under adaptive augmentation."""
    g = DCGANGenerator(latent_dim=8, channels=1, image_size=28, ngf=8, num_classes=3, conditioning=LabelConcat())
    d = DCGANDiscriminator(channels=1, image_size=28, ndf=8, norm="spectral", num_classes=3,
                           conditioning=AuxiliaryClassifier())
    return g, d, {"train_dataloaders": _images(classes=3)}, {
        "regularizers": [ClassLoss(1.0)], "augment": AdaptiveAugment(p_init=0.5, interval=1)}


SETUPS: dict[str, Callable[[], tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]]] = {
    "mlp_2d": mlp_2d,
    "mlp_regs": mlp_regularized,
    "dcgan_bn": dcgan_batchnorm,
    "dcgan_sn": dcgan_spectral,
    "dcgan_aug": dcgan_augmented,
    "dcgan_acgan": dcgan_acgan,
}


def _d_buffer_keys(setup: str, state: dict[str, Tensor]) -> set[str]:
    """The D state entries that are buffers, not weights (what the G phase is most likely to leak into)."""
    if setup == "dcgan_bn":
        keys = {k for k in state if "running_" in k or "num_batches_tracked" in k}
    elif setup in ("dcgan_sn", "dcgan_aug", "dcgan_acgan"):
        # The head maps to one output: its u is the constant [1] and, until its weight first changes, v is
        # already converged, so only the convolutions' vectors are bound to move in every D phase.
        keys = {k for k in state if (k.endswith("._u") or k.endswith("._v")) and not k.startswith("head.")}
    else:
        keys = set()
    assert keys or setup.startswith("mlp"), f"{setup}: D should have buffers, found only {sorted(state)}"
    return keys


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Lazily trains each (setup, d_step) once for the whole module."""
    return {}


def _run(runs: dict, make_trainer, setup: str, d_step: str) -> list[dict[str, Any]]:
    if (setup, d_step) not in runs:
        torch.manual_seed(0)
        g, d, data, extra = SETUPS[setup]()
        model = PhaseSpy(g, d, loss="non_saturating", d_step=d_step, n_critic=N_CRITIC, **extra)
        model.records = []
        trainer = make_trainer(MAX_STEPS)
        trainer.fit(model, **data)
        assert trainer.global_step == MAX_STEPS
        runs[(setup, d_step)] = model.records
    return runs[(setup, d_step)]


@pytest.mark.parametrize("d_step", ["joint", "split"])
@pytest.mark.parametrize("setup", list(SETUPS))
class TestPhases:
    def test_phases_alternate(self, runs, make_trainer, setup, d_step):
        records = _run(runs, make_trainer, setup, d_step)
        assert [r["phase"] for r in records] == (["d"] * N_CRITIC + ["g"]) * MAX_STEPS
        assert all(r["real_batch"] == BATCH for r in records if r["phase"] == "d")

    def test_g_phase_leaves_discriminator_bit_identical(self, runs, make_trainer, setup, d_step):
        for r in (r for r in _run(runs, make_trainer, setup, d_step) if r["phase"] == "g"):
            assert changed(r["d0"], r["d1"]) == set(), "the G phase changed D's parameters or buffers"
            # ... and leaves D trainable again, in training mode.
            assert r["d_requires_grad"] and r["d_training"]

    def test_g_phase_changes_generator(self, runs, make_trainer, setup, d_step):
        for r in (r for r in _run(runs, make_trainer, setup, d_step) if r["phase"] == "g"):
            weights = {k for k, v in r["g0"].items() if k.endswith("weight") and v.dim() > 1}
            assert weights and weights <= changed(r["g0"], r["g1"])

    def test_g_phase_gradients_reach_generator_not_discriminator(self, runs, make_trainer, setup, d_step):
        for r in (r for r in _run(runs, make_trainer, setup, d_step) if r["phase"] == "g"):
            assert all(grad is None for grad in r["d_grads"]), "a gradient reached D's parameters in the G phase"
            assert all(grad is not None for grad in r["g_grads"].values())
            for name, grad in r["g_grads"].items():
                if name.endswith("weight") and grad.dim() > 1:
                    assert grad.abs().sum() > 0, f"G's {name} got an all-zero gradient"

    def test_d_phase_leaves_generator_bit_identical(self, runs, make_trainer, setup, d_step):
        for r in (r for r in _run(runs, make_trainer, setup, d_step) if r["phase"] == "d"):
            assert changed(r["g0"], r["g1"]) == set(), "the D phase changed G"
            assert all(grad is None for grad in r["g_grads"]), "a gradient reached G in the D phase"

    def test_d_phase_changes_discriminator(self, runs, make_trainer, setup, d_step):
        for r in (r for r in _run(runs, make_trainer, setup, d_step) if r["phase"] == "d"):
            diff = changed(r["d0"], r["d1"])
            weights = {k for k, v in r["d0"].items() if ("weight" in k or "original" in k) and v.dim() > 1}
            assert weights and weights <= diff
            # D's buffers do move in the D phase, so the G-phase check above can see a change if there is one.
            assert _d_buffer_keys(setup, r["d0"]) <= diff
