"""Networks behind two small contracts (``base.Generator``, ``base.Discriminator``), one architecture a file.

``Discriminator`` is also a template: an architecture implements ``features(x)`` and declares its size with
``set_features`` in ``__init__``; the base class owns the score head and the conditioning hooks around them.
"""

from gan_lightning.nets.base import Discriminator, Generator
from gan_lightning.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_lightning.nets.mlp import MLPDiscriminator, MLPGenerator
from gan_lightning.nets.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = [
    "Generator",
    "Discriminator",
    "MLPGenerator",
    "MLPDiscriminator",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "ResNetGenerator",
    "ResNetDiscriminator",
]
