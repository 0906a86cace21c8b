"""Metrics: mode coverage on the toy mixtures (``toy``); FID, KID, Inception Score, precision/recall and the
conditional-GAN metrics on images (``image``, ``features``, ``conditional``); condition error of spatially
conditioned generators (``spatial``)."""

from gan_lightning.metrics.toy import mode_coverage

__all__ = ["mode_coverage"]
