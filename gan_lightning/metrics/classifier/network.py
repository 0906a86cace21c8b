"""The domain classifier's network, and batched prediction with any classifier."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_lightning.errors import UserError
from gan_lightning.sampling.pixels import to_float


class DomainClassifier(nn.Module):
    """Three conv blocks and a 2-layer head: images ``(N, C, H, W)`` in [-1, 1] -> logits ``(N, num_classes)``.

    ``features`` gives the penultimate activations ``(N, feature_dim)`` (after the ReLU): the feature space for
    FID/KID. BatchNorm makes them deterministic only in eval mode, which ``features`` callers should use.
    """

    def __init__(
        self,
        channels: int = 1,       # Image channels C.
        image_size: int = 28,    # Image height = width; at least 8 (three 2x poolings).
        num_classes: int = 10,   # Number of classes K.
        width: int = 32,         # Channels of the first conv block; the next two have 2 * width.
        feature_dim: int = 128,  # Size F of the penultimate features.
    ) -> None:
        super().__init__()
        if image_size < 8:
            raise UserError(f"classifier image_size: must be at least 8, got {image_size}")
        if min(channels, num_classes, width, feature_dim) < 1:
            raise UserError("classifier channels, num_classes, width and feature_dim must all be >= 1")
        self.channels, self.image_size, self.num_classes = int(channels), int(image_size), int(num_classes)
        self.width, self.feature_dim = int(width), int(feature_dim)

        def block(c_in: int, c_out: int) -> nn.Sequential:
            # No conv bias: BatchNorm's shift replaces it.
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        # 28 -> 14 -> 7 -> 3: the expensive full-resolution layer is kept narrow, which is what makes a CPU
        # epoch over MNIST take tens of seconds rather than minutes.
        self.body = nn.Sequential(block(channels, width), block(width, 2 * width), block(2 * width, 2 * width))
        side = image_size // 8
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, feature_dim), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, num_classes))

    def init_args(self) -> dict[str, int]:
        """The ``__init__`` arguments that rebuild this network."""
        return {"channels": self.channels, "image_size": self.image_size, "num_classes": self.num_classes,
                "width": self.width, "feature_dim": self.feature_dim}

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(N, feature_dim)`` for images ``(N, C, H, W)`` in [-1, 1]."""
        return self.fc(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` for images ``(N, C, H, W)`` in [-1, 1]."""
        return self.head(self.features(x))


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without parameters)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict(classifier: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted labels ``(N,)`` (int64, CPU) for images ``(N, C, H, W)``: uint8 0..255 or float in [-1, 1].

    Runs in eval mode in batches and puts the classifier's mode back afterwards.
    """
    was_training = classifier.training
    classifier.eval()
    device = device_of(classifier)
    try:
        out = [classifier(to_float(images[i : i + batch_size].to(device))).argmax(1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        classifier.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)
