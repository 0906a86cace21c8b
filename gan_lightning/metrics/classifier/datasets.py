"""The real data the domain classifier learns from: the data sets it knows (``DATASETS``) and their splits."""

from __future__ import annotations

import torch
from torch import Tensor

from gan_lightning.errors import DataNotFound, UserError

# Data sets the classifier knows, with their native (channels, image_size): it is trained at the data's own
# resolution so that generated images of a model trained on that data need no resizing.
DATASETS: dict[str, tuple[int, int]] = {
    "MNIST": (1, 28),
    "FashionMNIST": (1, 28),
    "CIFAR10": (3, 32),
    "mnist5k": (1, 28),  # The embedded 5,000-digit subset; no test split, so a fixed 1,000 are held out.
}
MNIST5K_HELD_OUT = 1000


def check_dataset(name: str, field: str = "data set") -> tuple[int, int]:
    """``(channels, image_size)`` of a known data set; a UserError naming ``field`` otherwise."""
    if name not in DATASETS:
        raise UserError(f"{field}: unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def load_split(name: str, root: str, split: str) -> tuple[Tensor, Tensor]:
    """The real images of one split as uint8 ``(N, C, H, W)`` and int64 labels ``(N,)``, held in memory.

    ``mnist5k`` has no test split: a fixed, seed-independent 1,000 of its 5,000 images form ``test`` and the
    other 4,000 ``train``.
    """
    channels, size = check_dataset(name)
    if name == "mnist5k":
        from gan_lightning.data.images import embedded_mnist

        images, labels = embedded_mnist()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(12345))
        keep = order[:MNIST5K_HELD_OUT] if split == "test" else order[MNIST5K_HELD_OUT:]
        return images[keep], labels[keep]
    from gan_lightning.data.images import TorchvisionImages

    dm = TorchvisionImages(name=name, root=root, split=split, image_size=size, channels=channels)
    dm.setup("fit")
    return dm.train_set.data, dm.train_set.labels


def as_root_flag(err: DataNotFound) -> DataNotFound:
    """The data module's missing-files error, reworded for a command whose flag is ``--root`` (no download)."""
    msg = str(err).replace(", or set data.download: true with internet", "").replace("data.root", "--root")
    return DataNotFound(msg)
