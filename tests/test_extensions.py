"""Every extension point takes a class defined outside the package, named in a YAML by ``class_path``.

The classes live in ``tests/user_extensions.py`` (a user's own module). Each config is trained for a few steps
through the real command line (``gan_lightning.commands.main``, what ``python -m gan_lightning`` runs), then sampled
from its checkpoint with ``sample``; the checkpoint must rebuild the user's classes, and what they log and count
shows they ran. Augmentation and the adaptive probability are also checked against their definitions here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import user_extensions as ext
from gan_lightning.objectives.augment import AdaptiveAugment, DiffAugment, cutout, translation
from gan_lightning.commands import main
from gan_lightning.commands.checkpoints import load_gan

TRAINER = {"accelerator": "cpu", "devices": 1, "max_steps": 4, "log_every_n_steps": 1,
           "enable_progress_bar": False, "enable_model_summary": False}
MNIST = {"class_path": "gan_lightning.data.EmbeddedMNIST", "init_args": {"labels": "none", "batch_size": 16}}

CONFIGS = {
    # A user's generator, loss, regularizer and augmentation together (the discriminator is the package's).
    "nets_loss_reg_aug": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "user_extensions.TinyGenerator", "init_args": {"latent_dim": 8}},
            "discriminator": {"class_path": "user_extensions.TinyDiscriminator", "init_args": {"width": 8}},
            "loss": {"class_path": "user_extensions.MarginHinge", "init_args": {"margin": 0.5}},
            "regularizers": [{"class_path": "user_extensions.Drift", "init_args": {"eps": 0.01}},
                             {"class_path": "gan_lightning.objectives.R1", "init_args": {"gamma": 0.1}}],
            "augment": {"class_path": "user_extensions.Flip", "init_args": {"p": 0.5}},
        },
        "data": MNIST,
        "trainer": TRAINER,
    },
    # A new kind of condition (ink coverage, a continuous per-image scalar) on the package's networks.
    "ink_condition": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.DCGANGenerator",
                          "init_args": {"latent_dim": 8, "ngf": 8,
                                        "conditioning": {"class_path": "user_extensions.InkCondition"}}},
            "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator",
                              "init_args": {"ndf": 8, "norm": "spectral",
                                            "conditioning": {"class_path": "user_extensions.InkCondition"}}},
            "loss": "hinge",
            "augment": {"class_path": "gan_lightning.objectives.DiffAugment"},
            "ema_decay": 0.5,
        },
        "data": MNIST,
        "trainer": {**TRAINER, "callbacks": [{"class_path": "gan_lightning.metrics.SampleGrid",
                                               "init_args": {"every_n_steps": 0, "per_row": 4, "rows": 2}}]},
    },
}


def _fit(tmp_path: Path, name: str) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(CONFIGS[name]))
    run = tmp_path / name
    logger = ["--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run}",
              "--trainer.logger.init_args.name=", "--trainer.logger.init_args.version="]
    assert main(["fit", "--config", str(config), "--wandb=disabled", f"--run_dir={run}", *logger]) == 0
    return run


def _logged(run: Path) -> dict[str, list[float]]:
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    keys = rows[0].keys()
    return {k: [float(r[k]) for r in rows if r[k] != ""] for k in keys}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("extensions")
    return {name: _fit(root, name) for name in CONFIGS}


def test_user_generator_loss_regularizer_and_augmentation_train_and_sample(runs, tmp_path):
    run = runs["nets_loss_reg_aug"]
    model = load_gan(str(run / "checkpoints" / "last.ckpt"))
    # The checkpoint rebuilds the user's classes with their options.
    assert type(model.generator).__name__ == "TinyGenerator" and type(model.discriminator).__name__ == "TinyDiscriminator"
    assert type(model.loss).__name__ == "MarginHinge" and model.loss.margin == 0.5
    assert [type(r).__name__ for r in model.regularizers] == ["Drift", "R1"]
    # The augmentation saw every image D scored: 4 steps x (16 real + 16 fake in the D phase + 16 fake in G's).
    assert type(model.augment).__name__ == "Flip" and int(model.augment.seen) == 4 * 3 * 16
    logged = _logged(run)
    assert len(logged["train/drift"]) == 4 and all(v >= 0 for v in logged["train/drift"])
    assert len(logged["train/r1"]) == 4 and logged["train/flip_seen"][-1] == 4 * 3 * 16
    out = tmp_path / "s.npz"
    assert main(["sample", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--num", "6", "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["samples"].shape == (6, 1, 28, 28) and f["samples"].dtype == np.uint8
        assert set(f.files) == {"samples"}


def test_user_condition_kind_trains_grids_and_samples(runs, tmp_path):
    run = runs["ink_condition"]
    ckpt = str(run / "checkpoints" / "last.ckpt")
    model = load_gan(ckpt)
    assert type(model.conditioning).__name__ == "InkCondition" and model.conditional
    # The grid: 4 real images, their conditions drawn as images, and 2 rows of samples drawn from them.
    from PIL import Image

    grid = Image.open(run / "samples" / "step_000004.png")
    assert grid.size == (4 * 30 + 2, 4 * 30 + 2)  # 4 columns, 4 rows of 28px images with 2px padding
    # `sample` by default draws conditions from the training images; --condition_images takes the user's.
    out = tmp_path / "ink.npz"
    assert main(["sample", "--ckpt_path", ckpt, "--num", "5", "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["samples"].shape == (5, 1, 28, 28) and f["conditions"].shape == (5, 1)
        assert ((0 <= f["conditions"]) & (f["conditions"] <= 1)).all()
    images = np.zeros((2, 1, 28, 28), dtype=np.uint8)
    images[1, :, :14] = 255  # half the image inked
    np.savez(tmp_path / "cond.npz", images=images)
    out2 = tmp_path / "ink2.npz"
    assert main(["sample", "--ckpt_path", ckpt, "--num", "4", "--out", str(out2),
                 "--condition_images", str(tmp_path / "cond.npz")]) == 0
    with np.load(out2) as f:
        assert f["conditions"][:, 0].tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])
    # Class labels are refused for a condition that is not a label, in one line.
    assert main(["sample", "--ckpt_path", ckpt, "--num", "4", "--out", str(out2), "--labels", "[1]"]) == 2


def test_user_condition_is_paired_in_training():
    """Fakes are generated from the conditions of the real batch they are judged with."""
    cond = ext.InkCondition()
    cond.bind(0, "generator")
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    c = cond.from_batch(x, None)
    assert torch.allclose(c[:, 0], x.add(1).div(2).flatten(1).mean(1))
    assert cond.for_fakes(c, 6) is c


# ------------------------------------------------------------------------------------------------ augmentation
def test_diffaugment_is_differentiable_and_keeps_shape():
    torch.manual_seed(0)
    aug = DiffAugment()
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = aug(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    (grad,) = torch.autograd.grad(y.pow(2).sum(), x)
    assert grad.abs().sum() > 0


def test_translation_shifts_and_cutout_zeroes_a_square():
    torch.manual_seed(0)
    x = torch.arange(8 * 8, dtype=torch.float32).view(1, 1, 8, 8).repeat(64, 1, 1, 1) + 1
    shifted = translation(x, ratio=0.125)  # shifts of -1, 0 or 1 pixel per axis, zero padding
    for img in shifted[:, 0]:
        nz = img.nonzero()
        # what remains is the original content moved: each non-zero pixel equals the original at a shift
        dx = int((img[nz[0, 0], nz[0, 1]] - 1) // 8) - int(nz[0, 0])
        dy = int((img[nz[0, 0], nz[0, 1]] - 1) % 8) - int(nz[0, 1])
        assert abs(dx) <= 1 and abs(dy) <= 1
        for i, j in nz.tolist():
            assert img[i, j] == x[0, 0, i + dx, j + dy]
    cut = cutout(torch.ones(32, 1, 8, 8), ratio=0.5)
    zeros = (cut == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 16).all()  # at most a 4x4 square, clipped at the border


def test_augmentation_reaches_real_and_fake_in_both_phases(make_trainer):
    """Every D call goes through the augmentation: in the D phase on the real and the fake batch, in the G phase
    on the fakes; G's gradient passes through it."""
    from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator
    from gan_lightning.training.system import GAN

    calls: list[tuple[int, bool]] = []

    class Spy(DiffAugment):
        def forward(self, x):
            calls.append((x.shape[0], x.requires_grad))
            return super().forward(x)

    torch.manual_seed(0)
    model = GAN(DCGANGenerator(latent_dim=8, ngf=4), DCGANDiscriminator(ndf=4), augment=Spy())
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1), batch_size=8)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    make_trainer(2).fit(model, train_dataloaders=data)
    # per step: real (no grad), fake (detached in the D phase), fake with G's graph in the G phase
    assert calls == [(8, False), (8, False), (8, True)] * 2
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()) if a.dim() > 1)


@pytest.mark.parametrize("scores, direction", [(torch.full((32,), 3.0), 1), (torch.full((32,), -3.0), -1)],
                         ids=["overfitting", "underfitting"])
def test_adaptive_p_moves_with_the_sign_of_real_scores(scores, direction):
    """ADA: every `interval` D steps p moves by sign(E[sign D(x)] - target) * images / (speed_kimg * 1000)."""
    aug = AdaptiveAugment(target=0.6, interval=2, speed_kimg=0.64, p_init=0.5)
    aug.observe(scores)
    assert float(aug.p) == 0.5  # not yet: one D step of two
    aug.observe(scores)
    assert float(aug.p) == pytest.approx(0.5 + direction * 64 / 640)
    for _ in range(40):
        aug.observe(scores)
    assert float(aug.p) == (1.0 if direction > 0 else 0.0)  # clamped to [0, p_max]


def test_adaptive_augment_applies_each_op_with_probability_p():
    torch.manual_seed(0)
    aug = AdaptiveAugment(policy="cutout", p_init=0.0)
    x = torch.ones(400, 1, 8, 8)
    assert torch.equal(aug(x), x)  # p = 0: untouched
    aug.p.fill_(0.25)
    cut = (aug(x) == 0).flatten(1).any(1).float().mean()
    assert 0.18 < float(cut) < 0.32
    state = aug.state_dict()
    other = AdaptiveAugment(policy="cutout")
    aug.steps = 3
    other.load_state_dict(aug.state_dict())
    assert float(other.p) == 0.25 and other.steps == 3 and "p" in state
