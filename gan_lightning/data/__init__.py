"""Lightning data modules: toy 2D mixtures and images."""

from gan_lightning.data.base import GANDataModule, InMemory
from gan_lightning.data.images import EmbeddedMNIST, ImageFolderData, TorchvisionImages
from gan_lightning.data.toy import ToyDataModule

__all__ = ["GANDataModule", "InMemory", "ToyDataModule", "EmbeddedMNIST", "TorchvisionImages", "ImageFolderData"]
