"""The training system: the GAN LightningModule and what its step uses (holding a network fixed, the EMA
generator, learning-rate schedules, argument checks) and the distributed strategies.

Class paths for YAMLs: ``gan_lightning.training.GAN``, ``gan_lightning.training.LinearDecay``,
``gan_lightning.training.RankConsistency``, ``gan_lightning.training.StepProgressBar``; strategies ``gan_ddp`` and ``gan_ddp_spawn`` are registered on import.
"""

from gan_lightning.runtime.compat import drop_nvml_check_without_nvml
from gan_lightning.training import strategies  # noqa: F401  (registers the gan_ddp strategies)
from gan_lightning.training.progress import StepProgressBar
from gan_lightning.training.schedules import LinearDecay
from gan_lightning.training.strategies import GANDDPStrategy, RankConsistency
from gan_lightning.training.system import GAN

# Lightning, imported above, sets it; on machines without NVIDIA's driver it costs every optimizer step a failed
# library load. Every way to train goes through this package (the GAN is defined here), so this is the place.
drop_nvml_check_without_nvml()

__all__ = ["GAN", "LinearDecay", "GANDDPStrategy", "RankConsistency", "StepProgressBar"]
