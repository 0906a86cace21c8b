"""Image and toy metrics and the ``evaluate`` command.

Nothing here trains a real classifier or downloads anything: every test points ``GAN_LIGHTNING_CACHE`` at its
own temporary folder, which holds a tiny, randomly initialised mnist5k ``DomainClassifier`` (written once per
session with ``save_classifier``); ``train_classifier`` is patched to fail, so a cache miss cannot hide a slow
training run. Where the feature space does not matter, a fixed random projection of the pixels
(``PixelProjection``) stands in for the extractor.

The FID numbers are checked against torchmetrics' ``FrechetInceptionDistance`` run directly on the same uint8
images with the same extractor as its ``feature`` module, and against a scipy implementation of the formula.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import scipy.linalg
import torch
import yaml
from lightning.pytorch.loggers.logger import Logger
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from gan_lightning.metrics.callbacks import ImageMetrics
from gan_lightning.commands import main
from gan_lightning.conditioning import LabelConcat
from gan_lightning.data import EmbeddedMNIST
from gan_lightning.data.images import embedded_mnist
from gan_lightning.data.toy import toy_modes
from gan_lightning.metrics.classifier import DomainClassifier, classifier_path, save_classifier
from gan_lightning.metrics.classifier import training as classifier_training
from gan_lightning.metrics.features import DomainFeatures, FeatureExtractor
from gan_lightning.metrics.image import (
    METRICS,
    FeatureSet,
    compute,
    data_key,
    extract,
    gather_sorted,
    real_uint8,
    reference_cache_path,
    reference_features,
)
from gan_lightning.metrics.toy import mode_coverage
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator
from gan_lightning.sampling.pixels import to_uint8
from gan_lightning.sampling.draw import labels_for, noise_for
from gan_lightning.training.system import GAN

# torchmetrics' KID warns that it keeps every feature in memory; these sets are tiny.
pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")


# ------------------------------------------------------------------------------------------------ fixtures
class PixelProjection(FeatureExtractor):
    """Features = a fixed random projection of the pixels (uint8 images in, float features out); no logits."""

    def __init__(self, num_features: int = 16, shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        size = int(np.prod(shape))
        self.num_features = num_features
        self.name = f"pixel-projection-{num_features}-s{seed}"
        self.register_buffer("weight", torch.randn(size, num_features, generator=g) / math.sqrt(size))

    def forward(self, images: Tensor) -> Tensor:
        assert images.dtype == torch.uint8 and images.dim() == 4, (images.dtype, images.shape)
        return images.flatten(1).float().div(255.0) @ self.weight


def _must_not_train(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a test tried to train the domain classifier; the tiny cached one should have been used")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_classifier_file: Path) -> Path:
    """A fresh ``GAN_LIGHTNING_CACHE`` holding the tiny mnist5k classifier."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(root))
    dest = classifier_path("mnist5k")
    assert dest.is_relative_to(root)
    dest.parent.mkdir(parents=True)
    shutil.copy(tiny_classifier_file, dest)
    monkeypatch.setattr(classifier_training, "train_classifier", _must_not_train)
    return root


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor]:
    """The embedded MNIST subset (stored sorted by class) in a fixed shuffled order: uint8 (N, 1, 28, 28), labels."""
    images, labels = embedded_mnist()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    return images[order], labels[order]


def features_of(extractor: FeatureExtractor, images: Tensor, labels: Optional[Tensor] = None) -> FeatureSet:
    feats, logits = extract(extractor, images)
    return FeatureSet(feats, logits, labels)


def torchmetrics_fid(extractor: torch.nn.Module, real: Tensor, fake: Tensor) -> float:
    """FID computed by torchmetrics itself, the extractor being its feature network, on uint8 images."""
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


def scipy_fid(a: Tensor, b: Tensor) -> float:
    """The Fréchet distance of two feature sets, computed independently in float64 with scipy's sqrtm."""
    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ------------------------------------------------------------------------------------- 1. FID by registry
def test_fid_of_a_set_with_itself_is_zero_and_of_different_sets_is_large(digits):
    images, _ = digits
    ext = PixelProjection().prepare()
    a = features_of(ext, images[:600])
    b = features_of(ext, images[600:1200])
    noise = torch.randint(0, 256, (600, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    c = features_of(ext, noise)

    assert "fid" in METRICS
    same = compute(["fid"], a, a)
    assert set(same) == {"fid"}
    assert abs(same["fid"]) < 1e-3

    two_halves = compute(["fid"], a, b)["fid"]
    digits_vs_noise = compute(["fid"], a, c)["fid"]
    # Both agree with the textbook formula computed independently ...
    assert two_halves == pytest.approx(scipy_fid(a.features, b.features), rel=1e-4, abs=1e-6)
    assert digits_vs_noise == pytest.approx(scipy_fid(a.features, c.features), rel=1e-4)
    # ... and noise is far from digits, much farther than two halves of the digits are from each other.
    assert digits_vs_noise > 1.0
    assert digits_vs_noise > 50 * two_halves
    # FID is symmetric in its two sets.
    assert compute(["fid"], c, a)["fid"] == pytest.approx(digits_vs_noise, rel=1e-5)


def test_fid_equals_torchmetrics_with_the_extractor_as_its_feature_network(digits):
    images, _ = digits
    real, fake = images[:400], images[2500:2900].flip(-1)  # mirrored digits: a genuinely different set
    ext = PixelProjection(num_features=24, seed=3).prepare()
    ours = compute(["fid"], features_of(ext, fake), features_of(ext, real))["fid"]
    theirs = torchmetrics_fid(PixelProjection(num_features=24, seed=3), real, fake)
    assert ours > 1e-3
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)


def test_fid_with_the_domain_classifier_equals_torchmetrics(cache, digits):
    images, _ = digits
    real, fake = images[:300], images[300:600].roll(3, dims=-1)
    ext = DomainFeatures().prepare()
    assert ext.num_features == 16
    ours = compute(["fid"], features_of(ext, fake), features_of(ext, real))["fid"]
    assert ours == pytest.approx(torchmetrics_fid(ext, real, fake), rel=1e-5, abs=1e-6)


def test_kid_equals_torchmetrics_seeded_and_leaves_the_global_rng_alone(digits):
    images, _ = digits
    real, fake = images[:300], images[300:600].flip(-2)
    ext = PixelProjection().prepare()
    gen, ref = features_of(ext, fake), features_of(ext, real)
    state = torch.get_rng_state()
    ours = compute(["kid"], gen, ref, kid_subsets=20, kid_subset_size=100)
    assert torch.equal(torch.get_rng_state(), state), "computing KID moved the caller's RNG"
    assert compute(["kid"], gen, ref, kid_subsets=20, kid_subset_size=100) == ours  # a function of the features

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        kid = KernelInceptionDistance(feature=PixelProjection(), subsets=20, subset_size=100)
        kid.update(real, real=True)
        kid.update(fake, real=False)
        mean, std = kid.compute()
    assert ours["kid"] == pytest.approx(float(mean), rel=1e-5, abs=1e-7)
    assert ours["kid_std"] == pytest.approx(float(std), rel=1e-5, abs=1e-7)
    assert ours["kid"] > 0


# --------------------------------------------------------------------------- 2. the ImageMetrics callback
class Recorder(Logger):
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[Optional[int], dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        self.logged.append((step, dict(metrics)))


def tiny_cgan() -> GAN:
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=8, ngf=8, num_classes=10, conditioning=LabelConcat())
    d = DCGANDiscriminator(ndf=8, num_classes=10, conditioning=LabelConcat())
    return GAN(g, d, ema_decay=0.5)


def test_image_metrics_callback_matches_torchmetrics_on_the_same_images(cache, make_trainer, tmp_path):
    n, n_ref, seed, ref_seed = 200, 200, 5, 7
    model = tiny_cgan()
    data = EmbeddedMNIST(labels="class", batch_size=16)
    callback = ImageMetrics(every_n_steps=0, num_samples=n, num_reference=n_ref, seed=seed, reference_seed=ref_seed)
    recorder = Recorder()
    trainer = make_trainer(3, logger=recorder, callbacks=[callback])
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 3

    got = callback.last
    # Conditional model, default metrics: FID, conditional accuracy and intra-class FID; the distances are in the
    # mnist5k classifier's feature space and say so (Inception-v3's would be plain "fid").
    assert set(got) == {"fid_mnist", "accuracy", "intra_fid_mnist"}
    assert all(math.isfinite(v) for v in got.values()), got
    assert 0.0 <= got["accuracy"] <= 1.0
    # Logged under val/ at the final generator step, and written to <run dir>/metrics.json.
    final = [m for step, m in recorder.logged if step == 3 and "val/fid_mnist" in m]
    assert final and final[-1]["val/fid_mnist"] == got["fid_mnist"] and final[-1]["val/accuracy"] == got["accuracy"]
    assert not any("val/fid" in m for _, m in recorder.logged), "an FID on domain features logged as Inception's"
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["step"] == 3 and written["fid_mnist"] == pytest.approx(got["fid_mnist"], rel=1e-12)
    assert "fid" not in written
    # metrics.json says how the values were made: the extractor (weights' digest), its protocol, the counts.
    assert written["image_metrics"] == {"extractor": DomainFeatures().prepare().name,
                                        "features": DomainFeatures().description,
                                        "num_samples": n, "num_reference": n_ref}
    # The reference features went to the cache under GAN_LIGHTNING_CACHE.
    assert list((cache / "reference").glob("*.pt"))

    # The same images, made by hand: sample i has noise (seed, i) and label i mod 10; reals are the seeded subset.
    labels = labels_for(n, 10)
    with torch.no_grad():
        fake = to_uint8(model.generate(noise_for(torch.arange(n), model.latent_dim, model.latent_prior, seed), labels))
    real, _ = real_uint8(EmbeddedMNIST(labels="class"), n_ref, ref_seed)
    assert fake.dtype == real.dtype == torch.uint8 and fake.shape == real.shape == (n, 1, 28, 28)
    ext = DomainFeatures().prepare()
    assert got["fid_mnist"] == pytest.approx(torchmetrics_fid(ext, real, fake), rel=1e-5, abs=1e-6)
    accuracy = float((ext.logits(fake).argmax(1) == labels).double().mean())
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    # A different seed draws different images, hence (almost surely) a different FID: the seed is really used.
    with torch.no_grad():
        other = to_uint8(model.generate(noise_for(torch.arange(n), model.latent_dim, model.latent_prior, seed + 1), labels))
    assert torchmetrics_fid(ext, real, other) != pytest.approx(got["fid_mnist"], rel=1e-6)


# ------------------------------------------------------------------------------------ 3. reference cache
def test_reference_features_are_computed_once_then_read_from_the_cache(cache, digits):
    images, labels = digits
    ext = PixelProjection().prepare()
    key = {"dataset": "digits-test", "split": "train", "extractor": ext.name, "count": 300, "seed": 1}
    calls = []

    def images_fn() -> tuple[Tensor, Tensor]:
        calls.append(1)
        if len(calls) > 1:
            raise AssertionError("reference images were loaded again instead of read from the cache")
        return images[:300], labels[:300]

    path = reference_cache_path(**key)
    assert path.is_relative_to(cache) and not path.exists()
    first, cached = reference_features(images_fn, ext, key)
    assert cached is False and len(calls) == 1
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left behind"
    assert torch.equal(first.features, ext(images[:300]))
    assert torch.equal(first.labels, labels[:300]) and first.logits is None

    second, cached = reference_features(images_fn, ext, key)
    assert cached is True and len(calls) == 1
    assert torch.equal(second.features, first.features) and second.features.dtype == first.features.dtype
    assert torch.equal(second.labels, first.labels) and second.logits is None
    assert compute(["fid"], first, second)["fid"] == pytest.approx(0.0, abs=1e-3)


def test_reference_cache_stores_logits_and_an_explicit_cache_dir(cache, digits, tmp_path):
    images, labels = digits
    ext = DomainFeatures().prepare()
    key = {"dataset": "digits-test", "split": "train", "extractor": ext.name, "count": 50, "seed": 0}
    own = tmp_path / "own-cache"
    first, cached = reference_features(lambda: (images[:50], labels[:50]), ext, key, cache_dir=str(own))
    assert not cached and first.logits is not None and first.logits.shape == (50, 10)
    assert reference_cache_path(cache_dir=str(own), **key).is_file()
    assert not (cache / "reference").exists()  # the explicit folder was used instead of the default one
    second, cached = reference_features(lambda: 1 / 0, ext, key, cache_dir=str(own))
    assert cached and torch.equal(second.logits, first.logits) and torch.equal(second.features, first.features)


def test_reference_cache_key_separates_data_extractor_count_and_seed(cache):
    base = {"dataset": "mnist5k-1x28x28-abc", "split": "train", "extractor": "domain-mnist5k", "count": 100, "seed": 0}
    paths = {reference_cache_path(**base)}
    for field, value in [("dataset", "fashion-1x28x28-abc"), ("split", "test"), ("extractor", "inception-v3-compat"),
                         ("count", 200), ("seed", 1)]:
        paths.add(reference_cache_path(**{**base, field: value}))
    assert len(paths) == 6
    # The data key tells data sets and their options apart, and ignores loader settings.
    assert data_key(EmbeddedMNIST(batch_size=16)) == data_key(EmbeddedMNIST(batch_size=64))
    assert data_key(EmbeddedMNIST(labels="class")) != data_key(EmbeddedMNIST(labels="none"))
    assert data_key(EmbeddedMNIST(image_size=32)) != data_key(EmbeddedMNIST())


def test_reference_cache_tells_two_domain_classifiers_apart(cache, tmp_path, digits):
    """Two classifiers of the same data set are two feature spaces: reference features computed with one must
    not be served for the other: the cache is keyed by data set *and extractor*."""
    images, labels = digits
    other = tmp_path / "other.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        save_classifier(DomainClassifier(width=4, feature_dim=16).eval(), other, {"data": "mnist5k"})
    default, custom = DomainFeatures().prepare(), DomainFeatures(path=str(other)).prepare()
    assert not torch.equal(default(images[:10]), custom(images[:10]))

    def key(ext: FeatureExtractor) -> dict:
        return {"dataset": "digits-test", "split": "train", "extractor": ext.name, "count": 40, "seed": 0}

    reference_features(lambda: (images[:40], labels[:40]), default, key(default))
    ref, _ = reference_features(lambda: (images[:40], labels[:40]), custom, key(custom))
    assert torch.equal(ref.features, custom(images[:40])), "features of another classifier came from the cache"


# ------------------------------------------------------------------------------- 4. the evaluate command
CMNIST = {
    "seed_everything": 0,
    "model": {
        "generator": {"class_path": "gan_lightning.nets.DCGANGenerator",
                      "init_args": {"latent_dim": 8, "ngf": 8,
                                    "conditioning": {"class_path": "gan_lightning.conditioning.LabelConcat"}}},
        "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator",
                          "init_args": {"ndf": 8, "conditioning": {"class_path": "gan_lightning.conditioning.LabelConcat"}}},
        "ema_decay": 0.5,
    },
    "data": {"class_path": "gan_lightning.data.EmbeddedMNIST", "init_args": {"labels": "class", "batch_size": 16}},
    "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 3, "enable_progress_bar": False,
                "enable_model_summary": False},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A tiny class-conditional DCGAN fitted for 3 steps through the CLI."""
    root = tmp_path_factory.mktemp("evaluate")
    config = root / "cmnist.yaml"
    config.write_text(yaml.safe_dump(CMNIST))
    assert main(["fit", "--config", str(config), "--wandb=disabled", f"--run_dir={root / 'run'}"]) == 0
    path = root / "run" / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return str(path)


def evaluate(out: Path, *args: str) -> dict:
    assert main(["evaluate", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def same_number(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture
def environ_kept():
    """Puts ``os.environ`` back afterwards: Lightning's spawn launcher leaves MASTER_PORT set in the parent."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.slow
def test_evaluate_gives_the_same_numbers_on_one_and_two_processes(cache, checkpoint, tmp_path, environ_kept):
    # 101 samples: the two processes draw 51 and 50 (uneven shares), in batches of 32 (a ragged last batch).
    common = ["--ckpt_path", checkpoint, "--num", "101", "--num_reference", "120", "--batch_size", "32"]
    one = evaluate(tmp_path / "one.json", *common, "--devices", "1")
    two = evaluate(tmp_path / "two.json", *common, "--devices", "2")
    metrics = {"fid_mnist", "kid_mnist", "kid_std_mnist", "accuracy", "intra_fid_mnist"}
    assert metrics <= set(one)
    assert math.isfinite(one["fid_mnist"]) and one["fid_mnist"] > 0
    assert (one["num_samples"], one["num_reference"]) == (101, 120)
    assert (one["devices"], two["devices"]) == (1, 2)
    assert set(one) == set(two)
    for key in set(one) - {"devices"}:
        assert same_number(one[key], two[key]), f"{key}: {one[key]!r} on 1 process, {two[key]!r} on 2"


def test_evaluate_a_samples_file_written_by_sample(cache, checkpoint, tmp_path):
    npz = tmp_path / "s.npz"
    assert main(["sample", "--ckpt_path", checkpoint, "--num", "60", "--out", str(npz)]) == 0
    from_file = evaluate(tmp_path / "f.json", "--samples", str(npz), "--data", "gan_lightning.data.EmbeddedMNIST",
                         "--num_reference", "80")
    keys = ("fid_mnist", "kid_mnist", "accuracy", "intra_fid_mnist")
    assert set(keys) <= set(from_file)
    assert not {"fid", "kid", "intra_fid"} & set(from_file), "domain-feature values under Inception's names"
    assert from_file["source"] == str(npz) and from_file["num_reference"] == 80 and from_file["num_samples"] == 60
    assert from_file["extractor"] == DomainFeatures().prepare().name and "mnist5k" in from_file["features"]
    assert from_file["refined"] is False
    assert all(math.isfinite(from_file[k]) for k in keys)
    # `sample` and a checkpoint evaluation draw the same 60 images (same seed, labels evenly over classes) and
    # the data key ignores the loader's batch size, so the numbers agree.
    from_ckpt = evaluate(tmp_path / "c.json", "--ckpt_path", checkpoint, "--num", "60", "--num_reference", "80")
    assert from_ckpt["num_samples"] == 60 and from_ckpt["refinement"] is None
    for key in keys:
        assert from_file[key] == pytest.approx(from_ckpt[key], rel=1e-5, abs=1e-7), key
    # Only the metrics asked for.
    only = evaluate(tmp_path / "o.json", "--samples", str(npz), "--data", "gan_lightning.data.EmbeddedMNIST",
                    "--num_reference", "80", "--metrics=[fid]")
    assert "fid_mnist" in only and "kid_mnist" not in only and "accuracy" not in only


def test_evaluate_reports_the_reference_count_actually_used(cache, checkpoint, tmp_path):
    """Asked for more reference images than the data holds, the JSON gives the number used, not the request."""
    npz = tmp_path / "s.npz"
    assert main(["sample", "--ckpt_path", checkpoint, "--num", "20", "--out", str(npz)]) == 0
    available = len(EmbeddedMNIST().real_samples()[1])
    got = evaluate(tmp_path / "r.json", "--samples", str(npz), "--data", "gan_lightning.data.EmbeddedMNIST",
                   "--num_reference", str(available + 1000), "--metrics=[fid]")
    assert got["num_reference"] == available == 5000 and got["num_samples"] == 20


@pytest.mark.parametrize("case", ["both", "neither", "missing_ckpt", "missing_samples", "unknown_metric"])
def test_evaluate_bad_input_is_a_one_line_error(case, cache, tmp_path, capsys):
    npz = tmp_path / "s.npz"
    np.savez(npz, samples=np.zeros((4, 1, 28, 28), np.uint8))
    ckpt = tmp_path / "fake.ckpt"  # never opened: every case fails before any checkpoint is read
    ckpt.write_bytes(b"not a checkpoint")
    args, names = {
        "both": (["--ckpt_path", str(ckpt), "--samples", str(npz)], ["--ckpt_path", "--samples"]),
        "neither": ([], ["--ckpt_path", "--samples"]),
        "missing_ckpt": (["--ckpt_path", str(tmp_path / "nope.ckpt")], ["--ckpt_path", "nope.ckpt"]),
        "missing_samples": (["--samples", str(tmp_path / "nope.npz")], ["--samples", "nope.npz"]),
        "unknown_metric": (["--samples", str(npz), "--metrics=[fid,bogus]"], ["--metrics", "bogus"]),
    }[case]
    out = tmp_path / "r.json"
    rc = main(["evaluate", *args, "--data", "gan_lightning.data.EmbeddedMNIST", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    for name in names:
        assert name in err, (name, err)
    assert not out.exists()


# ----------------------------------------------------------------------------- 5. per-sample noise, gather
@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_sample_noise_depends_only_on_its_index_and_seed(prior):
    dim, n = 6, 2600  # crosses the 1,024-sample noise blocks twice
    everything = noise_for(torch.arange(n), dim, prior, seed=3)
    assert everything.shape == (n, dim)
    for i in (0, 1, 1023, 1024, 1500, 2599):
        alone = noise_for(torch.tensor([i]), dim, prior, seed=3)
        assert torch.equal(alone[0], everything[i]), i
    # Any subset, in any order (e.g. one process's share i = r mod W), gets the same rows.
    for rank in range(3):
        share = torch.arange(rank, n, 3)
        assert torch.equal(noise_for(share, dim, prior, seed=3), everything[share])
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:300]
    assert torch.equal(noise_for(shuffled, dim, prior, seed=3), everything[shuffled])
    # Different seeds give different noise for every sample; distinct samples get distinct noise.
    other = noise_for(torch.arange(n), dim, prior, seed=4)
    assert (other != everything).any(dim=1).all()
    assert len(torch.unique(everything, dim=0)) == n
    if prior == "uniform":
        assert everything.min() >= -1 and everything.max() <= 1
    else:
        assert abs(float(everything.mean())) < 0.05 and abs(float(everything.std()) - 1) < 0.05


def test_gather_sorted_orders_one_process_rows_by_index():
    index = torch.tensor([4, 0, 3, 1, 2])
    feats = torch.arange(10.0).view(5, 2)
    labels = torch.tensor([40, 0, 30, 10, 20])
    f, missing, y = gather_sorted(index, feats, None, labels)
    assert missing is None
    assert torch.equal(y, torch.tensor([0, 10, 20, 30, 40]))
    assert torch.equal(f, feats[[1, 3, 4, 2, 0]])


# --------------------------------------------------------------------------------- 6. toy mode coverage
@pytest.fixture
def ring() -> tuple[Tensor, float]:
    modes, sigma = toy_modes("ring")
    assert modes.shape == (8, 2) and sigma == pytest.approx(0.01)
    return modes, sigma


def test_mode_coverage_all_modes_hit_exactly(ring):
    modes, sigma = ring
    out = mode_coverage(modes.repeat(5, 1), modes, sigma)
    assert out["modes"] == 8
    assert out["high_quality"] == pytest.approx(100.0)
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_mode_coverage_two_of_eight_modes(ring):
    modes, sigma = ring
    points = torch.cat([modes[[0]].repeat(7, 1), modes[[5]].repeat(7, 1)])
    points = points + sigma * torch.tensor([[1.0, -1.0]]) / 2  # off the centre, still within 3 sigma
    out = mode_coverage(points, modes, sigma)
    assert out["modes"] == 2
    assert out["high_quality"] == pytest.approx(100.0)
    assert out["reverse_kl"] == pytest.approx(math.log(4), rel=1e-9)  # KL((1/2, 1/2, 0, ...) || uniform over 8)


def test_mode_coverage_points_far_away_are_not_high_quality(ring):
    modes, sigma = ring
    far = torch.tensor([[3.0, 3.0], [-5.0, 0.0], [0.0, 0.0]])
    out = mode_coverage(far, modes, sigma)
    assert out["modes"] == 0
    assert out["high_quality"] == 0.0
    # Half at a mode, half far away: 50% high quality, one mode, all of the good mass on it.
    out = mode_coverage(torch.cat([modes[[2]].repeat(3, 1), far]), modes, sigma)
    assert out["modes"] == 1 and out["high_quality"] == pytest.approx(50.0)
    assert out["reverse_kl"] == pytest.approx(math.log(8))


def test_mode_coverage_threshold_is_three_sigma(ring):
    modes, sigma = ring
    direction = modes[3] / modes[3].norm()  # radially outwards: the nearest mode stays mode 3
    inside = modes[3] + 2.9 * sigma * direction
    outside = modes[3] + 3.1 * sigma * direction
    assert mode_coverage(inside[None], modes, sigma)["high_quality"] == 100.0
    assert mode_coverage(outside[None], modes, sigma)["high_quality"] == 0.0
    grid, grid_sigma = toy_modes("grid")
    assert grid.shape == (25, 2)
    out = mode_coverage(grid + torch.tensor([2.5 * grid_sigma, 0.0]), grid, grid_sigma)
    assert out["modes"] == 25 and out["high_quality"] == 100.0 and out["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------- 7. class histogram
def logits_for(predicted: list[int], k: int = 10) -> Tensor:
    logits = torch.zeros(len(predicted), k)
    logits[torch.arange(len(predicted)), torch.tensor(predicted)] = 5.0
    return logits


def histogram(predicted: list[int]) -> dict[str, float]:
    gen = FeatureSet(torch.zeros(len(predicted), 2), logits_for(predicted))
    return compute(["class_histogram"], gen, FeatureSet(torch.zeros(3, 2)))


def test_class_histogram_collapse_and_uniform():
    collapsed = histogram([7] * 50)
    assert collapsed == {"classes_covered": 1.0, "class_entropy": pytest.approx(0.0, abs=1e-12)}
    uniform = histogram(list(range(10)) * 5)
    assert uniform["classes_covered"] == 10.0
    assert uniform["class_entropy"] == pytest.approx(1.0, rel=1e-6)
    two = histogram([1, 4] * 20)
    assert two["classes_covered"] == 2.0
    assert two["class_entropy"] == pytest.approx(math.log(2) / math.log(10), rel=1e-6)


def test_class_histogram_needs_logits():
    from gan_lightning.errors import UserError

    with pytest.raises(UserError, match="class_histogram"):
        compute(["class_histogram"], FeatureSet(torch.zeros(4, 2)), FeatureSet(torch.zeros(4, 2)))
