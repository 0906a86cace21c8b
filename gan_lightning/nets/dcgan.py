"""DCGAN (Radford et al. 2016) for 28x28, 32x32 and 64x64 images, grayscale or RGB.

G projects z to a ``4x4`` (``7x7`` for 28x28) map and doubles the resolution with strided transposed
convolutions, halving the channels each time; batch norm and ReLU between, tanh at the end. D mirrors it with
strided convolutions and LeakyReLU(0.2), no normalization on its first layer.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning
from gan_lightning.nets.base import Discriminator, Generator, image_shape
from gan_lightning.nets.layers import D_NORMS, check_choice, maybe_sn
from gan_lightning.errors import UserError

SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # image size -> (start size, number of 2x stages)


def _stages(image_size: int, who: str) -> tuple[int, int]:
    if image_size not in SIZES:
        raise UserError(f"{who}.image_size: DCGAN supports {sorted(SIZES)}, got {image_size}")
    return SIZES[image_size]


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales, as in the DCGAN paper."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # Under spectral norm `m.weight` is recomputed on access: initialise the stored weight.
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(Generator):
    """``(N, latent_dim)`` -> ``(N, channels, image_size, image_size)`` in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int = 100,                  # Size of z.
        channels: int = 1,                      # Image channels: 1 grayscale, 3 RGB.
        image_size: int = 28,                   # 28, 32 or 64.
        ngf: int = 64,                          # Channels of the last hidden layer; doubled per stage towards z.
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional; omitted: the data's.
        conditioning: Conditioning | None = None,  # How labels enter (gan_lightning.conditioning).
    ) -> None:
        super().__init__(latent_dim, image_shape(channels, image_size), num_classes, conditioning)
        start, stages = _stages(image_size, "generator")
        width = ngf * 2 ** (stages - 1)
        self.start, self.width = start, width
        self.project = nn.Linear(self.conditioning.latent_dim(latent_dim), width * start * start, bias=False)
        self.norms = nn.ModuleList([self.conditioning.norm(width)])
        self.ups = nn.ModuleList()
        in_ch = width + self.conditioning.map_channels()
        for i in range(stages - 1):
            self.ups.append(nn.ConvTranspose2d(in_ch, width // 2, 4, 2, 1, bias=False))
            width //= 2
            in_ch = width
            self.norms.append(self.conditioning.norm(width))
        self.to_image = nn.ConvTranspose2d(in_ch, channels, 4, 2, 1)
        self.act = nn.ReLU()
        _init_weights(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.project(self.conditioning.condition_latent(z, y)).view(z.shape[0], self.width, self.start, self.start)
        h = self.conditioning.condition_map(self.act(self.norms[0](h, y)), y)
        for up, norm in zip(self.ups, self.norms[1:]):
            h = self.act(norm(up(h), y))
        return self.to_image(h).tanh()


class DCGANDiscriminator(Discriminator):
    """``(N, channels, image_size, image_size)`` -> ``(N,)`` scores."""

    def __init__(
        self,
        channels: int = 1,                      # Image channels: 1 grayscale, 3 RGB.
        image_size: int = 28,                   # 28, 32 or 64.
        ndf: int = 64,                          # Channels of the first layer; doubled per stage.
        norm: Literal["batch", "spectral", "none"] = "batch",  # batch | spectral | none (never on the first layer).
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional; omitted: the data's.
        conditioning: Conditioning | None = None,  # How labels enter (gan_lightning.conditioning).
    ) -> None:
        super().__init__(image_shape(channels, image_size), num_classes, conditioning)
        check_choice(norm, D_NORMS, "discriminator.norm")
        start, stages = _stages(image_size, "discriminator")
        layers: list[nn.Module] = [maybe_sn(nn.Conv2d(self.input_channels, ndf, 4, 2, 1), norm), nn.LeakyReLU(0.2)]
        width = ndf
        for _ in range(stages - 1):
            layers.append(maybe_sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm != "batch"), norm))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(width * 2))
            layers.append(nn.LeakyReLU(0.2))
            width *= 2
        self.body = nn.Sequential(*layers)
        self.set_features(width * start * start, norm, init=_init_weights)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)
