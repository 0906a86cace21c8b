"""gan_lightning: GANs and conditional GANs in PyTorch Lightning."""

from gan_lightning import strategies  # noqa: F401  (registers the gan_ddp strategies)
from gan_lightning.system import GAN

__version__ = "0.1.0"
__all__ = ["GAN"]
