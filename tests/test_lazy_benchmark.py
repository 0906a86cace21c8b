"""``benchmarks/lazy_regularization.py``: ``markdown`` lays fabricated results out as it says; the training runs get
the regularizer lists they claim. (Its ``--quick`` run end to end is part of ``make bench --quick``'s test in
``tests/test_benchmarks.py``.) No timings are asserted."""

from __future__ import annotations

import pytest
import yaml

from bench_helpers import REPO, table  # and benchmarks/ on sys.path

HEADER = "| experiment | every | ms / step | speed vs every=1 |"


def _fabricated() -> dict:
    return {
        "every": 16, "gamma": 0.1, "gamma_toy": 0.1, "threads": 1, "quick": False, "parallel": True,
        "machine": [("CPU", "Test CPU, 2 cores"), ("threads used", "1"), ("software", "Python 3.11")],
        "load_end": 1.5, "date": "2026-01-02 03:04 UTC",
        "command": ".venv/bin/python benchmarks/lazy_regularization.py",
        "timing": {
            "toy": {"turn": 16, "figure": 80, "figures": 3, "instances": 1, "warmup": 50, "batch": 100,
                    "times": {1: [0.010, 0.012, 0.011], 16: [0.005, 0.004, 0.0055]}},
            "default": {"turn": 16, "figure": 80, "figures": 3, "instances": 1, "warmup": 50, "batch": 64,
                        "times": {1: [0.080, 0.090, 0.085], 16: [0.060, 0.060, 0.068]}},
        },
        "runs": {
            "toy": {1: {"every": 1, "wall_s": 150.25, "rc": 0, "command": "python -m gan_lightning fit --config "
                        "experiments/toy_ring.yaml ... every: 1 ...",
                        "metrics": {"step": 12000, "modes": 8.0, "high_quality": 99.12, "reverse_kl": 0.01,
                                    "modes_refined": 7.0, "high_quality_refined": 97.5}},
                    16: {"every": 16, "wall_s": 120.0, "rc": 0, "command": "python ... every: 16",
                         "metrics": {"step": 12000, "modes": 8.0, "high_quality": 98.0, "modes_refined": 8.0,
                                     "high_quality_refined": 96.25}}},
            "default": {1: {"every": 1, "wall_s": 400.0, "rc": 0, "command": "python ...",
                            "metrics": {"step": 4000, "fid_mnist": 3.456, "accuracy": 0.9812, "intra_fid_mnist": 9.5}},
                        16: {"every": 16, "wall_s": 300.0, "rc": 1, "command": "python ...", "error": "boom"}},
        },
    }


def test_markdown_of_fabricated_results():
    import lazy_regularization as L

    text = L.markdown(_fabricated())
    assert text.startswith("## Lazy regularization (R1 every 16 D steps)\n")
    assert "- **CPU**: Test CPU, 2 cores" in text and "- **date**: 2026-01-02 03:04 UTC" in text
    assert "- **command**: `.venv/bin/python benchmarks/lazy_regularization.py`" in text
    assert "StyleGAN2" in text and "toy 12,000 steps" in text and "default 4,000 steps" in text
    assert "at the same time, one per core" in text and "OMP_NUM_THREADS=1" in text

    header, rows = table(text, HEADER)
    assert header == ["experiment", "every", "ms / step", "speed vs every=1", "modes", "high_quality %",
                      "modes_refined", "high_quality_refined %", "fid_mnist", "accuracy", "intra_fid_mnist", "run wall s"]
    assert rows[0] == ["toy", "1", "11.00", "1.000x", "8", "99.12", "7", "97.50", "—", "—", "—", "150.2"]
    # Medians: 5.0 ms; speed: the median of the per-figure ratios 2.0, 3.0, 2.0.
    assert rows[1] == ["toy", "16", "5.00", "2.000x", "8", "98.00", "8", "96.25", "—", "—", "—", "120.0"]
    assert rows[2] == ["default", "1", "85.00", "1.000x", "—", "—", "—", "—", "3.46", "98.1%", "9.50", "400.0"]
    # A failed run says so in its metric cells; its step time is still shown.
    assert rows[3][:4] == ["default", "16", "60.00", "1.333x"]
    assert rows[3][8:11] == ["failed (exit 1)"] * 3 and rows[3][4:8] == ["—"] * 4 and rows[3][-1] == "300.0"


def test_markdown_of_one_experiment_keeps_its_own_columns():
    import lazy_regularization as L

    results = _fabricated()
    results["every"] = 8
    for part in ("timing", "runs"):
        del results[part]["default"]
    results["timing"]["toy"]["times"] = {1: [0.01], 8: [0.005]}
    results["runs"]["toy"] = {8: results["runs"]["toy"][16], 1: results["runs"]["toy"][1]}
    text = L.markdown(results)
    assert text.startswith("## Lazy regularization (R1 every 8 D steps)\n")
    header, rows = table(text, HEADER)
    assert "fid_mnist" not in header and "modes" in header
    assert [(r[0], r[1]) for r in rows] == [("toy", "1"), ("toy", "8")]


def test_runs_get_r1_at_the_interval_and_the_default_keeps_its_class_loss():
    import lazy_regularization as L

    def regs(name: str, every: int) -> list:
        flag, value = L.regularizers_arg(L.EXPERIMENTS[name], every, 0.1).split("=", 1)
        assert flag == "--model.regularizers"
        return yaml.safe_load(value)

    assert regs("toy", 16) == [{"class_path": "gan_lightning.objectives.R1", "init_args": {"gamma": 0.1, "every": 16}}]
    assert regs("default", 1) == [
        {"class_path": "gan_lightning.objectives.ClassLoss", "init_args": {"weight": 1.0}},
        {"class_path": "gan_lightning.objectives.R1", "init_args": {"gamma": 0.1, "every": 1}}]
    # --quick shortens the metric callbacks' cadence and nothing else.
    overlay = L.quick_overlay(L.EXPERIMENTS["default"])["trainer"]["callbacks"]
    committed = yaml.safe_load((REPO / "experiments/cgan_mnist5k.yaml").read_text())["trainer"]["callbacks"]
    assert [c["class_path"] for c in overlay] == [c["class_path"] for c in committed]
    image = next(c for c in overlay if c["class_path"].endswith("ImageMetrics"))
    assert image["init_args"] == {"every_n_steps": 10, "num_samples": 200, "num_reference": 200}


@pytest.mark.parametrize("experiment", ["toy", "default"])
def test_timed_models_carry_r1_at_the_interval(experiment):
    import lazy_regularization as L
    from gan_lightning.objectives import R1

    for every in (1, 16):
        gan = L.build_gan(experiment, every, 0.1, total_steps=10)
        r1 = [r for r in gan.regularizers if isinstance(r, R1)]
        assert len(r1) == 1 and r1[0].every == every and r1[0].gamma == 0.1


def test_inside_make_bench_the_section_has_no_title_or_machine_lines_of_its_own():
    """benchmarks/run.py writes the title and the machine once for the whole report."""
    import lazy_regularization as L

    text = L.markdown(_fabricated(), standalone=False)
    assert "## Lazy" not in text and "**CPU**" not in text and "**date**" not in text
    assert text.startswith("R1 on every D step") and table(text, HEADER)[1]
