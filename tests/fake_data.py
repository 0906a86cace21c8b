"""Tiny fabricated MNIST and FashionMNIST in torchvision's raw layout, so that no test is skipped for want of data.

``write_fake_mnist(root, "MNIST")`` writes ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``: the
uncompressed IDX files torchvision's ``MNIST`` / ``FashionMNIST`` read (magic 2051 for images and 2049 for labels,
big-endian 32-bit sizes, then uint8 data). torchvision checks only that these four files exist (no checksum of the
raw files), so its own loading code runs unchanged on them.

The images carry their class: every class has its own shape, drawn at a random offset of up to 2 pixels with a
random brightness and background noise, so a small classifier trained on the training split classifies the test
split well above chance. MNIST's classes are a bar at 10 angles 18 degrees apart, FashionMNIST's a pair of
parallel bars at those angles. Every class is present in both splits (``train // 10`` and ``test // 10`` images each, shuffled), and
every image has pixels at 0 and at 255. The content is a pure function of the arguments.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SIZE = 28
NUM_CLASSES = 10
NAMES = ("MNIST", "FashionMNIST")
SPLITS = {"train": "train", "test": "t10k"}  # our split name -> torchvision's file prefix
# Images per split: a few hundred, a multiple of 10 so that the classes are balanced.
TRAIN, TEST = 300, 100


def _templates(name: str) -> np.ndarray:
    """``(10, 28, 28)`` float masks in [0, 1], one shape per class, centred."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) - (SIZE - 1) / 2
    masks = []
    for c in range(NUM_CLASSES):
        a = np.deg2rad(18.0 * c)
        along = xx * np.cos(a) + yy * np.sin(a)
        across = -xx * np.sin(a) + yy * np.cos(a)
        if name == "MNIST":  # one bar through the centre at 18 * c degrees, 18 px long, about 3 px wide
            mask = (np.abs(along) <= 9) & (np.abs(across) <= 1.5)
        else:  # two parallel bars 7 px apart at 18 * c degrees, 14 px long, about 2 px wide
            mask = (np.abs(along) <= 7) & (np.abs(np.abs(across) - 3.5) <= 1.0)
        masks.append(mask.astype(np.float64))
    return np.stack(masks)


def fake_split(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 28, 28)`` uint8 and labels ``(n,)`` uint8 of data set ``name`` (MNIST or FashionMNIST)."""
    if name not in NAMES:
        raise ValueError(f"no fake {name!r}; one of {NAMES}")
    if n % NUM_CLASSES:
        raise ValueError(f"n must be a multiple of {NUM_CLASSES}, got {n}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), n // NUM_CLASSES)).astype(np.uint8)
    masks = _templates(name)[labels]
    # Each image shifted by its own offset in [-2, 2]^2 (the masks are well inside the frame, so roll is a shift).
    shifts = rng.integers(-2, 3, size=(n, 2))
    shifted = np.stack([np.roll(m, tuple(s), axis=(0, 1)) for m, s in zip(masks, shifts)])
    brightness = rng.uniform(180, 255, size=(n, 1, 1))
    noise = rng.uniform(0, 40, size=(n, SIZE, SIZE))
    images = np.clip(shifted * brightness + (1 - shifted) * noise, 0, 255).round().astype(np.uint8)
    images[:, 0, 0] = 0  # the full 0..255 range in every image, as MNIST has
    images[:, SIZE // 2, SIZE // 2] = 255
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8, 1-d labels or 3-d images) as an uncompressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {1: LABEL_MAGIC, 3: IMAGE_MAGIC}[array.ndim]
    path.write_bytes(struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes())


def read_idx(path: Path) -> np.ndarray:
    """An uncompressed uint8 IDX file (labels or images), parsed without torchvision: for cross-checking."""
    data = Path(path).read_bytes()
    magic = struct.unpack(">I", data[:4])[0]
    if magic not in (IMAGE_MAGIC, LABEL_MAGIC):
        raise ValueError(f"{path}: magic {magic} is not an uint8 IDX file")
    ndim = magic & 0xFF
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def raw_files(root: Path, name: str, split: str) -> tuple[Path, Path]:
    """The images and labels files of ``split`` (train or test) of ``name`` under ``root``."""
    prefix = SPLITS[split]
    raw = Path(root) / name / "raw"
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def write_fake_mnist(root: Path, name: str, train: int = TRAIN, test: int = TEST, seed: int = 0) -> Path:
    """Writes ``root/<name>/raw/`` with both splits; returns ``root``."""
    (Path(root) / name / "raw").mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate((("train", train), ("test", test))):
        images, labels = fake_split(name, n, seed=seed * 1000 + 10 * NAMES.index(name) + i)
        images_file, labels_file = raw_files(root, name, split)
        write_idx(images_file, images)
        write_idx(labels_file, labels)
    return Path(root)


def write_fake_torchvision_data(root: Path) -> Path:
    """Fabricated MNIST and FashionMNIST under ``root``; returns ``root``."""
    for name in NAMES:
        write_fake_mnist(root, name)
    return Path(root)
