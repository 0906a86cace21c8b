"""D-guided latent refinement (``model.refinement``): the update rule, what it leaves alone, and where it applies.

The update is checked against its closed form on a critic whose gradient is known; on a real GAN, refinement must
raise D's scores, keep sample ``i`` a function of its own noise, and leave weights, gradients and train/eval
modes as they were. ``ToyMetrics`` reports the generator's own samples under the plain keys and the refined ones
beside them, suffixed ``_refined``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gan_lightning.metrics.callbacks import ToyMetrics
from gan_lightning.data import ToyDataModule
from gan_lightning.errors import UserError
from gan_lightning.metrics.toy import mode_coverage
from gan_lightning.nets import MLPDiscriminator, MLPGenerator
from gan_lightning.sampling.refinement import LatentRefinement
from gan_lightning.sampling.draw import draw, noise_for
from gan_lightning.training.system import GAN

REPO = Path(__file__).resolve().parents[1]


def identity(z, c):
    return z


def bowl(centre: torch.Tensor):
    """A critic with its maximum at ``centre``: ``-||x - centre||^2``, gradient ``-2 (x - centre)``."""
    return lambda x, c: -(x - centre).pow(2).sum(1)


def test_steps_follow_the_gradient_ascent_formula():
    torch.manual_seed(0)
    z0 = torch.randn(6, 3, dtype=torch.float64)
    centre = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    eta, steps = 0.05, 4
    out = LatentRefinement(steps=steps, step_size=eta)(z0, None, identity, bowl(centre))
    # z_{t+1} - m = (1 - 2 eta)(z_t - m)
    torch.testing.assert_close(out, centre + (1 - 2 * eta) ** steps * (z0 - centre), rtol=0, atol=1e-12)


def test_anchor_pulls_back_towards_the_drawn_noise():
    torch.manual_seed(1)
    z0 = torch.randn(5, 2, dtype=torch.float64)
    centre = torch.zeros(2, dtype=torch.float64)
    eta, lam, steps = 0.1, 3.0, 3
    z = z0.clone()
    for _ in range(steps):  # z <- z + eta * (-2 (z - m) - lam (z - z0))
        z = z + eta * (-2 * (z - centre) - lam * (z - z0))
    out = LatentRefinement(steps=steps, step_size=eta, anchor=lam)(z0, None, identity, bowl(centre))
    torch.testing.assert_close(out, z, rtol=0, atol=1e-12)
    free = LatentRefinement(steps=steps, step_size=eta)(z0, None, identity, bowl(centre))
    assert (out - z0).norm() < (free - z0).norm()  # anchored noise stays closer to where it was drawn


def test_uniform_prior_noise_stays_in_its_box():
    z0 = torch.full((4, 2), 0.9)
    out = LatentRefinement(steps=3, step_size=1.0)(z0, None, identity, bowl(torch.tensor([5.0, 5.0])), "uniform")
    assert out.max() == 1.0 and out.min() >= -1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "LatentRefinement.steps: must be an integer >= 1"),
    ({"steps": 1.5}, "LatentRefinement.steps: must be an integer >= 1"),
    ({"step_size": 0.0}, "LatentRefinement.step_size: must be a finite number > 0"),
    ({"step_size": float("nan")}, "LatentRefinement.step_size: must be a finite number > 0"),
    ({"anchor": -1.0}, "LatentRefinement.anchor: must be a finite number >= 0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        LatentRefinement(**kwargs)


def _gan(refinement=None, ema_decay=0.9) -> GAN:
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[32, 32], norm="batch")
    d = MLPDiscriminator(in_shape=[2], hidden=[32, 32], maxout_pieces=3)
    return GAN(g, d, ema_decay=ema_decay, refinement=refinement)


def test_refined_samples_score_higher_and_unrefined_ones_are_the_generators():
    model = _gan(LatentRefinement(steps=5, step_size=0.1))
    z = noise_for(torch.arange(256), 2, "normal", seed=0)
    refined = model.generate(z)
    plain = model.generate(z, refine=False)
    with torch.no_grad():
        model.generator_ema.eval()
        torch.testing.assert_close(plain, model.generator_ema(z, None), rtol=0, atol=0)
        model.discriminator.eval()
        before, after = model.discriminator(plain, None), model.discriminator(refined, None)
    assert (after - before).mean() > 0 and (after >= before - 1e-6).float().mean() > 0.9
    assert (refined - plain).abs().max() > 1e-4  # it did move the samples
    # Without a refinement, generate is the generator alone.
    torch.testing.assert_close(_gan().generate(z), plain, rtol=0, atol=0)


def test_refinement_moves_no_weight_leaves_no_gradient_and_restores_modes():
    model = _gan(LatentRefinement(steps=3, step_size=0.1))
    model.train()
    before = copy.deepcopy(model.state_dict())
    model.generate(noise_for(torch.arange(64), 2, "normal", seed=0))
    for key, value in model.state_dict().items():  # batch norm running statistics included
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert all(p.grad is None for p in model.parameters())
    assert model.discriminator.training and model.generator_ema.training and model.generator.training


def test_sample_i_is_refined_from_its_own_noise_however_the_draw_is_split():
    model = _gan(LatentRefinement(steps=5, step_size=0.1))
    whole = draw(model, 40, seed=3, batch_size=40)
    pieces = draw(model, 40, seed=3, batch_size=7)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(draw(model, 10, seed=3, start=30), whole[30:], rtol=1e-5, atol=1e-6)


def test_refinement_runs_under_inference_mode():
    model = _gan(LatentRefinement(steps=2, step_size=0.1))
    z = noise_for(torch.arange(16), 2, "normal", seed=0)
    expected = model.generate(z)
    with torch.inference_mode():
        got = model.generate(z)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _expected(model, n: int, seed: int, modes, sigma) -> dict:
    want = mode_coverage(draw(model, n, seed=seed, refine=False), modes, sigma)
    refined = mode_coverage(draw(model, n, seed=seed), modes, sigma)
    want.update({f"{k}_refined": v for k, v in refined.items()})
    return want


def test_toy_metrics_plain_keys_are_the_generators_and_refined_ones_are_suffixed():
    model = _gan(LatentRefinement(steps=5, step_size=0.3), ema_decay=0.0)
    plain = draw(model, 500, seed=1, refine=False)
    # Modes at 20 of the generator's own samples: coverage is partial, and refinement changes it.
    data = SimpleNamespace(modes=plain[:20].clone(), sigma=0.002)
    got = ToyMetrics(num_samples=500, seed=1)._compute(SimpleNamespace(datamodule=data), model)
    want = _expected(model, 500, 1, data.modes, data.sigma)
    assert got == pytest.approx(want, abs=1e-12)
    assert set(got) == {"modes", "high_quality", "reverse_kl", "modes_refined", "high_quality_refined",
                        "reverse_kl_refined"}
    # The plain keys are the generator's own samples: each of the 20 modes is one of them.
    assert got["high_quality"] >= 100 * 20 / 500 and got["modes"] == 20
    assert got["high_quality"] != got["high_quality_refined"]


def test_toy_metrics_without_refinement_report_only_the_samples():
    model = _gan(None, ema_decay=0.0)
    data = SimpleNamespace(modes=draw(model, 20, seed=1), sigma=0.002)
    got = ToyMetrics(num_samples=100, seed=1)._compute(SimpleNamespace(datamodule=data), model)
    assert set(got) == {"modes", "high_quality", "reverse_kl"}


def test_toy_metrics_write_both_to_metrics_json(make_trainer):
    model = _gan(LatentRefinement(steps=5, step_size=0.1), ema_decay=0.0)
    metrics = ToyMetrics(every_n_steps=1000, num_samples=500)
    trainer = make_trainer(3, callbacks=[metrics])
    trainer.fit(model, ToyDataModule(name="grid", batch_size=16))
    written = json.loads((Path(trainer.default_root_dir) / "metrics.json").read_text())
    want = _expected(model, 500, metrics.seed, trainer.datamodule.modes, trainer.datamodule.sigma)
    assert set(want) <= set(written)
    for key, value in want.items():  # JSON holds no infinity: a reverse KL without samples is written as null
        assert written[key] == (pytest.approx(value, abs=1e-9) if math.isfinite(value) else None), key


def test_the_toy_experiments_name_a_refinement_that_the_checkpoint_rebuilds(tmp_path):
    from gan_lightning.commands import main
    from gan_lightning.commands.checkpoints import load_gan

    run = tmp_path / "ring"
    assert main(["fit", "--config", str(REPO / "experiments" / "toy_ring.yaml"), f"--run_dir={run}", "--wandb=disabled",
                 "--trainer.max_steps=2", "--trainer.callbacks=null", "--trainer.enable_progress_bar=false"]) == 0
    model = load_gan(str(run / "checkpoints" / "last.ckpt"))
    assert isinstance(model.refinement, LatentRefinement)
    assert (model.refinement.steps, model.refinement.step_size, model.refinement.anchor) == (5, 0.01, 0.0)
