"""gan_lightning: GANs and conditional GANs in PyTorch Lightning."""

from gan_lightning.system import GAN

__version__ = "0.1.0"
__all__ = ["GAN"]
