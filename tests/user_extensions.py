"""Research ideas defined outside the package, as a user would in their own module: a loss, a regularizer, an
augmentation, a kind of condition, a generator and a discriminator. tests/test_extensions.py names them in
YAML configs by ``class_path`` and trains them through the real command line (with this folder on PYTHONPATH).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.objectives.augment import Augment
from gan_lightning.conditioning import ImageCondition
from gan_lightning.objectives.losses import GANLoss
from gan_lightning.nets.base import Discriminator, Generator
from gan_lightning.objectives.regularizers import Context, Regularizer


class MarginHinge(GANLoss):
    """The hinge loss with an adjustable margin: D minimises relu(m - D(x)) + relu(m + D(G(z)))."""

    def __init__(self, margin: float = 1.0) -> None:
        self.margin = float(margin)

    def d_real(self, real: Tensor) -> Tensor:
        return F.relu(self.margin - real).mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return F.relu(self.margin + fake).mean()

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        return -fake.mean()


class Drift(Regularizer):
    """Progressive GAN's drift penalty: eps * E[D(x)^2] on real scores keeps D's output near zero."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def d_real(self, ctx: Context) -> Tensor:
        drift = ctx.real.scores.pow(2).mean()
        ctx.stats["drift"] = drift.detach()
        return self.eps * drift


class Flip(Augment):
    """Mirror each image left-right with probability p (differentiable: a flip is a permutation). Counts the
    images it has seen in a buffer, so a checkpoint shows it was applied."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        self.seen += x.shape[0]
        flip = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p).to(x.dtype)
        return flip * x.flip(-1) + (1 - flip) * x

    def stats(self) -> dict[str, Tensor]:
        return {"flip_seen": self.seen.float()}


class InkCondition(ImageCondition):
    """A continuous condition computed from the image: its ink coverage, the mean of (x + 1) / 2, one scalar per
    image ``(N, 1)``. G gets it beside its noise; D gets it as a constant extra input channel."""

    kind = "ink"

    def from_images(self, x: Tensor) -> Tensor:
        return x.add(1).div(2).flatten(1).mean(1, keepdim=True)

    def latent_dim(self, latent_dim: int) -> int:
        return latent_dim + 1

    def condition_latent(self, z: Tensor, c: Optional[Tensor]) -> Tensor:
        return torch.cat([z, c.to(z.dtype)], dim=1)

    def input_channels(self, channels: int) -> int:
        return channels + 1

    def condition_input(self, x: Tensor, c: Optional[Tensor]) -> Tensor:
        return torch.cat([x, c.to(x.dtype)[:, :, None, None].expand(-1, 1, *x.shape[2:])], dim=1)

    def show(self, c: Tensor, like: Tensor) -> Tensor:
        return (c * 2 - 1)[:, :, None, None].expand_as(like)


class TinyGenerator(Generator):
    """z -> a 7x7 map -> two transposed convolutions -> 28x28 images in [-1, 1]."""

    def __init__(self, latent_dim: int = 16, width: int = 8, channels: int = 1, num_classes: int = 0,
                 conditioning=None) -> None:
        super().__init__(latent_dim, (channels, 28, 28), num_classes, conditioning)
        self.width = width
        self.project = nn.Linear(self.conditioning.latent_dim(latent_dim), width * 7 * 7)
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: Tensor, c: Optional[Tensor] = None) -> Tensor:
        h = self.project(self.conditioning.condition_latent(z, c))
        return self.up(h.view(z.shape[0], self.width, 7, 7))


class TinyDiscriminator(Discriminator):
    """Two strided convolutions: only its features and their size; the template adds the score head and the
    conditioning hooks."""

    def __init__(self, width: int = 8, channels: int = 1, num_classes: int = 0, conditioning=None) -> None:
        super().__init__((channels, 28, 28), num_classes, conditioning)
        self.body = nn.Sequential(nn.Conv2d(self.input_channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(width, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.set_features(width * 7 * 7)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class Notifier(__import__("lightning").pytorch.Callback):
    """A callback that takes a secret (say, a chat service's API key): it must never be written or logged."""

    def __init__(self, api_key: str = "", channel: str = "gans") -> None:
        self.api_key, self.channel = api_key, channel


class Pace(__import__("lightning").pytorch.Callback):
    """Sleeps ``seconds`` after every training step: a short run that lasts long enough to be interrupted mid-way
    on a machine of any speed."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        __import__("time").sleep(self.seconds)
