"""Feature extractors for the image metrics: images in, features (and class logits) out.

An extractor takes uint8 images ``(N, C, H, W)`` in 0..255 — exactly what ``sample`` writes, so a metric never
depends on how a caller scaled floats — and returns float features ``(N, F)``; ``logits`` gives class logits
``(N, K)`` for the Inception Score and conditional accuracy. ``name`` keys the reference-statistics cache;
``tag`` names the feature space in the metrics' keys (``gan_lightning.metrics.image.metric_key``): Inception-v3
values keep the names the literature uses (``fid``, ``kid``, ...), any other extractor's carry its tag
(``fid_mnist``), since an FID in another feature space is a different number on a different scale.

- ``DomainFeatures``: the project's domain classifier (``gan_lightning.metrics.classifier``), trained once on
  the real data and cached; works offline. Tag ``mnist`` (``mnist5k`` and ``MNIST``), ``fashion``, ``cifar10``.
- ``InceptionFeatures``: torch-fidelity's Inception-v3 (``inception-v3-compat``, the standard FID network);
  its weights download online, or come from ``weights_path`` offline. No tag: its values are *the* FID/KID.

Subclass ``FeatureExtractor`` for anything else and name it by ``class_path``; its values are tagged with the
lower-cased class name unless it sets ``tag``.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch
from torch import Tensor, nn

from gan_lightning.metrics.classifier import DATASETS, check_dataset, get_classifier, load_classifier
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.sampling.pixels import to_float


class FeatureExtractor(nn.Module):
    """Base: ``forward(uint8 images) -> features (N, F)``; ``logits(uint8 images) -> (N, K)`` or None."""

    name: str = "features"
    num_features: int = 0
    #: The protocol, one line for the JSON outputs: network, layer, resizing.
    description: str = "features of a user-defined extractor"

    @property
    def tag(self) -> str:
        """The suffix of this feature space in metric keys (``fid_<tag>``); ``""`` only for Inception-v3."""
        return type(self).__name__.lower()

    def prepare(self, device: torch.device | str = "cpu") -> "FeatureExtractor":
        """Load weights (lazily, so that parsing a config never trains or downloads) and move to ``device``."""
        return self.to(device).eval()

    def forward(self, images: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, images: Tensor) -> Optional[Tensor]:
        return None


def _check_uint8(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise UserError(f"feature extractor: expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")


# Metric-key tags of the domain classifiers: the two MNIST classifiers share one (the JSON's ``extractor`` names
# the exact weights).
DOMAIN_TAGS = {"mnist5k": "mnist", "MNIST": "mnist", "FashionMNIST": "fashion", "CIFAR10": "cifar10"}


class DomainFeatures(FeatureExtractor):
    """Penultimate features (128-d, after the ReLU) and logits of the domain classifier of a data set.

    Protocol: the images are taken at the data's own resolution (28x28 or 32x32; another size is refused, never
    resized), mapped from 0..255 to [-1, 1] as in training, and go through the classifier in eval mode. The
    values are comparable only between runs that use the same classifier weights (``name`` holds their digest)
    and are not comparable with Inception FIDs from papers; their keys carry the tag (``fid_mnist``,
    ``fid_fashion``, ``fid_cifar10``)."""

    def __init__(
        self,
        data: str = "mnist5k",             # Data set the classifier was trained on: mnist5k | MNIST | FashionMNIST | CIFAR10.
        root: str = "data",                # Where its real images are (torchvision layout), used only to train it once.
        path: Optional[str] = None,        # A classifier checkpoint to use instead of the cache.
    ) -> None:
        super().__init__()
        check_dataset(data, "extractor.data")
        self.data, self.root, self.path = data, root, path
        self.name = f"domain-{data}"
        self.description = (f"penultimate features of the {data} domain classifier at the data's resolution, "
                            "no resizing")
        self.net: Optional[nn.Module] = None

    @property
    def tag(self) -> str:
        return DOMAIN_TAGS[self.data]

    def prepare(self, device: torch.device | str = "cpu") -> "DomainFeatures":
        if self.net is None:
            if self.path:
                net, _ = load_classifier(self.path, str(device))
            else:
                net, _ = get_classifier(self.data, self.root, device=str(device))
            self.net = net.requires_grad_(False)
            # The cache key names the exact weights: a retrained or different classifier gets its own reference.
            digest = hashlib.sha1()
            for t in self.net.state_dict().values():
                digest.update(t.detach().cpu().contiguous().numpy().tobytes())
            self.name = f"domain-{self.data}-{digest.hexdigest()[:8]}"
            self.num_features = int(self.net.features(torch.zeros(1, *self._shape(), device=device)).shape[1])
        return self.to(device).eval()

    def _shape(self) -> tuple[int, int, int]:
        channels, size = DATASETS[self.data]
        return channels, size, size

    def _input(self, images: Tensor) -> Tensor:
        _check_uint8(images)
        if tuple(images.shape[1:]) != self._shape():
            raise UserError(
                f"extractor: the {self.data} classifier takes images of shape {self._shape()}, got {tuple(images.shape[1:])}; "
                "use the extractor of the data the model was trained on"
            )
        return to_float(images)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.net.features(self._input(images))

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        return self.net(self._input(images))


class InceptionFeatures(FeatureExtractor):
    """torch-fidelity's Inception-v3 (2048-d pool3 features, 1008-way logits): the network of the original FID
    (Heusel et al. 2017) and of the TensorFlow reference code, ported by torch-fidelity.

    Protocol: grayscale images are repeated to three channels; torch-fidelity resizes uint8 images to 299x299 with
    its bilinear interpolation that reproduces TensorFlow 1.x, *without* antialiasing, as the reference FID does.
    torchmetrics' ``FrechetInceptionDistance`` (>= 1.8) resizes *with* antialiasing by default, which shifts the
    value for images much smaller than 299; here torchmetrics only receives the features computed by
    torch-fidelity, so its resizing never runs and the numbers follow torch-fidelity's (and the papers') protocol.
    The keys have no tag: ``fid``, ``kid``, ``is``, ``precision``, ``recall``."""

    description = ("Inception-v3 pool3 (torch-fidelity inception-v3-compat), bilinear resize to 299x299 "
                   "without antialiasing (TensorFlow-compatible)")

    def __init__(
        self,
        weights_path: Optional[str] = None,  # Local pt_inception-2015-12-05 weights (offline); None = download.
    ) -> None:
        super().__init__()
        self.weights_path = weights_path
        self.name = "inception-v3-compat"
        self.num_features = 2048
        self.net: Optional[nn.Module] = None

    @property
    def tag(self) -> str:
        return ""

    def prepare(self, device: torch.device | str = "cpu") -> "InceptionFeatures":
        if self.net is None:
            import os

            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            if self.weights_path is not None and not os.path.isfile(self.weights_path):
                raise DataNotFound(f"extractor.weights_path: no Inception weights at {self.weights_path!r}")
            try:
                self.net = FeatureExtractorInceptionV3(
                    "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=self.weights_path
                )
            except Exception as err:  # noqa: BLE001 - a failed download is the user's to fix
                raise UserError(
                    f"extractor: could not load Inception-v3 weights ({type(err).__name__}); offline, set "
                    "extractor.weights_path to a local copy or use DomainFeatures"
                ) from None
        return self.to(device).eval()

    @staticmethod
    def _rgb(images: Tensor) -> Tensor:
        _check_uint8(images)
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.net(self._rgb(images))[0]

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        return self.net(self._rgb(images))[1]
