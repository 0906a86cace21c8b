"""GAN objectives and regularizers, found by name.

A loss turns discriminator outputs into the D-phase terms (one on real samples, one on generated ones) and the
G-phase loss. Logits are raw discriminator outputs of shape ``(N,)``.

Add one with a decorator; a YAML then names it (``model.loss: my_loss``)::

    @register_loss("my_loss")
    class MyLoss(GANLoss):
        def d_real(self, real): ...
        def d_fake(self, fake): ...
        def g(self, fake): ...
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from gan_lightning.errors import UserError

LOSSES: dict[str, type["GANLoss"]] = {}


def register_loss(name: str) -> Callable[[type["GANLoss"]], type["GANLoss"]]:
    def add(cls: type[GANLoss]) -> type[GANLoss]:
        LOSSES[name] = cls
        cls.name = name
        return cls

    return add


def get_loss(name: str) -> "GANLoss":
    if name not in LOSSES:
        raise UserError(f"model.loss: unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]()


class GANLoss:
    """The D objective is ``d_real(D(x)) + d_fake(D(G(z)))``; G minimises ``g(D(G(z)))``."""

    name: str = ""
    #: Whether D's output is a logit of "real", so that ``sigmoid`` gives D(x) as a probability.
    probabilistic: bool = False

    def d_real(self, real: Tensor) -> Tensor:
        raise NotImplementedError

    def d_fake(self, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def g(self, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def d(self, real: Tensor, fake: Tensor) -> Tensor:
        return self.d_real(real) + self.d_fake(fake)

    def readout(self, logits: Tensor) -> Tensor:
        """D's output as logged in ``train/d_real`` and ``train/d_fake``: a probability where the loss has one."""
        return torch.sigmoid(logits) if self.probabilistic else logits


@register_loss("minimax")
class MinimaxLoss(GANLoss):
    """The original objective (Goodfellow et al. 2014): G minimises the saturating log(1 - D(G(z)))."""

    probabilistic = True

    def d_real(self, real: Tensor) -> Tensor:
        return F.softplus(-real).mean()  # -log sigmoid(real)

    def d_fake(self, fake: Tensor) -> Tensor:
        return F.softplus(fake).mean()  # -log(1 - sigmoid(fake))

    def g(self, fake: Tensor) -> Tensor:
        return -F.softplus(fake).mean()  # log(1 - sigmoid(fake))


@register_loss("non_saturating")
class NonSaturatingLoss(MinimaxLoss):
    """Same D; G maximises log D(G(z)) instead, which has strong gradients early in training."""

    def g(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake).mean()  # -log sigmoid(fake)


@register_loss("hinge")
class HingeLoss(GANLoss):
    """Lim & Ye 2017; Miyato et al. 2018."""

    def d_real(self, real: Tensor) -> Tensor:
        return F.relu(1.0 - real).mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return F.relu(1.0 + fake).mean()

    def g(self, fake: Tensor) -> Tensor:
        return -fake.mean()


@register_loss("wasserstein")
class WassersteinLoss(GANLoss):
    """Arjovsky et al. 2017; pair it with ``gp_weight`` (Gulrajani et al. 2017, weight 10)."""

    def d_real(self, real: Tensor) -> Tensor:
        return -real.mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return fake.mean()

    def g(self, fake: Tensor) -> Tensor:
        return -fake.mean()


@register_loss("least_squares")
class LeastSquaresLoss(GANLoss):
    """Mao et al. 2017 with targets a=0 (fake), b=1 (real), c=1 (what G wants D to say)."""

    def d_real(self, real: Tensor) -> Tensor:
        return 0.5 * (real - 1.0).pow(2).mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return 0.5 * fake.pow(2).mean()

    def g(self, fake: Tensor) -> Tensor:
        return 0.5 * (fake - 1.0).pow(2).mean()


def input_gradient_sq_norm(outputs: Tensor, inputs: Tensor) -> Tensor:
    """Per-sample squared L2 norm of d(sum outputs)/d(inputs), shape ``(N,)``, kept differentiable."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1).pow(2).sum(1)


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, eps: Tensor | None = None
) -> Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on interpolates ``x_hat = eps * real + (1 - eps) * fake``,
    ``eps ~ U(0, 1)`` per sample unless given (shape ``(N,)``)."""
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.view((real.shape[0],) + (1,) * (real.dim() - 1)).to(real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    norm = (input_gradient_sq_norm(discriminator(x_hat), x_hat) + 1e-12).sqrt()
    return (norm - 1.0).pow(2).mean()


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real samples; scaled by gamma/2 by the caller."""
    return input_gradient_sq_norm(real_logits, real).mean()
