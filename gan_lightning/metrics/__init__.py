"""Metrics and the callbacks that log them: mode coverage on the toy mixtures (``toy``); FID, KID, Inception
Score, precision/recall and the conditional-GAN metrics on images (``image``, ``features``, ``conditional``);
condition error of spatially conditioned generators (``spatial``); the domain classifier whose features the
image metrics use offline (``classifier``); the callbacks that sample and evaluate during
training (``callbacks``).

Class paths for YAMLs: ``gan_lightning.metrics.ImageMetrics``, ``gan_lightning.metrics.ToyMetrics``,
``gan_lightning.metrics.SampleGrid``.
"""

from gan_lightning.metrics.callbacks import ImageMetrics, SampleGrid, ToyMetrics
from gan_lightning.metrics.toy import mode_coverage

__all__ = ["mode_coverage", "ImageMetrics", "ToyMetrics", "SampleGrid"]
