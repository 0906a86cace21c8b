"""ResNet generator and discriminator in the SNGAN style (Miyato et al. 2018; Miyato & Koyama 2018).

G: z -> linear to a ``4x4`` map (``7x7`` for 28x28) -> residual up-blocks (norm, ReLU, nearest upsample, 3x3
conv, twice) -> norm, ReLU, 3x3 conv, tanh. Its normalization layers come from the conditioning method, so
``ConditionalBatchNorm`` gives class-conditional BN. D: residual down-blocks with spectral norm, ReLU, global
sum pooling, a linear score; ``Projection`` adds the class projection on the pooled features.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning
from gan_lightning.nets.base import Discriminator, Generator, image_shape
from gan_lightning.nets.layers import check_choice, maybe_sn

SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}  # image size -> (start size, number of 2x stages)


def _stages(image_size: int, who: str) -> tuple[int, int]:
    if image_size not in SIZES:
        from gan_lightning.errors import UserError

        raise UserError(f"{who}.image_size: the ResNet networks support {sorted(SIZES)}, got {image_size}")
    return SIZES[image_size]


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every convolution and linear layer, as in SNGAN."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # Under spectral norm `m.weight` is recomputed on access: initialise the stored weight.
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.xavier_uniform_(weight)
            nn.init.zeros_(m.bias)


class GBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, conditioning: Conditioning) -> None:
        super().__init__()
        self.norm1, self.norm2 = conditioning.norm(in_ch), conditioning.norm(out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, h: Tensor, y: Tensor | None) -> Tensor:
        out = F.interpolate(F.relu(self.norm1(h, y)), scale_factor=2, mode="nearest")
        out = self.conv2(F.relu(self.norm2(self.conv1(out), y)))
        return out + self.skip(F.interpolate(h, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, norm: str, down: bool, first: bool) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = maybe_sn(nn.Conv2d(in_ch, out_ch, 3, 1, 1), norm)
        self.conv2 = maybe_sn(nn.Conv2d(out_ch, out_ch, 3, 1, 1), norm)
        self.skip = maybe_sn(nn.Conv2d(in_ch, out_ch, 1), norm) if (in_ch != out_ch or down) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)  # the first block sees the image itself
        h = self.conv2(F.relu(self.conv1(h)))
        skip = x
        if self.first:  # SNGAN's optimized first block: pool, then project
            skip = self.skip(F.avg_pool2d(x, 2)) if self.down else self.skip(x)
        else:
            skip = self.skip(x)
            skip = F.avg_pool2d(skip, 2) if self.down else skip
        return (F.avg_pool2d(h, 2) if self.down else h) + skip


class ResNetGenerator(Generator):
    """``(N, latent_dim)`` -> ``(N, channels, image_size, image_size)`` in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int = 128,                  # Size of z.
        channels: int = 3,                      # Image channels.
        image_size: int = 32,                   # 28, 32 or 64.
        ngf: int = 256,                         # Channels of every block (SNGAN CIFAR: 256).
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional; omitted: the data's.
        conditioning: Conditioning | None = None,  # e.g. ConditionalBatchNorm for class-conditional BN.
    ) -> None:
        super().__init__(latent_dim, image_shape(channels, image_size), num_classes, conditioning)
        self.start, stages = _stages(image_size, "generator")
        self.ngf = ngf
        self.project = nn.Linear(self.conditioning.latent_dim(latent_dim), ngf * self.start * self.start)
        extra = self.conditioning.map_channels()
        self.blocks = nn.ModuleList([GBlock(ngf + (extra if i == 0 else 0), ngf, self.conditioning) for i in range(stages)])
        self.norm = self.conditioning.norm(ngf)
        self.to_image = nn.Conv2d(ngf, channels, 3, 1, 1)
        _init_weights(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.project(self.conditioning.condition_latent(z, y)).view(z.shape[0], self.ngf, self.start, self.start)
        h = self.conditioning.condition_map(h, y)
        for block in self.blocks:
            h = block(h, y)
        return self.to_image(F.relu(self.norm(h, y))).tanh()


class ResNetDiscriminator(Discriminator):
    """``(N, channels, image_size, image_size)`` -> ``(N,)`` scores."""

    def __init__(
        self,
        channels: int = 3,                      # Image channels.
        image_size: int = 32,                   # 28, 32 or 64.
        ndf: int = 128,                         # Channels of every block (SNGAN CIFAR: 128).
        norm: Literal["spectral", "none"] = "spectral",  # spectral | none.
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional; omitted: the data's.
        conditioning: Conditioning | None = None,  # e.g. Projection for the projection discriminator.
    ) -> None:
        super().__init__(image_shape(channels, image_size), num_classes, conditioning)
        check_choice(norm, ("spectral", "none"), "discriminator.norm")
        _, stages = _stages(image_size, "discriminator")
        # As in SNGAN's 32x32 D: downsampling blocks to 8x8 (4x4 at 64, 7x7 at 28), then two that keep the size.
        downs = stages - 1
        blocks = [DBlock(self.input_channels, ndf, norm, down=True, first=True)]
        blocks += [DBlock(ndf, ndf, norm, down=i < downs - 1, first=False) for i in range(downs + 1)]
        self.blocks = nn.Sequential(*blocks)
        self.set_features(ndf, norm, init=_init_weights)

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
