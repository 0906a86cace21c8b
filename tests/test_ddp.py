"""Multi-process training: the ``gan_ddp`` strategies on 2 CPU processes (gloo).

Runs are launched with the multiprocessing launcher (``gan_ddp_spawn`` / ``gan_ddp_fork``), never with popen
``ddp``, which would re-run the pytest command line in its children. Everything the children need lives in
``tests/ddp_helpers.py``; each rank writes its results (per-step weights, losses, step counters) to a file that
the test reads back.

Start methods: the first test runs ``gan_ddp_spawn``, the path documented for tests and notebooks. A spawned
child re-imports torch and Lightning (15-30 s on this 2-core machine), so the other tests fork, which costs well
under a second per run and exercises the same strategy class with the same DDP wrappers and gloo collectives;
``GAN_DDP_TEST_START=spawn`` runs them all with spawn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

import ddp_helpers as H
from gan_lightning.objectives.regularizers import GradientPenalty, R1
from gan_lightning.training.strategies import RankConsistency

pytestmark = pytest.mark.slow

WORLD = 2
START = os.environ.get("GAN_DDP_TEST_START", "fork")
GAN_DDP = f"gan_ddp_{START}"   # the strategy under test, for the runs that need not be spawned
PLAIN_DDP = f"ddp_{START}"     # Lightning's own DDP: one wrapper around the whole LightningModule

if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)


def fit_ranks(out_dir: Path, model: Any, data: Any, max_steps: int, strategy: str = GAN_DDP,
              devices: int = WORLD, callbacks: list | None = None, per_step: bool = True) -> list[dict]:
    """Fits on ``devices`` processes; returns each rank's record (see ``ddp_helpers.Recorder``)."""
    rec = H.Recorder(str(out_dir), per_step=per_step)
    trainer = H.trainer(out_dir, max_steps, strategy=strategy if devices > 1 else "auto", devices=devices,
                        callbacks=[*(callbacks or []), rec])
    trainer.fit(model, data)
    return H.load_ranks(out_dir, devices)


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Keys of two state dicts whose tensors are not bit-identical (a missing key counts as differing)."""
    assert a.keys() == b.keys(), f"state dicts have different keys: {sorted(a.keys() ^ b.keys())}"
    return [k for k in a if not torch.equal(a[k], b[k])]


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    worst, where = 0.0, ""
    for k in a:
        d = (a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0
        if d > worst:
            worst, where = d, k
    return worst, where


# ------------------------------------------------------------------------------------------------ 1. consistency
def test_gan_ddp_spawn_keeps_ranks_bit_identical(tmp_path):
    """2 spawned processes, MLP nets with batch norm in G, EMA, n_critic=1: the run finishes (no unused-parameter
    error), RankConsistency checks every step without complaint, and the G, D and EMA state dicts (parameters
    and buffers, batch-norm statistics included) are bit-identical on both ranks after every step."""
    steps = 4
    model = H.mlp_gan(g_norm="batch", ema_decay=0.9)
    init = {f"{n}.{k}": v.clone() for n in ("generator", "discriminator") for k, v in
            getattr(model, n).state_dict().items()}  # spawn loads rank 0's trained weights back into ``model``
    check = RankConsistency(every_n_steps=1)
    r0, r1 = fit_ranks(tmp_path, model, H.OrderedToy(num_samples=256, batch_size=8), steps,
                       strategy="gan_ddp_spawn", callbacks=[check])
    assert r0["world_size"] == r1["world_size"] == WORLD
    assert len(r0["steps"]) == len(r1["steps"]) == steps
    keys = r0["final"].keys()
    assert any(k.startswith("generator_ema.") for k in keys) and any("running_mean" in k for k in keys)
    for t, (s0, s1) in enumerate(zip(r0["steps"], r1["steps"])):
        assert differing(s0, s1) == [], f"ranks differ after step {t + 1}"
    assert differing(r0["final"], r1["final"]) == []
    # The run trained: the weights moved away from their (shared) initialisation.
    assert max_abs_diff({k: r0["final"][k] for k in init}, init)[0] > 1e-4


def test_plain_ddp_fails_on_the_two_phase_step(tmp_path):
    """Why gan_ddp exists: Lightning's DDP wraps the whole module, each backward pass reaches only one network,
    and the reducer stops with its unused-parameters error on the same model."""
    model = H.mlp_gan(g_norm="batch", ema_decay=0.9)
    with pytest.raises(Exception, match="(?s)(Expected to have finished reduction|parameters that were not used)"):
        fit_ranks(tmp_path, model, H.OrderedToy(num_samples=256, batch_size=8), 3, strategy=PLAIN_DDP)


# ------------------------------------------------------------------------------------------------ 2./3. equivalence
EQUIVALENCE = {
    # id: (model options, D norm, optimizer). SGD keeps the gradient's scale visible (Adam is nearly
    # scale-invariant and would hide, e.g., summed instead of averaged gradients); Adam is the usual choice.
    "ns-plain": (dict(loss="non_saturating"), "none", "sgd"),
    "ns-spectral": (dict(loss="non_saturating"), "spectral", "adam"),
    "ncritic2": (dict(loss="non_saturating", n_critic=2), "none", "sgd"),
    "wgan-gp": (dict(loss="wasserstein", regularizers=[GradientPenalty(10.0)]), "none", "sgd"),
    "ncritic2-gp-split": (dict(loss="wasserstein", regularizers=[GradientPenalty(10.0)], n_critic=2, d_step="split"),
                          "spectral", "adam"),
    # R1 (double backward), an auxiliary classifier on the ring's 8 modes, and gradient clipping: 0.07 clips D's
    # gradient (norm ~1.1-1.5) at every step and G's (~0.06-0.13) at most, so clipping must see synchronised
    # gradients for the runs to agree.
    "r1-aux-clip": (dict(loss="non_saturating", regularizers=[R1(1.0)], grad_clip_norm=0.07, aux_classes=8), "none",
                    "sgd"),
}
EQ_STEPS, EQ_BATCH, ATOL = 5, 8, 1e-5


def equivalence_runs(root: Path, name: str) -> tuple[list[dict], dict]:
    options, d_norm, optimizer = EQUIVALENCE[name]

    def model() -> Any:
        return H.mlp_gan(cls=H.GlobalNoiseGAN, g_norm="none", d_norm=d_norm, optimizer=optimizer, ema_decay=0.8,
                         **options)

    def data(batch_size: int) -> H.OrderedToy:
        dm = H.OrderedToy(num_samples=512, batch_size=batch_size)
        dm.num_classes = options.get("aux_classes", 0)  # the labels are the ring's mode indices
        dm.draws_per_step = options.get("n_critic", 1)  # what the CLI links to model.n_critic
        return dm

    two = fit_ranks(root / "two", model(), data(EQ_BATCH), EQ_STEPS)
    (one,) = fit_ranks(root / "one", model(), data(WORLD * EQ_BATCH), EQ_STEPS, devices=1)
    return two, one


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """Runs each configuration of EQUIVALENCE once per module (later tests reuse the records)."""
    cache: dict[str, tuple[list[dict], dict]] = {}

    def get(name: str) -> tuple[list[dict], dict]:
        if name not in cache:
            cache[name] = equivalence_runs(tmp_path_factory.mktemp(name), name)
        return cache[name]

    return get


def assert_equivalent(two: list[dict], one: dict) -> None:
    r0, r1 = two
    assert len(r0["steps"]) == len(one["steps"]) == EQ_STEPS
    for t in range(EQ_STEPS):
        assert differing(r0["steps"][t], r1["steps"][t]) == [], f"ranks differ after step {t + 1}"
        diff, where = max_abs_diff(r0["steps"][t], one["steps"][t])
        assert diff <= ATOL, f"step {t + 1}: 2x{EQ_BATCH} differs from 1x{WORLD * EQ_BATCH} by {diff:.3g} at {where}"
        # Each rank logs the mean over its half of the batch; their average is the one-process mean.
        for key, value in one["losses"][t].items():
            mean = (r0["losses"][t][key] + r1["losses"][t][key]) / 2
            assert mean == pytest.approx(value, abs=ATOL), f"step {t + 1}: {key}"
    # Not trivially equal: training moved the weights far beyond the tolerance.
    moved, _ = max_abs_diff(one["steps"][0], one["steps"][-1])
    assert moved > 100 * ATOL


@pytest.mark.parametrize("name", ["ns-plain", "ns-spectral"])
def test_two_processes_match_one_process_with_double_batch(equivalence, name):
    """2 processes x batch B == 1 process x batch 2B, step by step (weights of G, D and EMA, spectral-norm
    vectors, and the logged losses), for networks without batch statistics."""
    assert_equivalent(*equivalence(name))


@pytest.mark.parametrize("name", ["ncritic2", "wgan-gp", "ncritic2-gp-split", "r1-aux-clip"])
def test_equivalence_with_n_critic_penalties_aux_classifier_and_clipping(equivalence, name):
    """The same equivalence with n_critic=2 (each rank's k-th D-step chunk is the interleaved half of the
    one-process k-th chunk), with WGAN-GP (interpolation weights keyed by global position), both together
    with split D steps and spectral norm, and R1 with an auxiliary classifier and gradient clipping."""
    assert_equivalent(*equivalence(name))


def test_noise_hook_lines_up_with_the_data():
    """The noise hook's premise, checked without processes: rank r's j-th noise row in D step i is the one-process
    run's row j*2 + r of the same D step, and different D steps get different noise."""
    model = H.mlp_gan(cls=H.GlobalNoiseGAN, g_norm="none")

    class _T:  # a stand-in trainer: world size and rank
        def __init__(self, world: int, rank: int) -> None:
            self.world_size, self.global_rank, self.global_step = world, rank, 3

    draws = {}
    for world, rank in ((1, 0), (2, 0), (2, 1)):
        model._trainer = _T(world, rank)
        model._z_calls = 0
        draws[world, rank] = [model.sample_z(EQ_BATCH * WORLD // world) for _ in range(2)]
    model._trainer = None
    for i in range(2):
        assert torch.equal(draws[2, 0][i], draws[1, 0][i][0::2])
        assert torch.equal(draws[2, 1][i], draws[1, 0][i][1::2])
    assert not torch.equal(draws[1, 0][0], draws[1, 0][1])  # D steps get different noise


# ------------------------------------------------------------------------------------------------ 4. step counting
@pytest.mark.parametrize("name, d_calls_per_critic", [("ncritic2", 1), ("ncritic2-gp-split", 2)])
def test_global_step_counts_generator_iterations_on_two_processes(equivalence, name, d_calls_per_critic):
    """On each rank trainer.global_step == max_steps, G's torch optimizer stepped max_steps times and D's
    n_critic * max_steps times (twice that with split D steps); the 1-process run counts the same."""
    two, one = equivalence(name)
    n_critic = EQUIVALENCE[name][0]["n_critic"]
    for record in (*two, one):
        assert record["global_step"] == EQ_STEPS
        assert len(record["losses"]) == EQ_STEPS  # one on_train_batch_end per generator iteration
        assert record["opt_steps"] == {"G": EQ_STEPS, "D": d_calls_per_critic * n_critic * EQ_STEPS}


# ------------------------------------------------------------------------------------------------ 5. rank check
@pytest.mark.parametrize("net", ["discriminator", "generator_ema"])
def test_rank_consistency_names_the_network_that_differs(tmp_path, net):
    """A nudge to one rank's network after step 2 makes RankConsistency stop the run with a message naming it."""
    model = H.mlp_gan(g_norm="batch", ema_decay=0.9)
    callbacks = [H.PerturbRank(net=net, rank=1, at_step=2), RankConsistency(every_n_steps=1)]
    with pytest.raises(Exception, match=rf"rank consistency: the {net} differs across processes at step 2"):
        fit_ranks(tmp_path, model, H.OrderedToy(num_samples=256, batch_size=8), 4, callbacks=callbacks)


# ------------------------------------------------------------------------------------------------ library defects
def test_batch_norm_statistics_stay_identical_across_ranks(tmp_path):
    """Data parallelism on a stock configuration: DCGAN (batch norm in D, its default) with ``d_step: split``.

    The last D forward of a split D step is on the rank's own real batch, so each rank's D running statistics
    absorb a different batch; DDP only re-broadcasts rank 0's buffers at the *next* wrapped forward, so after
    every step the ranks hold different D buffers (and RankConsistency stops real runs). The same happens to
    G's batch-norm statistics whenever the ranks' noise differs.
    """
    model = H.dcgan(d_norm="batch", d_step="split")
    r0, r1 = fit_ranks(tmp_path, model, H.TinyImages(batch_size=8), 2)
    assert differing(r0["final"], r1["final"]) == []


def test_ranks_draw_independent_noise(tmp_path):
    """Data parallelism must not duplicate the fake batch: with the library's own ``sample_z`` (and the
    gradient-penalty weights), every rank starts from the same RNG state and draws the *same* noise, so W
    processes train on B distinct fakes per D step instead of W*B (and W processes x batch B is not the 1 x W*B
    run that the equivalence tests above build with a position-keyed noise hook)."""
    model = H.mlp_gan(cls=H.NoiseLogGAN, g_norm="none", loss="wasserstein", regularizers=[GradientPenalty(10.0)])
    r0, r1 = fit_ranks(tmp_path, model, H.OrderedToy(num_samples=256, batch_size=8), 2, per_step=False)
    assert len(r0["z_log"]) == len(r1["z_log"]) == 2
    for z0, z1 in zip(r0["z_log"], r1["z_log"]):
        assert not torch.equal(z0, z1), "both ranks drew the same noise batch"
    for e0, e1 in zip(r0["eps_log"], r1["eps_log"]):
        assert not torch.equal(e0, e1), "both ranks drew the same gradient-penalty interpolation weights"
