"""Regularizers as stateful modules: lazy input-gradient penalties (R1, R2, WGAN-GP every k D steps, weighted by
k), the LeCam regularizer's EMAs and term, their state in ``state_dict`` (and so in checkpoints), hooks that never
wait for the device, and the hook contract of the D step as the system runs it.
"""

from __future__ import annotations

import io
import re
from statistics import mean

import pytest
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from gan_lightning.data import ToyDataModule
from gan_lightning.errors import UserError
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.objectives import GradientPenalty, LeCam, R1, R2, Regularizer
from gan_lightning.objectives.regularizers import Context, Side
from gan_lightning.training.system import GAN

F64 = torch.float64
W = torch.tensor([[0.5, -1.0, 0.3], [0.8, 0.2, -0.7]], dtype=F64)
V = torch.tensor([1.0, -0.5, 2.0], dtype=F64)


def critic(x: torch.Tensor, c=None) -> torch.Tensor:
    """A small smooth D, so that input gradients differ from sample to sample."""
    return torch.tanh(x @ W) @ V


def make_ctx(seed: int) -> Context:
    """A D step's context on 6 real and 6 fake points (both inputs requiring grad) and fixed interpolation weights."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(6, 2, generator=g, dtype=F64).requires_grad_(True)
    fake = torch.randn(6, 2, generator=g, dtype=F64).requires_grad_(True)
    eps = torch.rand(6, generator=g, dtype=F64)
    return Context(Side(real, None, critic(real)), Side(fake, None, critic(fake)), critic=critic,
                   interpolation_weights=lambda n: eps[:n])


def sq_grad_norm(scores: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.pow(2).sum(1)


def r1_value(ctx: Context) -> torch.Tensor:
    return sq_grad_norm(ctx.real.scores, ctx.real.x).mean()


def r2_value(ctx: Context) -> torch.Tensor:
    return sq_grad_norm(ctx.fake.scores, ctx.fake.x).mean()


def gp_value(ctx: Context) -> torch.Tensor:
    eps = ctx.interpolation_weights(6).view(6, 1)
    x_hat = (eps * ctx.real.x.detach() + (1.0 - eps) * ctx.fake.x.detach()).requires_grad_(True)
    norm = (sq_grad_norm(critic(x_hat), x_hat) + 1e-12).sqrt()
    return (norm - 1.0).pow(2).mean()


# (constructor, hook, logged key, unweighted value written out here, weight, needs (real, fake) input grad)
LAZY = {
    "r1": (lambda every: R1(gamma=0.3, every=every), "d_real", r1_value, 0.5 * 0.3, (True, False)),
    "r2": (lambda every: R2(gamma=0.3, every=every), "d_fake", r2_value, 0.5 * 0.3, (False, True)),
    "gp": (lambda every: GradientPenalty(weight=10.0, every=every), "d_real", gp_value, 10.0, (False, False)),
}


@pytest.fixture
def grad_calls(monkeypatch):
    """Counts calls of torch.autograd.grad (the work a lazy penalty must skip on its off steps)."""
    calls = []
    original = torch.autograd.grad

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counted)
    return calls


# ------------------------------------------------------------------------------------------ lazy penalties
@pytest.mark.parametrize("key", LAZY)
def test_every_step_term_is_the_formula_bit_for_bit(key):
    """every = 1 (the default): computed on every call, ``weight * penalty`` exactly as before lazy steps."""
    make, hook, value, weight, grads = LAZY[key]
    reg = make(1)
    for i in range(3):
        assert (reg.needs_real_grad, reg.needs_fake_grad) == grads
        ctx = make_ctx(i)
        term = getattr(reg, hook)(ctx)
        expected = value(make_ctx(i))
        assert torch.equal(term, weight * expected)
        assert torch.equal(ctx.stats[key], expected)


@pytest.mark.parametrize("key", LAZY)
def test_lazy_penalty_every_4_computes_on_calls_0_and_4_weighted_by_4(key, grad_calls):
    make, hook, value, weight, grads = LAZY[key]
    reg = make(4)
    for i in range(8):
        due = i % 4 == 0
        # D's inputs need grad only for the call that computes (R1: the real input, R2: the fake one).
        assert reg.needs_real_grad == (due and grads[0])
        assert reg.needs_fake_grad == (due and grads[1])
        ctx = make_ctx(i)
        before = len(grad_calls)
        term = getattr(reg, hook)(ctx)
        if due:
            expected = value(make_ctx(i))
            assert torch.equal(term, 4 * (weight * expected))
            assert torch.equal(ctx.stats[key], expected)  # logged unweighted, on the steps it is computed
        else:
            assert term is None
            assert ctx.stats == {}
            assert len(grad_calls) == before  # nothing computed
    assert reg.steps == 8


@pytest.mark.parametrize("cls", [R1, R2, GradientPenalty])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_every_is_a_user_error_naming_the_field(cls, bad):
    message = f"{cls.__name__}.every: must be an integer >= 1, got {bad!r}"
    with pytest.raises(UserError, match="^" + re.escape(message) + "$"):
        cls(every=bad)


def _round_trip(state: dict) -> dict:
    """Through torch.save and a weights-only load, as a checkpoint travels."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_lazy_cadence_survives_state_dict_into_a_fresh_instance():
    """Saved after 3 calls with every = 4 (computed at call 0), a fresh R1 continues at count 3: its first call
    computes nothing, its second (count 4) computes."""
    saved = nn.ModuleList([R1(gamma=0.3, every=4)])  # as the GAN holds them: state under "<i>."
    terms = [saved[0].d_real(make_ctx(i)) for i in range(3)]
    assert [t is not None for t in terms] == [True, False, False]
    state = _round_trip(saved.state_dict())
    assert state["0._extra_state"] == {"steps": 3}

    fresh = nn.ModuleList([R1(gamma=0.3, every=4)])
    fresh.load_state_dict(state)
    reg = fresh[0]
    assert reg.steps == 3 and not reg.needs_real_grad
    assert reg.d_real(make_ctx(3)) is None
    assert reg.needs_real_grad
    assert torch.equal(reg.d_real(make_ctx(4)), 4 * (0.5 * 0.3 * r1_value(make_ctx(4))))


# ------------------------------------------------------------------------------------------ LeCam
REAL = [1.5, -0.5, 0.25, 2.0]
FAKE = [-1.0, 0.3, -2.0, 0.8]


def relu(v: float) -> float:
    return max(v, 0.0)


def lecam_ctx(real, fake, x_dim: int = 2) -> Context:
    x = torch.zeros(len(fake), x_dim, dtype=F64)
    as_scores = lambda s: None if s is None else torch.tensor(s, dtype=F64, requires_grad=True)  # noqa: E731
    return Context(Side(x, None, as_scores(real)), Side(x, None, as_scores(fake)), critic=None,
                   interpolation_weights=None)


def lecam_at(steps: int, ema_real: float, ema_fake: float, **kwargs) -> LeCam:
    """A LeCam (float64 buffers) past ``steps`` D steps, with the given EMAs."""
    reg = LeCam(**kwargs).double()
    reg.load_state_dict({"ema_real": torch.tensor(ema_real, dtype=F64), "ema_fake": torch.tensor(ema_fake, dtype=F64),
                         "_extra_state": {"steps": steps}})
    return reg


def test_lecam_joint_step_term_and_gradient_match_the_formula():
    """d_real first updates both EMAs with this step's means (decay 0.9), then adds
    weight * (mean relu(D(x) - ema_fake)^2 + mean relu(ema_real - D(G(z)))^2); d_fake then adds nothing."""
    reg = lecam_at(5, ema_real=0.2, ema_fake=-0.4, weight=0.5, decay=0.9, start=0)
    ctx = lecam_ctx(REAL, FAKE)
    term = reg.d_real(ctx)
    assert reg.d_fake(ctx) is None

    ema_real = 0.9 * 0.2 + (1 - 0.9) * mean(REAL)
    ema_fake = 0.9 * -0.4 + (1 - 0.9) * mean(FAKE)
    real_part = [relu(r - ema_fake) for r in REAL]
    fake_part = [relu(ema_real - f) for f in FAKE]
    assert 0.0 in real_part and 0.0 in fake_part and any(real_part) and any(fake_part)  # both sides of the hinge
    expected = mean(v * v for v in real_part) + mean(v * v for v in fake_part)
    assert term.item() == pytest.approx(0.5 * expected, rel=1e-12)
    assert ctx.stats["lecam"].item() == pytest.approx(expected, rel=1e-12)
    assert not ctx.stats["lecam"].requires_grad
    assert reg.ema_real.item() == pytest.approx(ema_real, rel=1e-12)
    assert reg.ema_fake.item() == pytest.approx(ema_fake, rel=1e-12)
    assert reg.steps == 6

    # The gradient reaches both sides' scores (the EMAs are constants): 2 * weight * relu(.) / N, signed.
    g_real, g_fake = torch.autograd.grad(term, [ctx.real.scores, ctx.fake.scores])
    assert g_real.tolist() == pytest.approx([0.5 * 2 * v / 4 for v in real_part], rel=1e-12)
    assert g_fake.tolist() == pytest.approx([-0.5 * 2 * v / 4 for v in fake_part], rel=1e-12)


def test_lecam_split_step_adds_the_fake_half_in_the_fake_step_and_the_real_half_in_the_real_step():
    """The fake step (real batch not scored yet) updates ema_fake and adds the fake half against ema_real as it
    stood; the real step updates ema_real and adds the real half against the updated ema_fake. One D step."""
    reg = lecam_at(5, ema_real=0.2, ema_fake=-0.4, weight=0.5, decay=0.9, start=0)
    ctx = lecam_ctx(None, FAKE)
    fake_term = reg.d_fake(ctx)
    ema_fake = 0.9 * -0.4 + 0.1 * mean(FAKE)
    fake_half = mean(relu(0.2 - f) ** 2 for f in FAKE)
    assert fake_term.item() == pytest.approx(0.5 * fake_half, rel=1e-12)
    assert reg.ema_fake.item() == pytest.approx(ema_fake, rel=1e-12)
    assert reg.ema_real.item() == 0.2 and reg.steps == 5

    ctx.fake.scores = ctx.fake.scores.detach()  # the fake step's graph is gone by now
    ctx.real.scores = torch.tensor(REAL, dtype=F64, requires_grad=True)
    real_term = reg.d_real(ctx)
    ema_real = 0.9 * 0.2 + 0.1 * mean(REAL)
    real_half = mean(relu(r - ema_fake) ** 2 for r in REAL)
    assert real_term.item() == pytest.approx(0.5 * real_half, rel=1e-12)
    assert reg.ema_real.item() == pytest.approx(ema_real, rel=1e-12)
    assert ctx.stats["lecam"].item() == pytest.approx(fake_half + real_half, rel=1e-12)
    assert reg.steps == 6


def _scores(m: float) -> list[float]:
    return [m + d for d in (0.5, -0.5, 0.25, -0.25)]  # mean m


@pytest.mark.parametrize("d_step", ["joint", "split"])
def test_lecam_emas_copy_until_start_then_average(d_step):
    """start = 2: D steps 0 and 1 copy the means and add no term; from step 2 the EMAs average with decay 0.8 and
    the term is added (and logged). Joint and split steps keep the same EMAs."""
    reg = LeCam(weight=1.0, decay=0.8, start=2).double()
    ema_real = ema_fake = None
    for n, (mr, mf) in enumerate([(1.0, -1.0), (2.0, -3.0), (3.0, -2.0), (0.5, 1.0), (4.0, -4.0)]):
        if d_step == "joint":
            ctx = lecam_ctx(_scores(mr), _scores(mf))
            terms = [reg.d_real(ctx), reg.d_fake(ctx)]
        else:
            ctx = lecam_ctx(None, _scores(mf))
            terms = [reg.d_fake(ctx)]
            ctx.real.scores = torch.tensor(_scores(mr), dtype=F64)
            terms.append(reg.d_real(ctx))
        ema_real = mr if n < 2 else 0.8 * ema_real + 0.2 * mr
        ema_fake = mf if n < 2 else 0.8 * ema_fake + 0.2 * mf
        assert reg.ema_real.item() == pytest.approx(ema_real, rel=1e-12), n
        assert reg.ema_fake.item() == pytest.approx(ema_fake, rel=1e-12), n
        assert any(t is not None for t in terms) == (n >= 2), n
        assert ("lecam" in ctx.stats) == (n >= 2), n
    assert reg.steps == 5


def test_lecam_with_start_0_copies_on_the_first_step():
    """The EMAs never average with their initial zeros: the first D step copies the means."""
    reg = LeCam(weight=1.0, decay=0.9, start=0).double()
    assert reg.d_real(lecam_ctx(_scores(3.0), _scores(-2.0))) is not None
    assert (reg.ema_real.item(), reg.ema_fake.item()) == pytest.approx((3.0, -2.0), rel=1e-12)
    reg.d_real(lecam_ctx(_scores(1.0), _scores(0.0)))
    assert (reg.ema_real.item(), reg.ema_fake.item()) == pytest.approx((2.8, -1.8), rel=1e-12)


def test_lecam_state_round_trips_through_state_dict_and_continues_identically():
    held = nn.ModuleList([LeCam(weight=0.3, decay=0.9, start=1)])
    for mr, mf in [(1.0, -1.0), (2.0, -0.5), (1.5, 0.5)]:
        held[0].d_real(lecam_ctx(_scores(mr), _scores(mf)))
    state = _round_trip(held.state_dict())
    assert set(state) == {"0.ema_real", "0.ema_fake", "0._extra_state"}
    assert state["0._extra_state"] == {"steps": 3}

    fresh = nn.ModuleList([LeCam(weight=0.3, decay=0.9, start=1)])
    fresh.load_state_dict(state)
    assert torch.equal(fresh[0].ema_real, held[0].ema_real) and torch.equal(fresh[0].ema_fake, held[0].ema_fake)
    assert fresh[0].steps == 3
    a, b = (m[0].d_real(lecam_ctx(_scores(0.7), _scores(-0.2))) for m in (held, fresh))
    assert torch.equal(a, b)
    assert torch.equal(fresh[0].ema_real, held[0].ema_real)


def test_lecam_config_errors_name_the_field():
    with pytest.raises(UserError, match=r"LeCam\.weight: must be >= 0"):
        LeCam(weight=-1.0)
    with pytest.raises(UserError, match=r"LeCam\.decay: must be in \[0, 1\), got 1\.0"):
        LeCam(decay=1.0)
    with pytest.raises(UserError, match=r"LeCam\.start: must be an integer >= 0, got -1"):
        LeCam(start=-1)


# ------------------------------------------------------------------------------------------ no host sync
def test_hooks_never_read_a_tensor_value_on_the_host(monkeypatch):
    """Every hook runs with the host-reading conversions of tensors made to fail: .item(), .tolist(), .numpy(),
    bool(), float(), int() and index use (each would wait for a CUDA device)."""
    regs = [R1(0.3, every=2), R2(0.3, every=2), GradientPenalty(10.0, every=2),
            LeCam(weight=0.3, start=1), LeCam(weight=0.3, start=1)]
    joint = regs[:4]
    split_lecam = regs[4]

    def refuse(*args, **kwargs):
        raise AssertionError("a hook read a tensor's value on the host")

    results = []
    with monkeypatch.context() as patch:
        for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
            patch.setattr(torch.Tensor, name, refuse)
        for i in range(3):  # computed and skipped calls, LeCam before and after start
            ctx = make_ctx(i)
            for reg in joint:
                results += [reg.d_real(ctx) if reg.overrides("d_real") else None,
                            reg.d_fake(ctx) if reg.overrides("d_fake") else None]
            ctx = make_ctx(i)
            real_scores, ctx.real.scores = ctx.real.scores, None
            results.append(split_lecam.d_fake(ctx))
            ctx.real.scores = real_scores
            results.append(split_lecam.d_real(ctx))
    assert sum(r is not None for r in results) == 2 * 3 + 2 + 2 * 2  # R1/R2/GP twice each, LeCam twice per mode


# ------------------------------------------------------------------------------------------ the module form
def test_reprs_show_the_constructor_arguments():
    assert repr(R1(gamma=0.1, every=16)) == "R1(gamma=0.1, every=16)"
    assert repr(GradientPenalty()) == "GradientPenalty(weight=10.0, every=1)"
    assert repr(LeCam(weight=0.3, decay=0.99, start=4)) == "LeCam(weight=0.3, decay=0.99, start=4)"


def test_a_subclass_without_super_init_is_refused_in_one_line():
    """Regularizers are nn.Modules: one whose __init__ forgets super().__init__() would fail deep inside torch
    at the first state_dict; the GAN refuses it at once, naming the class and the fix."""
    from gan_lightning.errors import UserError
    from gan_lightning.nets import MLPDiscriminator, MLPGenerator
    from gan_lightning.training import GAN

    class Drift(Regularizer):
        def __init__(self, eps: float = 1e-3) -> None:
            self.eps = float(eps)

        def d_real(self, ctx):
            return self.eps * ctx.real.scores.pow(2).mean()

    with pytest.raises(UserError, match=r"model.regularizers\[0\]: Drift.__init__ must call super\(\).__init__\(\)"):
        GAN(MLPGenerator(hidden=[4]), MLPDiscriminator(hidden=[4], maxout_pieces=2), regularizers=[Drift()])


def test_yaml_init_args_build_the_regularizers():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--regularizers", type=list[Regularizer])
    r1 = '{"class_path": "gan_lightning.objectives.R1", "init_args": {"gamma": 0.1, "every": 16}}'
    lecam = '{"class_path": "gan_lightning.objectives.LeCam", "init_args": {"weight": 0.3, "start": 10}}'
    cfg = parser.parse_args(["--regularizers", f"[{r1}, {lecam}]"])
    r1, lecam = parser.instantiate(cfg).regularizers
    assert (r1.gamma, r1.every) == (0.1, 16)
    assert (lecam.weight, lecam.decay, lecam.start) == (0.3, 0.9, 10)


# ------------------------------------------------------------------------------------------ in the GAN
BATCH = 8


def tiny_gan(regularizers, d_step="joint") -> GAN:
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[8, 8])
    d = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=2)
    return GAN(g, d, regularizers=regularizers, d_step=d_step)


class Recorder(Regularizer):
    """Records, for each hook call, which hook ran and what of the scores it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    def _record(self, hook: str, ctx: Context) -> None:
        real, fake = ctx.real.scores, ctx.fake.scores
        shape = lambda s: None if s is None else tuple(s.shape)  # noqa: E731
        self.events.append((hook, shape(real), shape(fake), fake is not None and fake.requires_grad))

    def d_real(self, ctx):
        self._record("d_real", ctx)

    def d_fake(self, ctx):
        self._record("d_fake", ctx)


@pytest.mark.parametrize("d_step", ["joint", "split"])
def test_d_step_hook_contract(make_trainer, d_step):
    """Joint: d_real runs after both D forwards (it sees the real and the fake scores, (N,) each, the fake ones
    still in the graph), then d_fake. Split: d_fake in the fake step, before D has scored the real batch, then
    d_real in the real step with the fake step's scores."""
    torch.manual_seed(0)
    rec = Recorder()
    trainer = make_trainer(2)
    trainer.fit(tiny_gan([rec], d_step), datamodule=ToyDataModule(num_samples=64, batch_size=BATCH))
    n = (BATCH,)
    if d_step == "joint":
        step = [("d_real", n, n, True), ("d_fake", n, n, True)]
        assert rec.events == step * 2
    else:
        assert [e[:3] for e in rec.events] == [("d_fake", None, n), ("d_real", n, n)] * 2


def _fit_lecam(make_trainer, tmp_path, steps, d_step, ckpt_path=None, checkpoint_every=None) -> GAN:
    seed_everything(0)
    model = tiny_gan([LeCam(weight=0.3, decay=0.9, start=5), R1(gamma=0.1, every=3)], d_step)
    callbacks = []
    if checkpoint_every:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=checkpoint_every,
                                         save_top_k=-1, filename="{step}"))
    trainer = make_trainer(steps, callbacks=callbacks, enable_checkpointing=bool(callbacks))
    trainer.fit(model, datamodule=ToyDataModule(num_samples=96, batch_size=BATCH), ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("d_step", ["joint", "split"])
def test_lecam_and_lazy_r1_resume_exactly(make_trainer, tmp_path, d_step):
    """Checkpointed at 20 G steps (mid-epoch, inside R1's every-3 cadence) and resumed to 40: every tensor of the
    state, the LeCam EMAs and both step counts included, equals the uninterrupted 40-step run's bit for bit."""
    full = _fit_lecam(make_trainer, tmp_path, 40, d_step, checkpoint_every=20)
    resumed = _fit_lecam(make_trainer, tmp_path, 40, d_step, ckpt_path=tmp_path / "ckpt" / "step=20.ckpt")
    a, b = full.state_dict(), resumed.state_dict()
    assert {"regularizers.0.ema_real", "regularizers.0.ema_fake", "regularizers.0._extra_state",
            "regularizers.1._extra_state"} <= set(a)
    assert a["regularizers.0._extra_state"] == {"steps": 40} and a["regularizers.1._extra_state"] == {"steps": 40}
    assert a["regularizers.0.ema_real"] != 0 and a["regularizers.0.ema_fake"] != 0
    assert a.keys() == b.keys()
    differ = [k for k in a if not (torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k])]
    assert differ == []
