"""Each loss and regularizer equals its formula, computed independently with ``math`` on hand-picked logits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from gan_lightning.errors import UserError
from gan_lightning.losses import LOSSES, get_loss, gradient_penalty, r1_penalty
from gan_lightning.nets import Discriminator, MLPGenerator
from gan_lightning.system import GAN

REAL = [2.0, -0.5, 0.0, 3.5]   # D's logits on real samples
FAKE = [-1.5, 0.25, 1.0, -4.0]  # D's logits on generated samples


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def relu(v: float) -> float:
    return max(0.0, v)


# name -> (d_real, d_fake, g), each a function of one logit, averaged over the batch.
FORMULAS = {
    "minimax": (
        lambda r: -math.log(sigmoid(r)),        # -log D(x)
        lambda f: -math.log(1.0 - sigmoid(f)),  # -log(1 - D(G(z)))
        lambda f: math.log(1.0 - sigmoid(f)),   # G minimises log(1 - D(G(z))): saturating
    ),
    "non_saturating": (
        lambda r: -math.log(sigmoid(r)),
        lambda f: -math.log(1.0 - sigmoid(f)),
        lambda f: -math.log(sigmoid(f)),        # G minimises -log D(G(z))
    ),
    "hinge": (
        lambda r: relu(1.0 - r),
        lambda f: relu(1.0 + f),
        lambda f: -f,
    ),
    "wasserstein": (
        lambda r: -r,
        lambda f: f,
        lambda f: -f,
    ),
    "least_squares": (
        lambda r: 0.5 * (r - 1.0) ** 2,
        lambda f: 0.5 * f**2,
        lambda f: 0.5 * (f - 1.0) ** 2,
    ),
}


def t(values) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_every_registered_loss_has_a_formula_here():
    assert set(LOSSES) == set(FORMULAS)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_loss_matches_formula(name):
    loss = get_loss(name)
    d_real, d_fake, g = FORMULAS[name]
    assert loss.d_real(t(REAL)).item() == pytest.approx(mean(map(d_real, REAL)), rel=1e-12, abs=1e-12)
    assert loss.d_fake(t(FAKE)).item() == pytest.approx(mean(map(d_fake, FAKE)), rel=1e-12, abs=1e-12)
    assert loss.g(t(FAKE)).item() == pytest.approx(mean(map(g, FAKE)), rel=1e-12, abs=1e-12)
    expected_d = mean(map(d_real, REAL)) + mean(map(d_fake, FAKE))
    assert loss.d(t(REAL), t(FAKE)).item() == pytest.approx(expected_d, rel=1e-12)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_loss_is_stable_at_extreme_logits(name):
    """Softplus forms stay finite where log(sigmoid) would give log(0)."""
    loss = get_loss(name)
    big = t([80.0, -80.0])
    for value in (loss.d_real(big), loss.d_fake(big), loss.g(big)):
        assert torch.isfinite(value)


def test_minimax_generator_saturates_and_non_saturating_does_not():
    """Early in training D rejects fakes (very negative logits): log(1 - D(G(z))) then has a vanishing gradient,
    -log D(G(z)) a gradient of about -1 per logit."""
    fake = t([-10.0]).requires_grad_(True)
    (grad_minimax,) = torch.autograd.grad(get_loss("minimax").g(fake), fake)
    fake = t([-10.0]).requires_grad_(True)
    (grad_ns,) = torch.autograd.grad(get_loss("non_saturating").g(fake), fake)
    # d/df log(1 - sigmoid(f)) = -sigmoid(f); d/df -log sigmoid(f) = -(1 - sigmoid(f))
    assert grad_minimax.item() == pytest.approx(-sigmoid(-10.0), rel=1e-9)
    assert grad_ns.item() == pytest.approx(-(1.0 - sigmoid(-10.0)), rel=1e-9)
    assert abs(grad_minimax.item()) < 1e-4 < 0.99 < abs(grad_ns.item())


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_readout(name):
    logits = t(REAL)
    out = get_loss(name).readout(logits)
    if name in ("minimax", "non_saturating"):
        assert out.tolist() == pytest.approx([sigmoid(v) for v in REAL], rel=1e-12)
    else:  # critic values and least-squares scores are not probabilities: shown as they are
        assert torch.equal(out, logits)


def test_unknown_loss_names_the_field():
    with pytest.raises(UserError, match=r"model\.loss") as err:
        get_loss("vanilla")
    assert "non_saturating" in str(err.value)  # lists the choices
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4])
    with pytest.raises(UserError, match=r"model\.loss"):
        GAN(g, LinearCritic(torch.ones(2)), loss="vanilla")


# ----------------------------------------------------------------------------- regularizers


class LinearCritic(Discriminator):
    """D(x) = w . x: its input gradient is w everywhere."""

    def __init__(self, w: Tensor) -> None:
        super().__init__(in_shape=tuple(w.shape))
        self.w = nn.Parameter(w.clone())

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return x.flatten(1) @ self.w.flatten().to(x.dtype)


W_CASES = [[3.0, 4.0], [0.6, 0.8], [0.1, -0.2], [1.0, 2.0, -2.0]]


@pytest.mark.parametrize("w", W_CASES)
def test_gradient_penalty_of_a_linear_critic(w):
    w = t(w)
    norm = math.sqrt(sum(v * v for v in w.tolist()))
    real, fake = torch.randn(16, len(w), dtype=torch.float64), torch.randn(16, len(w), dtype=torch.float64)
    w_param = w.clone().requires_grad_(True)
    gp = gradient_penalty(lambda x: x @ w_param, real, fake)
    assert gp.item() == pytest.approx((norm - 1.0) ** 2, abs=1e-9)
    # Differentiable in D's weights (create_graph): d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
    (grad,) = torch.autograd.grad(gp, w_param)
    assert grad.tolist() == pytest.approx((2 * (norm - 1.0) * w / norm).tolist(), abs=1e-7)


@pytest.mark.parametrize("w", W_CASES)
def test_r1_penalty_of_a_linear_critic(w):
    w = t(w)
    real = torch.randn(16, len(w), dtype=torch.float64).requires_grad_(True)
    r1 = r1_penalty(real @ w, real)
    assert r1.item() == pytest.approx(sum(v * v for v in w.tolist()), rel=1e-12)


def test_penalties_of_images_use_the_whole_sample():
    """For (N, C, H, W) inputs the gradient norm is over all of C*H*W, per sample."""
    w = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    sq = float(w.pow(2).sum())
    real = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    fake = torch.randn_like(real)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((math.sqrt(sq) - 1) ** 2, abs=1e-9)
    real.requires_grad_(True)
    assert r1_penalty(critic(real), real).item() == pytest.approx(sq, rel=1e-12)


@pytest.mark.parametrize(
    "weights, expected",
    [
        ({"r1_weight": 2.0}, lambda sq: 0.5 * 2.0 * sq),                          # gamma/2 * ||w||^2
        ({"gp_weight": 10.0}, lambda sq: 10.0 * (math.sqrt(sq) - 1.0) ** 2),      # lambda * (||w|| - 1)^2
        ({"gp_weight": 10.0, "r1_weight": 4.0}, lambda sq: 10.0 * (math.sqrt(sq) - 1.0) ** 2 + 2.0 * sq),
    ],
    ids=["r1", "gp", "gp+r1"],
)
def test_system_logs_weighted_penalty(make_trainer, weights, expected):
    """One real training step: the logged ``train/d_penalty`` is the weighted penalty of D before its update."""
    torch.manual_seed(0)
    w0 = torch.tensor([3.0, 4.0])
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8], norm="none")
    model = GAN(g, LinearCritic(w0), loss="wasserstein", **weights)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 2)), batch_size=8)
    trainer = make_trainer(1)
    trainer.fit(model, train_dataloaders=data)
    logged = trainer.callback_metrics["train/d_penalty"].item()
    assert logged == pytest.approx(expected(25.0), rel=1e-5)
    assert not torch.equal(model.discriminator.w.detach(), w0)  # D did step after computing it
