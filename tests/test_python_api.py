"""The package from Python: the README's "From Python" section run as written, ``num_classes`` given once (or only
by the data), ``GAN.sample``, and checkpoints of GANs built in Python read by ``sample``, ``evaluate`` and
``load_gan`` like checkpoints of ``fit``.

The README section is read from ``README.md``, or from the file named by ``$GAN_LIGHTNING_README`` (to check a
section before it goes into README.md).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from gan_lightning import GAN
from gan_lightning.commands import main
from gan_lightning.commands.checkpoints import data_from_checkpoint, load_gan
from gan_lightning.conditioning import (AuxiliaryClassifier, ConditionalBatchNorm, LabelConcat, Projection, Recorded,
                                        SpatialCondition, describe)
from gan_lightning.data import EmbeddedMNIST
from gan_lightning.data.base import GANDataModule, InMemory
from gan_lightning.errors import UserError
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.objectives import R1, ClassLoss
from gan_lightning.sampling import LatentRefinement
from gan_lightning.sampling.draw import sample as draw_sample
from gan_lightning.sampling.pixels import to_uint8

REPO = Path(__file__).resolve().parents[1]
SMALL = {"latent_dim": 8, "ngf": 8}


def python_section(text: str, heading: str = "From Python") -> str:
    """The first fenced ```python block after the Markdown heading ``heading`` (and before the next heading of the
    same or a higher level)."""
    match = re.search(rf"^(#+)\s*{re.escape(heading)}\s*$", text, flags=re.MULTILINE)
    if match is None:
        raise AssertionError(f"no '## {heading}' heading")
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}}\s", rest, flags=re.MULTILINE)
    section = rest[: end.start()] if end else rest
    block = re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    if block is None:
        raise AssertionError(f"no ```python block in the '{heading}' section")
    return block.group(1)


def test_python_section_is_found_and_bounded():
    text = ("# t\n\n## Other\n```python\nx = 0\n```\n## From Python\n\nprose\n\n```python\na = 1\nb = 2\n```\n"
            "```python\nc = 3\n```\n## Next\n```python\nd = 4\n```\n")
    assert python_section(text) == "a = 1\nb = 2\n"
    with pytest.raises(AssertionError, match="no ```python block"):
        python_section("## From Python\n\ntext\n## Next\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="no '## From Python' heading"):
        python_section("## Elsewhere\n```python\nx = 1\n```\n")


def test_readme_from_python_section_runs_as_written(tmp_path, monkeypatch):
    readme = Path(os.environ.get("GAN_LIGHTNING_README", REPO / "README.md"))
    code = python_section(readme.read_text())
    code, count = re.subn(r"max_steps=\d+", "max_steps=2", code)
    assert count == 1, "the section's Trainer should name max_steps once"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, str(readme), "exec"), namespace)
    gan, samples, labels, generator = (namespace[k] for k in ("gan", "samples", "labels", "generator"))
    assert gan.trainer.global_step == 2 and gan.num_classes == 10  # from the data
    assert samples.shape == (100, 1, 28, 28) and samples.dtype == torch.float32
    assert torch.equal(labels, torch.arange(100) % 10)
    assert type(generator) is type(gan.generator)
    assert torch.equal(generator.sample(100, seed=0).samples, samples)
    assert sorted(os.listdir("cgan_mnist")) == ["README.md", "config.json", "model.safetensors"]
    saved = [p for p in Path(".").rglob("*.ckpt")]
    assert saved, "the section saves a checkpoint"
    assert torch.equal(load_gan(str(saved[0])).sample(100, seed=0).samples, samples)


class Labelled(GANDataModule):
    """``size`` random vectors or images in [-1, 1] with labels in ``[0, num_classes)``."""

    def __init__(self, shape: tuple[int, ...] = (2,), num_classes: int = 3, size: int = 48, batch_size: int = 8,
                 seed: int = 0, draws_per_step: int = 1) -> None:
        super().__init__(batch_size=batch_size, seed=seed, draws_per_step=draws_per_step)
        self.data_shape, self.num_classes, self.size = tuple(shape), int(num_classes), int(size)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is None:
            g = torch.Generator().manual_seed(self.seed)
            x = torch.rand(self.size, *self.data_shape, generator=g) * 2 - 1
            self.train_set = InMemory(x, torch.randint(0, max(self.num_classes, 1), (self.size,), generator=g))


def fit(gan: GAN, data: Any, root: Path, steps: int = 2) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                         default_root_dir=str(root))
    trainer.fit(gan, data)
    return trainer


# ------------------------------------------------------------------------------------------ num_classes, once
def test_networks_without_num_classes_wait_and_take_the_datas_on_fit(tmp_path):
    generator = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8], conditioning=ConditionalBatchNorm())
    discriminator = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=2, conditioning=Projection())
    assert generator.waits_for_classes and discriminator.waits_for_classes
    assert list(generator.parameters()) == []
    gan = GAN(generator, discriminator, ema_decay=0.5)
    assert gan.generator is generator and gan.generator_ema is None  # made once G is built
    with pytest.raises(UserError, match="wait for num_classes"):
        gan.sample(4)
    fit(gan, Labelled(num_classes=4), tmp_path)
    assert gan.generator is generator and not generator.waits_for_classes
    assert generator.num_classes == discriminator.num_classes == 4
    assert generator.conditioning.num_classes == 4 and discriminator.conditioning.embed.num_embeddings == 4
    assert gan.generator_ema is not None and gan.generator_ema.num_classes == 4
    recorded = gan.hparams["recorded"]
    assert recorded["generator"]["init_args"]["num_classes"] == 4
    assert recorded["discriminator"]["init_args"]["num_classes"] == 4
    assert recorded["data"]["class_path"].endswith("test_python_api.Labelled")


def test_waiting_networks_are_built_as_if_num_classes_had_been_given():
    """Built from the data, a network has exactly the weights it has when built with the same count under the
    same seed: waiting draws no random numbers."""
    def networks(classes: Optional[int]) -> tuple[Any, Any]:
        extra = {} if classes is None else {"num_classes": classes}
        torch.manual_seed(7)
        return (DCGANGenerator(**SMALL, conditioning=ConditionalBatchNorm(), **extra),
                DCGANDiscriminator(ndf=4, conditioning=LabelConcat(embedding="learned"), **extra))

    eager_g, eager_d = networks(3)
    waiting_g, waiting_d = networks(None)
    assert waiting_g.waits_for_classes and waiting_d.waits_for_classes
    waiting_g.build_with_classes(3, "data.num_classes")
    waiting_d.build_with_classes(3, "data.num_classes")
    for a, b in ((eager_g, waiting_g), (eager_d, waiting_d)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert describe(a) == describe(b)


def test_one_network_gives_num_classes_to_the_other():
    generator = DCGANGenerator(**SMALL, num_classes=5, conditioning=ConditionalBatchNorm())
    discriminator = DCGANDiscriminator(ndf=4, conditioning=Projection(classifier=True))
    assert discriminator.waits_for_classes
    gan = GAN(generator, discriminator, regularizers=[ClassLoss()])
    assert discriminator.num_classes == 5 and discriminator.conditioning.classifier.out_features == 5
    x, y = gan.sample(10, seed=0)
    assert torch.equal(y, torch.arange(10) % 5)
    reversed_gan = GAN(MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4], conditioning=LabelConcat()),
                       MLPDiscriminator(in_shape=[2], hidden=[4], num_classes=2, conditioning=AuxiliaryClassifier()),
                       regularizers=[ClassLoss()])
    assert reversed_gan.generator.num_classes == 2


def test_disagreeing_counts_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"generator\.num_classes=3 but discriminator\.num_classes=4"):
        GAN(DCGANGenerator(**SMALL, num_classes=3, conditioning=LabelConcat()),
            DCGANDiscriminator(ndf=4, num_classes=4, conditioning=LabelConcat()))
    gan = GAN(MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4], conditioning=LabelConcat()),
              MLPDiscriminator(in_shape=[2], hidden=[4], num_classes=4, conditioning=LabelConcat()))
    with pytest.raises(UserError, match=r"num_classes=4 but the data has 3 classes"):
        fit(gan, Labelled(num_classes=3), tmp_path)
    waiting = GAN(MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4], conditioning=LabelConcat()),
                  MLPDiscriminator(in_shape=[2], hidden=[4], conditioning=LabelConcat()))
    with pytest.raises(UserError, match=r"LabelConcat needs class labels; use data with labels: class"):
        fit(waiting, Labelled(num_classes=0), tmp_path)
    assert waiting.generator.waits_for_classes  # still waiting: a later fit on labelled data builds it
    with pytest.raises(UserError, match="the networks wait for num_classes but the data gives none"):
        fit(waiting, torch.utils.data.DataLoader(torch.zeros(8, 2)), tmp_path)
    fit(waiting, Labelled(num_classes=2), tmp_path)
    assert waiting.num_classes == 2


def test_unconditional_networks_and_explicit_counts_build_at_once():
    plain = DCGANGenerator(**SMALL)
    assert not plain.waits_for_classes and plain.num_classes == 0
    spatial = DCGANGenerator(**SMALL, conditioning=SpatialCondition())  # image conditions need no classes
    assert not spatial.waits_for_classes
    with pytest.raises(UserError, match="LabelConcat needs class labels"):
        DCGANGenerator(**SMALL, num_classes=0, conditioning=LabelConcat())  # 0 given: refused as before
    with pytest.raises(TypeError):
        DCGANGenerator(**SMALL, conditioning=LabelConcat(), bogus=1)  # Python's own message for a bad argument


# ------------------------------------------------------------------------------------------ GAN.sample
@pytest.fixture
def conditional(tmp_path) -> tuple[GAN, Path]:
    """A class-conditional DCGAN built in Python on the embedded MNIST subset (its data module saving its
    arguments), trained 2 steps with an EMA generator; and its checkpoint."""
    torch.manual_seed(0)
    gan = GAN(DCGANGenerator(**SMALL, conditioning=LabelConcat()),
              DCGANDiscriminator(ndf=8, conditioning=LabelConcat()), ema_decay=0.5, regularizers=[R1(gamma=1.0)])
    trainer = fit(gan, EmbeddedMNIST(batch_size=16), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    return gan, ckpt


def test_gan_sample_is_what_the_sample_command_draws(conditional, tmp_path):
    gan, ckpt = conditional
    out = tmp_path / "s.npz"
    assert main(["sample", "--ckpt_path", str(ckpt), "--num", "23", "--seed", "4", "--labels", "[7, 2]",
                 "--out", str(out)]) == 0
    drawn = gan.sample(23, labels=[7, 2], seed=4)
    with np.load(out) as saved:
        assert np.array_equal(saved["samples"], to_uint8(drawn.samples).numpy())
        assert np.array_equal(saved["labels"], drawn.conditions.numpy())
    assert torch.equal(drawn.conditions, torch.tensor([7, 2] * 11 + [7]))
    assert torch.equal(gan.sample(23, labels=torch.tensor([7, 2]), seed=4).samples, drawn.samples)
    default = gan.sample(12, seed=4)
    assert torch.equal(default.conditions, torch.arange(12) % 10)
    # Sample i has the same noise and label whatever n; the convolutions of a smaller batch may round differently.
    torch.testing.assert_close(gan.sample(2, seed=4).samples, default.samples[:2], rtol=1e-5, atol=1e-6)
    live = gan.generate(gan.sample_z(3), torch.tensor([1, 2, 3]), ema=False)
    assert live.shape == (3, 1, 28, 28)


def test_gan_sample_seed_none_follows_torchs_random_stream_and_truncation(conditional):
    gan, _ = conditional
    torch.manual_seed(11)
    a = gan.sample(6).samples
    torch.manual_seed(11)
    assert torch.equal(gan.sample(6).samples, a)
    assert not torch.equal(gan.sample(6).samples, a)
    truncated = gan.sample(6, seed=1, truncation=0.3).samples
    assert not torch.equal(truncated, gan.sample(6, seed=1).samples)
    assert torch.equal(truncated, gan.sample(6, seed=1, truncation=0.3).samples)


@pytest.mark.parametrize("kwargs,match", [
    ({"n": 0}, r"sample: n must be an integer >= 1"),
    ({"n": 3, "labels": [10]}, r"label 10 is outside \[0, 10\)"),
    ({"n": 3, "labels": torch.tensor([0.5])}, r"labels: expected class labels"),
    ({"n": 3, "seed": -1}, r"sample: seed must be an integer >= 0"),
    ({"n": 3, "truncation": 0.0}, r"truncation: the threshold psi must be a finite number > 0"),
    ({"n": 3, "condition_images": torch.zeros(2, 1, 28, 28)}, r"give --labels instead"),
])
def test_gan_sample_mistakes_are_one_line(conditional, kwargs, match):
    gan, _ = conditional
    with pytest.raises(UserError, match=match):
        gan.sample(**kwargs)


def test_image_conditions_come_from_the_fitted_data_or_are_given(tmp_path):
    torch.manual_seed(0)
    gan = GAN(DCGANGenerator(**SMALL, conditioning=SpatialCondition()),
              DCGANDiscriminator(ndf=4, conditioning=SpatialCondition()))
    with pytest.raises(UserError, match="takes its condition from images"):
        gan.sample(3)  # not fitted: no training images to take conditions from
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    given = gan.sample(3, seed=0, condition_images=images)
    assert torch.equal(given.conditions, SpatialCondition().from_images(images[[0, 1, 0]]))
    data = EmbeddedMNIST(labels="none", batch_size=16)
    fit(gan, data, tmp_path)
    drawn = gan.sample(5, seed=2)
    real, _ = data.real_samples(5, seed=2)
    assert torch.equal(drawn.conditions, gan.conditioning.from_images(real))


# ------------------------------------------------------------------------------------------ checkpoints from Python
def test_a_python_checkpoint_loads_like_one_from_fit(conditional):
    gan, ckpt = conditional
    model = load_gan(str(ckpt))
    assert not model.training and type(model.generator) is DCGANGenerator
    assert model.num_classes == 10 and model.latent_prior == gan.latent_prior and model.ema_decay == 0.5
    for a, b in ((model.generator_ema, gan.generator_ema), (model.discriminator, gan.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(model.sample(9, seed=3).samples, gan.sample(9, seed=3).samples)
    assert type(model.regularizers[0]) is R1  # rebuilt from its class path: it does not change the samples
    with pytest.raises(UserError, match=r"data\.num_classes=3 but generator\.num_classes=10"):
        model.generator.build_with_classes(3, "data.num_classes")
    data = data_from_checkpoint(str(ckpt))
    assert type(data) is EmbeddedMNIST and data.batch_size == 16 and data.num_classes == 10


def test_evaluate_reads_a_python_checkpoint_and_its_data(conditional, classifier_cache, tmp_path):
    _, ckpt = conditional
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--ckpt_path", str(ckpt), "--num", "20", "--num_reference", "20", "--batch_size", "10",
                 "--metrics", "[fid,accuracy]", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["source"] == str(ckpt) and 0.0 <= result["accuracy"] <= 1.0
    fid = [v for k, v in result.items() if k.startswith("fid")]  # named by the feature space (fid_mnist)
    assert len(fid) == 1 and np.isfinite(fid[0]) and fid[0] >= 0


class RecordedRefinement(LatentRefinement, metaclass=Recorded):
    """D-guided refinement whose class records its arguments, as the networks' classes do."""


class CallbackRefinement(LatentRefinement):
    """D-guided refinement that reports each step to a function: a function has no JSON form."""

    def __init__(self, on_step: Callable[[int], None] = print, steps: int = 2) -> None:
        super().__init__(steps=steps)
        self.on_step = on_step


def test_a_recorded_refinement_is_rebuilt_and_an_unrecorded_one_refused(tmp_path):
    for refinement in (RecordedRefinement(steps=3, step_size=0.05), CallbackRefinement(on_step=len)):
        torch.manual_seed(0)
        gan = GAN(MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4]),
                  MLPDiscriminator(in_shape=[2], hidden=[4], maxout_pieces=2), refinement=refinement)
        trainer = fit(gan, Labelled(num_classes=0), tmp_path)
        ckpt = tmp_path / f"{type(refinement).__name__}.ckpt"
        trainer.save_checkpoint(ckpt)
        if isinstance(refinement, RecordedRefinement):
            model = load_gan(str(ckpt))
            assert type(model.refinement) is RecordedRefinement and repr(model.refinement) == repr(refinement)
            refined = gan.sample(5, seed=0).samples
            assert torch.equal(model.sample(5, seed=0).samples, refined)
            assert not torch.equal(draw_sample(gan, 5, seed=0, refine=False).samples, refined)
        else:
            with pytest.raises(UserError, match=r"--ckpt_path: model\.refinement: .*CallbackRefinement"):
                load_gan(str(ckpt))
