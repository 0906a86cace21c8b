"""The domain classifier, the cache folder, the uint8 <-> [-1, 1] conversions and the conditional metrics, on
the embedded digits and hand-made tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from gan_lightning.runtime.cache import cache_root
from gan_lightning.metrics.classifier import (
    DomainClassifier,
    classifier_path,
    get_classifier,
    load_classifier,
    load_split,
    predict,
    train_classifier,
)
from gan_lightning.metrics.classifier import training as classifier_training
from gan_lightning.commands import main
from gan_lightning.errors import UserError
from gan_lightning.metrics.conditional import conditional_accuracy, diversity_ratio, per_class_accuracy, pixel_spread
from gan_lightning.metrics.image import reference_cache_path
from gan_lightning.sampling.pixels import to_float, to_uint8

TINY = dict(width=8, batch_size=64, verbose=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DomainClassifier, dict, Path]:
    """A tiny classifier trained for 200 steps on the 4,000 training digits of mnist5k."""
    out = tmp_path_factory.mktemp("clf") / "mnist5k.pt"
    model, meta = train_classifier("mnist5k", out=str(out), epochs=4, max_steps=200, **TINY)
    return model, meta, out


# ------------------------------------------------------------------------------------------ the network


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 8)])
def test_shapes(channels: int, size: int) -> None:
    net = DomainClassifier(channels=channels, image_size=size, num_classes=7, width=4, feature_dim=16)
    x = torch.rand(5, channels, size, size) * 2 - 1
    assert net(x).shape == (5, 7)
    assert net.features(x).shape == (5, 16)


def test_features_are_deterministic_in_eval_mode() -> None:
    net = DomainClassifier(width=4).eval()  # eval: BatchNorm running stats, no dropout.
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    assert torch.equal(net.features(x), net.features(x))
    # Per-sample: an image's features do not depend on the rest of its batch.
    torch.testing.assert_close(net.features(x[:2]), net.features(x)[:2])


def test_mnist5k_split_is_fixed_and_disjoint() -> None:
    x_train, y_train = load_split("mnist5k", "unused", "train")
    x_test, y_test = load_split("mnist5k", "unused", "test")
    assert (len(y_train), len(y_test)) == (4000, 1000)
    assert x_train.dtype == torch.uint8 and x_train.shape[1:] == (1, 28, 28)
    assert torch.equal(load_split("mnist5k", "unused", "test")[0], x_test)
    # No held-out image is also a training image.
    train_rows = {bytes(r) for r in x_train.flatten(1).numpy()}
    assert not any(bytes(r) in train_rows for r in x_test.flatten(1).numpy())


# ------------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_classifier_beats_chance_on_held_out_digits(trained) -> None:
    model, meta, out = trained
    assert meta["steps"] == 200
    assert meta["test_accuracy"] > 0.8  # chance is 0.1
    x_test, y_test = load_split("mnist5k", "unused", "test")
    assert float((predict(model, x_test) == y_test).double().mean()) == pytest.approx(meta["test_accuracy"])


@pytest.mark.slow
def test_checkpoint_round_trip(trained) -> None:
    model, meta, out = trained
    loaded, loaded_meta = load_classifier(out)
    assert not loaded.training
    assert loaded_meta["data"] == "mnist5k"
    assert loaded_meta["test_accuracy"] == meta["test_accuracy"]
    assert loaded.init_args() == model.init_args() == dict(channels=1, image_size=28, num_classes=10, width=8,
                                                           feature_dim=128)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the atomic write left no temporary file


def test_checkpoint_layout_is_read_as_written(tmp_path: Path) -> None:
    """A file in the cache's layout, written here by hand, loads: caches filled before keep working."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = DomainClassifier(width=4, feature_dim=16).eval()
    args = dict(channels=1, image_size=28, num_classes=10, width=4, feature_dim=16)
    path = tmp_path / "MNIST.pt"
    torch.save({"format": 1, "init_args": args, "state_dict": net.state_dict(), "data": "MNIST",
                "test_accuracy": 0.5}, path)
    loaded, meta = load_classifier(path)
    assert meta == {"data": "MNIST", "test_accuracy": 0.5}
    assert loaded.init_args() == args
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    torch.save({"format": 2, "init_args": args, "state_dict": net.state_dict()}, path)
    with pytest.raises(UserError, match="not written by this version"):
        load_classifier(path)


def test_training_is_seeded_and_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, _ = train_classifier("mnist5k", out=str(tmp_path / "a.pt"), max_steps=3, seed=5, **TINY)
    assert torch.equal(torch.rand(3), before)
    b, _ = train_classifier("mnist5k", out=str(tmp_path / "b.pt"), max_steps=3, seed=5, **TINY)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------------------------------------- cache


def test_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAN_LIGHTNING_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert classifier_path("MNIST") == tmp_path / "home" / ".cache" / "gan_lightning" / "classifiers" / "MNIST.pt"
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "cache"))
    assert classifier_path("MNIST") == tmp_path / "cache" / "classifiers" / "MNIST.pt"
    assert classifier_path("MNIST", tmp_path / "x") == tmp_path / "x" / "MNIST.pt"
    with pytest.raises(UserError, match="unknown data set 'mnist'"):
        classifier_path("mnist")


def test_cache_root_honours_its_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAN_LIGHTNING_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "gan_lightning"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "gan_lightning"
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"  # the override wins over XDG_CACHE_HOME
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", "~/mine")
    assert cache_root() == tmp_path / "home" / "mine"
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", "")  # empty counts as unset
    assert cache_root() == tmp_path / "xdg" / "gan_lightning"
    # Both caches live under it: classifiers and the reference features of the image metrics.
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "mine"))
    assert classifier_path("CIFAR10") == tmp_path / "mine" / "classifiers" / "CIFAR10.pt"
    assert reference_cache_path("MNIST", "train", "domain-MNIST", 10, 0).parent == tmp_path / "mine" / "reference"


def test_cache_trains_once_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path))
    calls = []
    real_train = classifier_training.train_classifier

    def counting_train(*args, **kwargs):
        calls.append(args)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(classifier_training, "train_classifier", counting_train)
    first, meta = get_classifier("mnist5k", max_steps=3, **TINY)
    path = tmp_path / "classifiers" / "mnist5k.pt"
    assert len(calls) == 1 and path.is_file()
    mtime = path.stat().st_mtime_ns

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained again although the cache holds a classifier")

    monkeypatch.setattr(classifier_training, "train_classifier", must_not_train)
    second, meta2 = get_classifier("mnist5k")
    assert path.stat().st_mtime_ns == mtime
    assert meta2["test_accuracy"] == meta["test_accuracy"]
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(second(x), first(x), rtol=0, atol=0)


def test_unreadable_checkpoint_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(UserError, match="bad.pt"):
        load_classifier(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_classifier(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------ uint8 <-> [-1, 1]


def test_to_float_maps_grey_levels_onto_minus_one_to_one_and_back() -> None:
    u = torch.arange(256, dtype=torch.uint8).view(4, 1, 8, 8)
    x = to_float(u)
    assert x.dtype == torch.float32 and x.shape == u.shape
    flat = x.flatten()
    assert flat[0].item() == -1.0 and flat[255].item() == 1.0  # exactly, not approximately
    torch.testing.assert_close(flat.double(), torch.arange(256, dtype=torch.float64) / 127.5 - 1, rtol=0, atol=1e-7)
    assert torch.equal(to_uint8(x), u)  # every grey level survives the round trip
    assert torch.equal(u.flatten(), torch.arange(256, dtype=torch.uint8))  # the input is left as it was


def test_to_float_passes_float_images_through_as_float32() -> None:
    x = torch.rand(2, 1, 3, 3) * 2 - 1
    assert to_float(x) is x
    y = to_float(x.double())
    assert y.dtype == torch.float32 and torch.equal(y, x)


def test_to_uint8_rounds_to_the_nearest_grey_level_and_clamps() -> None:
    levels = torch.arange(256, dtype=torch.float64)
    for offset in (-0.45, -0.2, 0.0, 0.2, 0.45):  # within half a grey level of level k: k is the nearest
        x = ((levels + offset) / 127.5 - 1).float()
        assert torch.equal(to_uint8(x), levels.to(torch.uint8)), offset
    # (x + 1) * 127.5 = 0, 0.1275, 254.6175 and 255.
    assert to_uint8(torch.tensor([-1.0, -0.999, 0.997, 1.0])).tolist() == [0, 0, 255, 255]
    # (x + 1) * 127.5 = -127.5, -1.275, 256.275 and 510: below 0 and above 255 are clamped, never wrapped.
    assert to_uint8(torch.tensor([-2.0, -1.01, 1.01, 3.0])).tolist() == [0, 0, 255, 255]
    assert to_uint8(torch.tensor([-0.6, 0.3])).tolist() == [51, 166]  # 51.0 and 165.75 -> 166


# ---------------------------------------------------------------------------------- conditional metrics


class FirstPixels(nn.Module):
    """Toy classifier: the logit of class k is pixel k of the first row, so we choose its answers by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x[:, 0, 0, :4] * self.scale


def toy_images(predicted: list[int]) -> Tensor:
    x = -torch.ones(len(predicted), 1, 4, 4)
    x[torch.arange(len(predicted)), 0, 0, torch.tensor(predicted)] = 1.0
    return x


def test_conditional_accuracy_matches_hand_count() -> None:
    predicted = [0, 1, 2, 3, 0, 1, 2, 3, 3, 3]
    requested = torch.tensor([0, 1, 2, 2, 0, 0, 2, 3, 1, 3])  # hits at 0, 1, 2, 4, 6, 7, 9 -> 7 of 10
    net = FirstPixels().train()
    assert conditional_accuracy(net, toy_images(predicted), requested, batch_size=3) == pytest.approx(0.7)
    assert net.training  # the caller's mode is restored
    # class 0: 2/3; class 1: 1/2; class 2: 2/3; class 3: 2/2
    assert per_class_accuracy(net, toy_images(predicted), requested) == pytest.approx({0: 2 / 3, 1: 0.5, 2: 2 / 3, 3: 1.0})
    # uint8 images (as `sample` writes them) are read as 0..255 -> [-1, 1]
    as_uint8 = ((toy_images(predicted) + 1) * 127.5).to(torch.uint8)
    assert conditional_accuracy(net, as_uint8, requested) == pytest.approx(0.7)


def test_conditional_accuracy_rejects_mismatched_labels() -> None:
    with pytest.raises(UserError, match="one label per image"):
        conditional_accuracy(FirstPixels(), toy_images([0, 1, 2]), torch.tensor([0, 1]))


def test_diversity_ratio_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(40, 1, 5, 5, generator=gen) * 2 - 1
    labels = torch.arange(40) % 4
    # Identical sets: exactly 1.
    assert diversity_ratio(real, labels, real, labels) == pytest.approx({c: 1.0 for c in range(4)})
    # Every sample of a class the same image: 0.
    collapsed = torch.stack([real[labels == c][0] for c in labels.tolist()])
    assert diversity_ratio(collapsed, labels, real, labels) == pytest.approx({c: 0.0 for c in range(4)})
    # Halving every image's distance to the class mean halves the spread.
    means = torch.stack([real[labels == c].mean(0) for c in labels.tolist()])
    half = means + 0.5 * (real - means)
    assert diversity_ratio(half, labels, real, labels) == pytest.approx({c: 0.5 for c in range(4)})
    # The spread itself: mean over pixels of the unbiased per-pixel standard deviation.
    x = torch.tensor([[[[0.0, 1.0]]], [[[2.0, 1.0]]], [[[4.0, 1.0]]]])
    assert pixel_spread(x) == pytest.approx((2.0 + 0.0) / 2)


def test_diversity_ratio_uint8_and_float_agree() -> None:
    real = torch.randint(0, 256, (30, 1, 6, 6), dtype=torch.uint8)
    labels = torch.arange(30) % 3
    as_float = real.float() / 127.5 - 1
    assert diversity_ratio(real, labels, as_float, labels) == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})


def test_diversity_ratio_needs_two_of_each() -> None:
    real = torch.rand(10, 1, 4, 4)
    with pytest.raises(UserError, match="class 9"):
        diversity_ratio(real[:2], torch.tensor([9, 9]), real, torch.zeros(10, dtype=torch.long))


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_bad_data_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["classifier", "--data", "MNSIT", "--root", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --data:") and "MNIST" in err and "\n" not in err


def test_cli_missing_root_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["classifier", "--data", "FashionMNIST", "--root", str(tmp_path), "--out", str(tmp_path / "c.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --root:") and "\n" not in err
    assert not (tmp_path / "c.pt").exists()


def test_cli_trains_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path))
    # One epoch of mnist5k at batch 1000 is 4 steps: the real command line, kept cheap.
    assert main(["classifier", "--data", "mnist5k", "--epochs", "1", "--batch_size", "1000", "--width", "4"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(tmp_path / "classifiers" / "mnist5k.pt") in out
    model, meta = load_classifier(tmp_path / "classifiers" / "mnist5k.pt")
    assert meta["steps"] == 4 and model.width == 4
