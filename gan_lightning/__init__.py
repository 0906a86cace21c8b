"""gan_lightning: GANs and conditional GANs in PyTorch Lightning."""

from gan_lightning.runtime.compat import drop_nvml_check_without_nvml
from gan_lightning.training import GAN

# Imported Lightning set it; on machines without NVIDIA's driver it costs every optimizer step a failed library load.
drop_nvml_check_without_nvml()

__version__ = "0.1.0"
__all__ = ["GAN"]
