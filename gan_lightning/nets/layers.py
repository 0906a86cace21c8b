"""Small building blocks shared by the architectures."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm
from gan_lightning.errors import UserError

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": lambda: nn.Tanh(),
    "elu": lambda: nn.ELU(),
}
OUT_ACTIVATIONS = {"tanh": nn.Tanh, "none": nn.Identity}
D_NORMS = ("none", "batch", "spectral")


def activation(name: str, field: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"{field}: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def out_activation(name: str, field: str) -> nn.Module:
    if name not in OUT_ACTIVATIONS:
        raise UserError(f"{field}: unknown output activation {name!r}; choose one of {sorted(OUT_ACTIVATIONS)}")
    return OUT_ACTIVATIONS[name]()


def check_choice(value: str, choices: tuple[str, ...], field: str) -> str:
    if value not in choices:
        raise UserError(f"{field}: must be one of {choices}, got {value!r}")
    return value


def maybe_sn(layer: nn.Module, norm: str) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018) on a weight layer when ``norm == 'spectral'``."""
    return spectral_norm(layer) if norm == "spectral" else layer


class Maxout(nn.Module):
    """Linear maxout (Goodfellow et al. 2013): ``pieces`` affine maps, elementwise max."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 5, norm: str = "none") -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = maybe_sn(nn.Linear(in_features, out_features * pieces), norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.out_features, self.pieces).amax(dim=2)
