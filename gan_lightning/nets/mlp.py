"""The fully connected GAN of Goodfellow et al. 2014, for 2D points and small images.

The class defaults are the PacGAN toy architecture (Lin et al. 2018): G has four hidden layers of 400 ReLU units
with batch norm; D has three hidden layers of 200 linear-maxout units. ``experiments/toy_*.yaml`` use a smaller G
without batch norm (3 x 128) and D (3 x 64 maxout), which match PacGAN's quality in under 3 minutes on a CPU.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from gan_lightning.conditioning import Conditioning
from gan_lightning.errors import UserError
from gan_lightning.nets.base import Discriminator, Generator, numel
from gan_lightning.nets.layers import Maxout, activation, check_choice, maybe_sn, out_activation


def _no_feature_maps(conditioning: Conditioning, role: str) -> None:
    """Refuse a conditioning method that needs feature maps, which fully connected networks do not have."""
    if getattr(conditioning, "needs_feature_maps", False):
        raise UserError(
            f"{role}.conditioning: {type(conditioning).__name__} needs feature maps, which MLP networks do not have; "
            "use a DCGAN or ResNet network"
        )


class MLPGenerator(Generator):
    """``(N, latent_dim)`` -> ``(N, *out_shape)``."""

    def __init__(
        self,
        out_shape: list[int] = [2],             # Sample shape: [D] for vectors, [C, H, W] for images.
        latent_dim: int = 2,                    # Size of z.
        hidden: list[int] = [400, 400, 400, 400],  # Width of each hidden layer.
        activation_fn: Literal["relu", "leaky_relu", "elu", "tanh"] = "relu",  # relu | leaky_relu | elu | tanh.
        norm: Literal["batch", "none"] = "batch",  # batch: batch norm after each hidden linear layer; none.
        out_activation_fn: Literal["none", "tanh"] = "none",  # none: data space as is (toy points); tanh: images in [-1, 1].
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional; omitted: the data's.
        conditioning: Conditioning | None = None,  # How labels enter (gan_lightning.conditioning).
    ) -> None:
        super().__init__(latent_dim, tuple(out_shape), num_classes, conditioning)
        check_choice(norm, ("batch", "none"), "generator.norm")
        _no_feature_maps(self.conditioning, "generator")
        width = self.conditioning.latent_dim(latent_dim)
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        for h in hidden:
            self.linears.append(nn.Linear(width, h))
            self.norms.append(self.conditioning.norm(h, dims=1) if norm == "batch" else None)
            self.acts.append(activation(activation_fn, "generator.activation_fn"))
            width = h
        self.out = nn.Linear(width, numel(self.out_shape))
        self.out_act = out_activation(out_activation_fn, "generator.out_activation_fn")

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.conditioning.condition_latent(z, y)
        for linear, norm, act in zip(self.linears, self.norms, self.acts):
            h = linear(h)
            if norm is not None:
                h = norm(h, y)
            h = act(h)
        return self.out_act(self.out(h)).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(Discriminator):
    """``(N, *in_shape)`` -> ``(N,)`` scores."""

    def __init__(
        self,
        in_shape: list[int] = [2],              # Sample shape: [D] for vectors, [C, H, W] for images.
        hidden: list[int] = [200, 200, 200],    # Width of each hidden layer.
        maxout_pieces: int = 5,                 # Linear-maxout pieces per unit; 0 = plain linear + activation.
        activation_fn: Literal["relu", "leaky_relu", "elu", "tanh"] = "leaky_relu",  # Used when maxout_pieces = 0.
        norm: Literal["none", "spectral"] = "none",  # none | spectral (spectral norm on every linear layer).
        dropout: float = 0.0,                   # Dropout before each hidden layer (Goodfellow et al. used 0.5 on images).
        num_classes: int = 0,                   # Number of class labels, 0 = unconditional; omitted: the data's.
        conditioning: Conditioning | None = None,  # How labels enter (gan_lightning.conditioning).
    ) -> None:
        super().__init__(tuple(in_shape), num_classes, conditioning)
        check_choice(norm, ("none", "spectral"), "discriminator.norm")
        _no_feature_maps(self.conditioning, "discriminator")
        width = numel(self.input_shape)  # the conditioned input, flattened
        layers: list[nn.Module] = []
        for h in hidden:
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            if maxout_pieces > 0:
                layers.append(Maxout(width, h, maxout_pieces, norm))
            else:
                layers += [maybe_sn(nn.Linear(width, h), norm), activation(activation_fn, "discriminator.activation_fn")]
            width = h
        self.body = nn.Sequential(*layers)
        self.set_features(width, norm)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(1))
