"""What the two phases minimise: the adversarial losses, the regularizers added to either phase's loss, and the
differentiable augmentation of everything D sees.

Class paths for YAMLs are short: ``gan_lightning.objectives.R1``, ``gan_lightning.objectives.LeCam``,
``gan_lightning.objectives.PathLength``, ``gan_lightning.objectives.DiffAugment``,
``gan_lightning.objectives.GANLoss`` (for a loss of one's own).
"""

from gan_lightning.objectives.augment import AdaptiveAugment, Augment, DiffAugment
from gan_lightning.objectives.losses import GANLoss, get_loss, register_loss
from gan_lightning.objectives.regularizers import (ClassLoss, Context, GradientPenalty, LeCam, PathLength, R1,
                                                   R2, Regularizer, Side)

__all__ = ["GANLoss", "get_loss", "register_loss", "Regularizer", "Context", "Side", "R1", "R2",
           "GradientPenalty", "LeCam", "ClassLoss", "PathLength", "Augment", "DiffAugment", "AdaptiveAugment"]
