"""Metrics: mode coverage on toy data; image metrics follow SPEC §7."""

from gan_lightning.metrics.toy import mode_coverage

__all__ = ["mode_coverage"]
