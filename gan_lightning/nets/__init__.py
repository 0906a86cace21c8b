"""Networks behind two small contracts (``base.Generator``, ``base.Discriminator``), one architecture a file.

``Discriminator`` is also a template: an architecture implements ``features(x)`` and declares its size with
``set_features`` in ``__init__``; the base class owns the score head and the conditioning hooks around them.
"""

from gan_lightning.nets.base import Discriminator, Generator
from gan_lightning.nets.biggan import BigGANConditionalBatchNorm, BigGANDiscriminator, BigGANGenerator
from gan_lightning.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_lightning.nets.mlp import MLPDiscriminator, MLPGenerator
from gan_lightning.nets.r3gan import ClassEmbedding, ClassProjection, R3GANDiscriminator, R3GANGenerator
from gan_lightning.nets.resnet import ResNetDiscriminator, ResNetGenerator
from gan_lightning.nets.stylegan2 import LabelEmbedding, MappedProjection, StyleGAN2Discriminator, StyleGAN2Generator

__all__ = [
    "Generator",
    "Discriminator",
    "MLPGenerator",
    "MLPDiscriminator",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "ResNetGenerator",
    "ResNetDiscriminator",
    "BigGANGenerator",
    "BigGANDiscriminator",
    "BigGANConditionalBatchNorm",
    "StyleGAN2Generator",
    "StyleGAN2Discriminator",
    "LabelEmbedding",
    "MappedProjection",
    "R3GANGenerator",
    "R3GANDiscriminator",
    "ClassEmbedding",
    "ClassProjection",
]
