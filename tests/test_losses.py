"""Each loss and regularizer equals its formula, computed independently with ``math`` on hand-picked logits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from gan_lightning.errors import UserError
from gan_lightning.objectives.losses import LOSSES, GANLoss, get_loss
from gan_lightning.objectives.regularizers import ClassLoss, GradientPenalty, R1, R2, gradient_penalty, r1_penalty
from gan_lightning.nets import Discriminator, MLPGenerator
from gan_lightning.training.system import GAN

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


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_every_registered_loss_has_a_formula_here():
    assert set(LOSSES) == set(FORMULAS) | {"relativistic"}


def test_relativistic_loss_matches_formula():
    """R3GAN's relativistic pairing loss: L_D = E softplus(D(fake_i) - D(real_i)), L_G = E softplus(D(real_i) -
    D(fake_i)), over pairs (real_i, fake_i)."""
    loss = get_loss("relativistic")
    expected_d = mean(softplus(f - r) for r, f in zip(REAL, FAKE))
    expected_g = mean(softplus(r - f) for r, f in zip(REAL, FAKE))
    assert loss.d(t(REAL), t(FAKE)).item() == pytest.approx(expected_d, rel=1e-12)
    assert loss.g(t(FAKE), t(REAL)).item() == pytest.approx(expected_g, rel=1e-12)
    assert not loss.separable and loss.uses_real_in_g
    big = t([80.0, -80.0])
    assert torch.isfinite(loss.d(big, big.flip(0))) and torch.isfinite(loss.g(big, big.flip(0)))
    with pytest.raises(NotImplementedError, match="d_step: joint"):
        loss.d_real(t(REAL))


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


def test_loss_by_class_path_object_is_used_as_is():
    """A loss defined outside the package plugs in as an object (the CLI builds it from a class_path)."""

    class Doubled(GANLoss):
        def d_real(self, real):
            return 2 * real.mean()

        def d_fake(self, fake):
            return -2 * fake.mean()

        def g(self, fake, real=None):
            return 2 * fake.mean()

    loss = Doubled()
    assert get_loss(loss) is loss
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4])
    assert GAN(g, LinearCritic(torch.ones(2)), loss=loss).loss is loss


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
    if name in ("minimax", "non_saturating"):  # D(x) as a probability
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


def _fit_one_step(make_trainer, regularizers, loss="wasserstein", w0=(3.0, 4.0), d_step="joint"):
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8], norm="none")
    model = GAN(g, LinearCritic(torch.tensor(w0)), loss=loss, regularizers=regularizers, d_step=d_step)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 2)), batch_size=8)
    trainer = make_trainer(1)
    trainer.fit(model, train_dataloaders=data)
    return model, trainer


@pytest.mark.parametrize("d_step", ["joint", "split"])
def test_system_logs_each_regularizer_under_its_own_key(make_trainer, d_step):
    """One real training step with R1, R2 and the gradient penalty on D(x) = w.x, ||w||^2 = 25: each logs its
    unweighted value under its own key (R1 and R2: ||w||^2; GP: (||w|| - 1)^2). With ``d_step: split`` the fake
    step (R2) comes first and D steps before the real step computes R1 and GP with its updated w."""
    regs = [R1(gamma=2.0), R2(gamma=4.0), GradientPenalty(weight=10.0)]
    model, trainer = _fit_one_step(make_trainer, regs, d_step=d_step)
    m = trainer.callback_metrics
    assert m["train/r2"].item() == pytest.approx(25.0, rel=1e-5)
    if d_step == "joint":
        assert m["train/r1"].item() == pytest.approx(25.0, rel=1e-5)
        assert m["train/gp"].item() == pytest.approx((5.0 - 1.0) ** 2, rel=1e-5)
    else:
        assert m["train/r1"].item() != pytest.approx(25.0, rel=1e-5)
        assert 0 < m["train/r1"].item() and 0 < m["train/gp"].item()
    assert "train/d_penalty" not in m
    assert not torch.equal(model.discriminator.w.detach(), torch.tensor([3.0, 4.0]))  # D did step after computing them


def test_regularizer_terms_enter_d_loss_with_their_weights():
    """D's loss gradient with R1(gamma) + R2(gamma2) + GP(lambda) on D(x) = w.x equals the formula's gradient:
    d/dw [gamma/2 ||w||^2 + gamma2/2 ||w||^2 + lambda (||w|| - 1)^2] plus the Wasserstein terms."""
    from gan_lightning.objectives.regularizers import Context, Side

    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    real = torch.randn(8, 2, dtype=torch.float64).requires_grad_(True)
    fake = torch.randn(8, 2, dtype=torch.float64).requires_grad_(True)
    critic = lambda x, c=None: x @ w  # noqa: E731
    ctx = Context(Side(real, None, critic(real)), Side(fake, None, critic(fake)), critic=critic,
                  interpolation_weights=lambda n: torch.rand(n, dtype=torch.float64))
    total = R1(2.0).d_real(ctx) + R2(4.0).d_fake(ctx) + GradientPenalty(10.0).d_real(ctx)
    (grad,) = torch.autograd.grad(total, w)
    norm = 5.0
    expected = (2.0 + 4.0) * w.detach() + 10.0 * 2 * (norm - 1) * w.detach() / norm
    assert grad.tolist() == pytest.approx(expected.tolist(), rel=1e-9)
    assert set(ctx.stats) == {"r1", "r2", "gp"}


def test_class_loss_matches_cross_entropy_in_both_phases():
    """ClassLoss: weight * CE(D's class logits, labels) on real (D), fake (D) and fake (G), each logged."""
    from gan_lightning.objectives.regularizers import Context, Side

    logits_real = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], dtype=torch.float64)
    logits_fake = torch.tensor([[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]], dtype=torch.float64)
    y_real, y_fake = torch.tensor([0, 2]), torch.tensor([1, 1])

    def ce(logits, y):
        return mean(-(row[k] - math.log(sum(math.exp(v) for v in row))) for row, k in zip(logits.tolist(), y.tolist()))

    ctx = Context(Side(torch.zeros(2, 1), y_real, torch.zeros(2), logits_real),
                  Side(torch.zeros(2, 1), y_fake, torch.zeros(2), logits_fake), critic=None, interpolation_weights=None)
    loss = ClassLoss(weight=0.5)
    assert loss.d_real(ctx).item() == pytest.approx(0.5 * ce(logits_real, y_real), rel=1e-12)
    assert loss.d_fake(ctx).item() == pytest.approx(0.5 * ce(logits_fake, y_fake), rel=1e-12)
    assert loss.g(ctx).item() == pytest.approx(0.5 * ce(logits_fake, y_fake), rel=1e-12)
    assert ctx.stats["aux_real"].item() == pytest.approx(ce(logits_real, y_real), rel=1e-12)
    assert set(ctx.stats) == {"aux_real", "aux_fake", "aux_g"}


def test_config_mistakes_in_the_objective_are_one_line_errors():
    from gan_lightning.conditioning import AuxiliaryClassifier, LabelConcat
    from gan_lightning.nets import MLPDiscriminator

    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4])
    with pytest.raises(UserError, match=r"model\.d_step: RelativisticLoss"):
        GAN(g, LinearCritic(torch.ones(2)), loss="relativistic", d_step="split")
    with pytest.raises(UserError, match=r"R1\.gamma: must be >= 0"):
        R1(gamma=-1.0)
    gl = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[4], num_classes=3, conditioning=LabelConcat())
    d_aux = MLPDiscriminator(in_shape=[2], hidden=[4], num_classes=3, conditioning=AuxiliaryClassifier())
    with pytest.raises(UserError, match="class head but nothing trains it"):
        GAN(gl, d_aux)
    d_plain = MLPDiscriminator(in_shape=[2], hidden=[4], num_classes=3, conditioning=LabelConcat())
    with pytest.raises(UserError, match="the discriminator has none"):
        GAN(gl, d_plain, regularizers=[ClassLoss()])
    with pytest.raises(UserError, match=r"model\.regularizers\[0\]"):
        GAN(g, LinearCritic(torch.ones(2)), regularizers=["R1"])
