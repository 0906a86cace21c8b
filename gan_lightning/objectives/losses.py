"""GAN objectives: D's outputs in, the D-phase and G-phase losses out.

``model.loss`` takes a name from the table below or a ``class_path`` to any ``GANLoss`` subclass, defined in
the package or in the user's own module::

    class MyLoss(GANLoss):
        def d_real(self, real): ...             # D's loss term on its scores of real samples
        def d_fake(self, fake): ...             # ... and of generated samples
        def g(self, fake, real=None): ...       # G's loss; ``real`` only when ``uses_real_in_g``

Scores are raw discriminator outputs of shape ``(N,)``. A loss that pairs real and fake samples (such as the
relativistic loss) overrides ``d(real, fake)`` instead, sets ``separable = False`` (it cannot be split into a
real step and a fake step, ``d_step: split``) and ``uses_real_in_g = True`` (the G phase then also runs the
held-fixed D on the real batch, without gradient).

The gradient penalties and the auxiliary class loss are regularizers (``gan_lightning.objectives.regularizers``), not
losses.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import UserError

LOSSES: dict[str, type["GANLoss"]] = {}

LossName = Literal["minimax", "non_saturating", "hinge", "wasserstein", "least_squares", "relativistic"]


def register_loss(name: str) -> Callable[[type["GANLoss"]], type["GANLoss"]]:
    """Give a loss class a short name for ``model.loss`` (a ``class_path`` works without one)."""

    def add(cls: type[GANLoss]) -> type[GANLoss]:
        LOSSES[name] = cls
        cls.name = name
        return cls

    return add


def get_loss(loss: "str | GANLoss") -> "GANLoss":
    """A loss object from a name in ``LOSSES`` or an already built ``GANLoss``."""
    if isinstance(loss, GANLoss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise UserError(f"model.loss: unknown loss {loss!r}; choose one of {sorted(LOSSES)} or give a class_path "
                        "to a gan_lightning.objectives.GANLoss subclass")
    return LOSSES[loss]()


class GANLoss:
    """The D objective is ``d(D(x), D(G(z)))``, by default ``d_real(D(x)) + d_fake(D(G(z)))``; G minimises
    ``g(D(G(z)), D(x))``."""

    name: str = ""
    #: Whether D's output is a logit of "real", so that ``sigmoid`` gives D(x) as a probability.
    probabilistic: bool = False
    #: Whether ``d`` is ``d_real + d_fake`` (needed by ``d_step: split``).
    separable: bool = True
    #: Whether ``g`` needs D's scores on the real batch.
    uses_real_in_g: bool = False

    def d_real(self, real: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no separate real-sample term; use d_step: joint")

    def d_fake(self, fake: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no separate fake-sample term; use d_step: joint")

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError

    def d(self, real: Tensor, fake: Tensor) -> Tensor:
        return self.d_real(real) + self.d_fake(fake)

    def readout(self, logits: Tensor) -> Tensor:
        """D's output as logged in ``train/d_real`` and ``train/d_fake``: a probability where the loss has one."""
        return torch.sigmoid(logits) if self.probabilistic else logits

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_loss("minimax")
class MinimaxLoss(GANLoss):
    """The original objective (Goodfellow et al. 2014): G minimises the saturating log(1 - D(G(z)))."""

    probabilistic = True

    def d_real(self, real: Tensor) -> Tensor:
        return F.softplus(-real).mean()  # -log sigmoid(real)

    def d_fake(self, fake: Tensor) -> Tensor:
        return F.softplus(fake).mean()  # -log(1 - sigmoid(fake))

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        return -F.softplus(fake).mean()  # log(1 - sigmoid(fake))


@register_loss("non_saturating")
class NonSaturatingLoss(MinimaxLoss):
    """Same D; G maximises log D(G(z)) instead, which has strong gradients early in training."""

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        return F.softplus(-fake).mean()  # -log sigmoid(fake)


@register_loss("hinge")
class HingeLoss(GANLoss):
    """Lim & Ye 2017; Miyato et al. 2018."""

    def d_real(self, real: Tensor) -> Tensor:
        return F.relu(1.0 - real).mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return F.relu(1.0 + fake).mean()

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        return -fake.mean()


@register_loss("wasserstein")
class WassersteinLoss(GANLoss):
    """Arjovsky et al. 2017; pair it with the ``GradientPenalty`` regularizer (Gulrajani et al. 2017, weight 10)."""

    def d_real(self, real: Tensor) -> Tensor:
        return -real.mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return fake.mean()

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        return -fake.mean()


@register_loss("least_squares")
class LeastSquaresLoss(GANLoss):
    """Mao et al. 2017 with targets a=0 (fake), b=1 (real), c=1 (what G wants D to say)."""

    def d_real(self, real: Tensor) -> Tensor:
        return 0.5 * (real - 1.0).pow(2).mean()

    def d_fake(self, fake: Tensor) -> Tensor:
        return 0.5 * fake.pow(2).mean()

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        return 0.5 * (fake - 1.0).pow(2).mean()


@register_loss("relativistic")
class RelativisticLoss(GANLoss):
    """The relativistic pairing loss of R3GAN (Huang et al. 2024, "The GAN is dead; long live the GAN!"),
    after Jolicoeur-Martineau 2018: each real sample is paired with a generated one and D is asked by how much it
    prefers the real one: ``L_D = E[softplus(D(G(z)) - D(x))]``, ``L_G = E[softplus(D(x) - D(G(z)))]``. R3GAN
    pairs it with R1 and R2 (``gan_lightning.objectives.regularizers``). Needs ``d_step: joint``. D's raw scores are logged
    (a sigmoid of one score alone is not a probability here; ``sigmoid(D(x) - D(G(z)))`` would be)."""

    separable = False
    uses_real_in_g = True

    def d(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(fake - real).mean()

    def g(self, fake: Tensor, real: Optional[Tensor] = None) -> Tensor:
        if real is None:
            raise ValueError("RelativisticLoss.g needs D's scores on the real batch")
        return F.softplus(real - fake).mean()
