"""gan_lightning: GANs and conditional GANs in PyTorch Lightning."""

from gan_lightning import strategies  # noqa: F401  (registers the gan_ddp strategies)
from gan_lightning.compat import drop_nvml_check_without_nvml
from gan_lightning.system import GAN

# Imported Lightning set it; on machines without NVIDIA's driver it costs every optimizer step a failed library load.
drop_nvml_check_without_nvml()

__version__ = "0.1.0"
__all__ = ["GAN"]
