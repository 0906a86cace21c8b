"""The benchmarks: ``benchmarks/run.py --quick`` writes a complete report with its plots, the hand-written loops
of the step-speed comparison do exactly what ``fit`` does, the GPU command refuses a machine without CUDA in one
line, and the pieces that turn logs into tables compute what they say. No timings are asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import yaml

from bench_helpers import REPO, table_rows  # and benchmarks/ on sys.path

NUMBER = r"[-+]?\d[\d,]*\.?\d*"


@pytest.mark.slow
def test_quick_report_has_every_section_with_numbers_and_plots(tmp_path, classifier_cache):
    from PIL import Image

    from bench_common import GPU_BEGIN, GPU_END, METHODS_BEGIN, METHODS_END

    out = tmp_path / "BENCHMARKS.md"
    # A GPU section written earlier by benchmarks/gpu.py and the hand-written methods section survive the CPU report.
    out.write_text(f"# old\n\n{GPU_BEGIN}\n## GPU\n\nsentinel 1,234 img/s\n{GPU_END}\n\n"
                   f"{METHODS_BEGIN}\n## Methods and notes\n\nsentinel method note\n{METHODS_END}\n")
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--out", str(out), "--results",
                           str(tmp_path / "plots")], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()

    # Machine, command, date.
    for field in ("**CPU**", "**threads used**", "**software**", "**command**", "**date**"):
        assert field in text
    assert "benchmarks/run.py --quick" in text and "torch " in text
    assert re.search(r"\*\*date\*\*: \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    for title in ("## Training-step speed (CPU)", "## Start-up", "## Time to quality",
                  "## Lazy regularization (R1 every 16 D steps)", "## GPU", "## Methods and notes"):
        assert text.count(title) == 1, title
    assert "# old" not in text and text.count(GPU_BEGIN) == 1 and "sentinel 1,234 img/s" in text
    assert text.count(METHODS_BEGIN) == text.count(METHODS_END) == 1 and "sentinel method note" in text

    # Step speed: both models, six variants each, numeric times, ratios and overheads.
    rows = table_rows(text, "| variant |")
    assert [r[0] for r in rows] == ["plain", "gan_lightning", "lightning_floor", "lightning_public", "lightning_usual",
                                    "plain_again"] * 2
    for variant, ms, speed, overhead in rows:
        assert float(ms) > 0
        assert re.fullmatch(r"\d+\.\d{3}x", speed)
        assert float(speed[:-1]) > 0
        assert overhead == "—" if variant == "plain" else re.fullmatch(NUMBER, overhead)
    assert [r[2] for r in rows[::6]] == ["1.000x", "1.000x"]
    against_public = re.findall(r"gan_lightning against `lightning_public` .*: (\d+\.\d{3})x, ([-+]\d+\.\d\d) ms", text)
    assert len(against_public) == 2 and all(float(ratio) > 0 for ratio, _ in against_public)
    assert "cgan_mnist5k networks" in text and "toy_ring networks" in text
    # Lightning's loop alone: fit of an empty step, the data loader alone, and their difference.
    loop = table_rows(text, "| what | ms per training step")
    assert [r[0] for r in loop] == ["fit, empty step", "data loader alone", "Lightning's loop (difference, median over rounds)"]
    assert float(loop[0][1]) > 0 and float(loop[1][1]) > 0 and re.fullmatch(NUMBER, loop[2][1])

    # Start-up: import torch, --help, import the package, import Lightning, the default experiment's first step;
    # then the two checks against their targets.
    rows = table_rows(text, "| command |")
    assert len(rows) == 5 and all(float(r[2].split()[0]) > 0 for r in rows)
    assert ["import torch" in rows[0][0], "--help" in rows[1][0], "import gan_lightning" in rows[2][0],
            "import lightning.pytorch" in rows[3][0], "cgan_mnist5k.yaml --trainer.max_steps=1" in rows[4][0]] == [True] * 5
    checks = table_rows(text, "| check | measured | target | met |")
    assert [r[0] for r in checks] == ["`--help` / `import torch`", "first training step - `import lightning.pytorch`"]
    assert all(r[3] in ("yes", "no") for r in checks)

    # Time to quality: one row per evaluation (every 20 of 40 toy steps, every 10 of 20 cgan steps).
    toy = table_rows(text, "| step | training s | modes_refined |")
    cgan = table_rows(text, "| step | training s | fid_mnist |")
    assert [r[0] for r in toy] == ["20", "40"] and [r[0] for r in cgan] == ["10", "20"]
    for step, seconds, *values in toy + cgan:
        assert float(seconds) > 0 and all(re.fullmatch(NUMBER + "%?", v) for v in values)
    assert all(0 <= float(r[2]) <= 25 and 0 <= float(r[3].rstrip("%")) <= 100 for r in toy)
    share = table_rows(text, "| experiment | callback |")
    assert [r[:3] for r in share] == [["toy_grid", "ToyMetrics", "20"], ["cgan_mnist5k", "ImageMetrics", "10"]]
    for row in share:
        assert row[3] == "3"  # two on the cadence (the last at the final step) and the final evaluation
        assert 0 < float(row[7].rstrip("%")) <= 100

    # Lazy regularization: a row per experiment and R1 interval, with its step time and the judged quality.
    lazy = table_rows(text, "| experiment | every | ms / step | speed vs every=1 |")
    assert [(r[0], r[1]) for r in lazy] == [("toy", "1"), ("toy", "16"), ("default", "1"), ("default", "16")]
    for row in lazy:
        assert float(row[2]) > 0 and re.fullmatch(r"\d+\.\d{3}x", row[3]) and float(row[-1]) > 0
        assert sum(bool(re.fullmatch(NUMBER + "%?", cell)) for cell in row[4:-1]) >= 2  # its quality values
    assert [r[3] for r in lazy[::2]] == ["1.000x", "1.000x"]

    # Plots: linked, existing, decodable PNGs.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(links) == 2
    for link in links:
        path = out.parent / link
        assert path.is_file() and path.parent == tmp_path / "plots"
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.load()
            assert image.size[0] > 100 and image.size[1] > 100


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["toy", "dcgan"])
def test_hand_written_loops_reach_the_weights_fit_reaches(model):
    """The step-speed reference loop does exactly gan_lightning's math: from the same seed, three steps give the
    same G, D and EMA weights bit for bit, in fit and in the public-API floor."""
    import step_speed as S
    from gan_lightning.objectives.regularizers import R1
    from gan_lightning.training.system import GAN

    steps = 3
    if model == "toy":
        g, d = S.toy_nets()
        ema = S.ema_copy(g, lambda: S.toy_nets()[0])
        torch.manual_seed(5)
        S.plain_toy_loop(g, d, ema, S.cycle(S.toy_data(100).train_dataloader()), steps, 0, total_steps=4)
        g2, d2 = S.toy_nets()
        schedule = S.toy_schedule(4)
        fitted = GAN(g2, d2, loss="non_saturating", regularizers=[R1(gamma=S.TOY_R1_GAMMA)], ema_decay=S.TOY_EMA,
                     g_optimizer=S.toy_adam, d_optimizer=S.toy_adam, g_lr_scheduler=schedule, d_lr_scheduler=schedule)
        datamodule = S.toy_data(100)
    else:
        g, d = S.nets()
        ema = S.ema_copy(g, lambda: S.nets()[0])
        torch.manual_seed(5)
        S.plain_image_loop(g, d, ema, S.cycle(S.data(64).train_dataloader()), steps, 0)
        g2, d2 = S.nets()
        fitted = S.default_gan(g2, d2)
        datamodule = S.data(64)
    initial = S.toy_nets()[0] if model == "toy" else S.nets()[0]
    torch.manual_seed(5)
    S._trainer(steps, S._Clock(0)).fit(fitted, datamodule)
    assert _max_difference(g, initial) > 1e-4  # they trained
    assert _max_difference(g, fitted.generator) == 0.0
    assert _max_difference(d, fitted.discriminator) == 0.0
    assert _max_difference(ema, fitted.generator_ema) == 0.0
    # The public-API floor (the hand-written step through manual_backward and the strategy) is the same math too.
    floor = S.LightningFloor(model, 4, public=True)
    torch.manual_seed(5)
    S._trainer(steps, S._Clock(0)).fit(floor, S.toy_data(100) if model == "toy" else S.data(64))
    assert _max_difference(g, floor.generator) == 0.0
    assert _max_difference(d, floor.discriminator) == 0.0
    assert _max_difference(ema, floor.ema) == 0.0


def test_gpu_command_without_cuda_fails_with_one_line(monkeypatch, capsys, tmp_path):
    import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "BENCHMARKS.md"
    assert gpu.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "CUDA" in err
    assert not out.exists()


def test_gpu_section_is_replaced_and_the_rest_kept():
    from bench_common import GPU_BEGIN, GPU_END, gpu_section, with_gpu_section

    first = f"{GPU_BEGIN}\n## GPU\nfirst\n{GPU_END}"
    second = f"{GPU_BEGIN}\n## GPU\nsecond\n{GPU_END}"
    report = with_gpu_section("# Benchmarks\n\n## Start-up\n\ntable\n", first)
    assert report.startswith("# Benchmarks\n\n## Start-up\n\ntable\n") and gpu_section(report) == first
    again = with_gpu_section(report + "\ntrailing\n", second)
    assert gpu_section(again) == second and "first" not in again
    assert again.startswith("# Benchmarks\n\n## Start-up\n\ntable\n") and again.endswith("\ntrailing\n")
    assert again.count(GPU_BEGIN) == again.count(GPU_END) == 1


@pytest.mark.slow
def test_precision_throughput_cpu_path_fills_every_cell(capsys):
    import precision_throughput

    rc = precision_throughput.main(["--accelerator", "cpu", "--arch", "dcgan", "resnet", "--batch", "4",
                                    "--precision", "fp32", "bf16-mixed", "16-mixed", "--steps", "2", "--warmup", "1",
                                    "--rounds", "1", "--width", "4", "--threads", "1"])
    assert rc == 0
    rows = table_rows(capsys.readouterr().out, "| network |")
    assert [(r[0].split()[0], r[2]) for r in rows] == [(a, p) for a in ("conditional", "SNGAN")
                                                       for p in ("fp32", "bf16-mixed", "16-mixed")]
    for row in rows:
        assert float(row[3].replace(",", "")) > 0 and float(row[4].replace(",", "")) > 0
        assert re.fullmatch(r"\d+\.\d{3}x", row[5]) and re.fullmatch(r"\d+\.\d{2}x", row[6])
    assert [r[6] for r in rows[::3]] == ["1.00x", "1.00x"]


def test_metrics_log_becomes_points_at_the_evaluation_times(tmp_path):
    import time_to_quality as T

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,progress/seconds,step,val/modes_refined,val/high_quality_refined\n"
                   "0,1.0,9,,\n,,10,3,50.0\n0,2.0,19,,\n0,3.0,29,,\n,,30,5,80.0\n,,30,6,82.5\n")
    series = T.read_metrics_csv(log)
    assert series["progress/seconds"][0].tolist() == [9, 19, 29]
    exp = T.EXPERIMENTS["toy_grid"]
    # Without evaluation times: progress/seconds interpolated at the step; a step logged twice keeps its last value.
    points = T.curve_points(series, exp.metrics, [])
    assert [(p["step"], p["seconds"], p["val/modes_refined"], p["val/high_quality_refined"]) for p in points] == [
        (10, pytest.approx(1.1), 3, 50.0), (30, 3.0, 6, 82.5)]
    # With them: when the (last) evaluation at the step started.
    evaluations = [{"step": 10, "start": 1.25, "seconds": 0.1}, {"step": 30, "start": 3.5, "seconds": 0.2},
                   {"step": 30, "start": 3.75, "seconds": 0.3}]
    assert [p["seconds"] for p in T.curve_points(series, exp.metrics, evaluations)] == [1.25, 3.75]


def test_metric_share_and_its_projection_to_the_experiments_cadence():
    import time_to_quality as T

    timing = {"fit_seconds": 100.0, "metric_seconds": 20.0,
              "evaluations": [{"step": s, "start": 0.0, "seconds": 4.0} for s in (1000, 2000, 3000, 4000, 4000)]}
    result = T.RunResult(T.EXPERIMENTS["cgan_mnist5k"], "cmd", steps=4000, every=1000, committed_every=2000,
                         wall_seconds=120.0, first_step_seconds=10.0, timing=timing)
    share = T.share(result)
    assert share["evaluations"] == 5 and share["per_eval"] == 4.0 and share["share"] == 0.2
    # At every 2000 steps: evaluations at 2000 and 4000 and the final one, 12 s beside 80 s of training.
    assert share["committed_count"] == 3
    assert share["projected_share"] == pytest.approx(12.0 / 92.0)
    assert T.reached("cgan_mnist5k", {"val/accuracy": 0.98}) and not T.reached("cgan_mnist5k", {"val/accuracy": 0.979})
    # The toy target judges the experiment's (refined) samples, not the generator's own.
    assert T.reached("toy_grid", {"val/modes_refined": 25, "val/high_quality_refined": 97.0})
    assert not T.reached("toy_grid", {"val/modes_refined": 25, "val/high_quality_refined": 96.9})
    assert not T.reached("toy_grid", {"val/modes_refined": 24, "val/high_quality_refined": 99.0})
    assert not T.reached("toy_grid", {"val/modes": 25, "val/high_quality": 100.0})
    assert T.committed_steps(T.EXPERIMENTS["cgan_mnist5k"]) == 4000


def test_toy_quality_judges_the_refined_samples_where_the_run_refined_them():
    import toy_quality as Q

    row = {"data": "grid", "wall_s": 100.0, "modes": 22.0, "high_quality": 93.0,
           "modes_refined": 25.0, "high_quality_refined": 99.5}
    assert Q.verdict(row) == (True, "pass")  # the generator's own 22 modes do not count against the refined 25
    assert Q.verdict({**row, "high_quality_refined": 96.0}) == (False, "FAIL: hq < 97%")
    assert Q.verdict({**row, "modes_refined": 24.0}) == (False, "FAIL: modes < 25")
    plain = {"data": "ring", "wall_s": 100.0, "modes": 8.0, "high_quality": 98.0}  # no refinement: its own samples
    assert Q.verdict(plain) == (True, "pass")
    assert Q.verdict({**plain, "high_quality": 90.0}) == (False, "FAIL: hq < 97%")


def test_first_step_time_is_found_beside_a_progress_bar():
    from bench_callbacks import first_step_time

    assert first_step_time("Epoch 0:   0%|  | 0/1 [00:00<?]first training step at 1795438872.143415\nbye") == \
        pytest.approx(1795438872.143415)
    assert first_step_time("no clock here") is None


def test_step_speed_toy_model_is_the_committed_toy_recipe():
    """The toy step-speed model is experiments/toy_ring.yaml's recipe (networks, loss, R1, EMA, optimizer, schedule)."""
    import step_speed as S

    config = yaml.safe_load((REPO / "experiments" / "toy_ring.yaml").read_text())
    model = config["model"]
    g, d = model["generator"]["init_args"], model["discriminator"]["init_args"]
    assert (g["latent_dim"], g["hidden"], g["norm"]) == (S.TOY_LATENT, S.TOY_G_HIDDEN, "none")
    assert (d["hidden"], d["maxout_pieces"]) == (S.TOY_D_HIDDEN, S.TOY_PIECES)
    assert model["loss"] == "non_saturating" and model["ema_decay"] == S.TOY_EMA
    assert [r["class_path"] for r in model["regularizers"]] == ["gan_lightning.objectives.R1"]
    assert model["regularizers"][0]["init_args"]["gamma"] == S.TOY_R1_GAMMA
    for role in ("g", "d"):
        opt = model[f"{role}_optimizer"]
        assert opt["class_path"] == "torch.optim.Adam"
        assert (opt["init_args"]["lr"], tuple(opt["init_args"]["betas"])) == (S.TOY_LR, S.TOY_BETAS)
        assert model[f"{role}_lr_scheduler"]["init_args"]["decay_start"] == S.TOY_DECAY_START
    assert config["data"]["init_args"]["batch_size"] == S.DEFAULTS["toy"][2]


def test_step_speed_default_model_is_the_committed_default_recipe():
    """The dcgan step-speed model is experiments/cgan_mnist5k.yaml's recipe: networks, conditioning, hinge loss
    with the class loss, EMA, optimizers, batch."""
    import step_speed as S

    config = yaml.safe_load((REPO / "experiments" / "cgan_mnist5k.yaml").read_text())
    model = config["model"]
    g, d = S.nets()
    g_args, d_args = model["generator"]["init_args"], model["discriminator"]["init_args"]
    assert (g.latent_dim, type(g).__name__, type(g.conditioning).__name__) == (
        g_args["latent_dim"], model["generator"]["class_path"].rsplit(".", 1)[1],
        g_args["conditioning"]["class_path"].rsplit(".", 1)[1])
    assert type(d).__name__ == model["discriminator"]["class_path"].rsplit(".", 1)[1] and d_args["norm"] == "spectral"
    assert type(d.conditioning).__name__ == "Projection" and d.conditioning.has_class_head
    assert d_args["conditioning"]["init_args"] == {"classifier": True}
    # The widths: networks built from the YAML's sizes have the benchmark's parameter shapes.
    from gan_lightning.conditioning import ConditionalBatchNorm, Projection
    from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator

    g_yaml = DCGANGenerator(latent_dim=g_args["latent_dim"], ngf=g_args["ngf"], num_classes=10,
                            conditioning=ConditionalBatchNorm())
    d_yaml = DCGANDiscriminator(ndf=d_args["ndf"], norm=d_args["norm"], num_classes=10,
                                conditioning=Projection(classifier=True))
    for built, bench in ((g_yaml, g), (d_yaml, d)):
        assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in bench.state_dict().items()}
    assert model["loss"] == "hinge" and model["ema_decay"] == S.DEFAULT_EMA
    assert [(r["class_path"], r["init_args"]["weight"]) for r in model["regularizers"]] == [
        ("gan_lightning.objectives.ClassLoss", S.DEFAULT_CLASS_WEIGHT)]
    for role in ("g", "d"):
        opt = model[f"{role}_optimizer"]
        assert opt["class_path"] == "torch.optim.Adam"
        assert (opt["init_args"]["lr"], tuple(opt["init_args"]["betas"])) == (S.DEFAULT_LR, S.DEFAULT_BETAS)
    assert config["data"]["init_args"]["batch_size"] == S.DEFAULTS["dcgan"][2]


def _turn_runner(name: str, events: list, running: list):
    """A variant for ``Turns``: each iteration records the variant's name in ``events`` and checks that no other
    variant is running at the same time."""

    def run(iterations: int, tick) -> None:
        for _ in range(iterations):
            assert running == [], f"{name} ran while {running} was running"
            running.append(name)
            events.append(name)
            running.pop()
            tick()

    return run


@pytest.mark.slow
def test_turns_run_one_variant_at_a_time_in_rotated_rounds():
    from step_speed import Turns

    events, running = [], []
    names = ["a", "b", "c"]
    turns = Turns({n: _turn_runner(n, events, running) for n in names}, steps=4, warmup=2, rounds=3)
    times = turns.run()
    # The warm-up round (2 iterations each), then 3 rounds of 4 iterations each, the order rotated by one per round.
    blocks = [events[i:i + 2] for i in range(0, 6, 2)] + [events[i:i + 4] for i in range(6, len(events), 4)]
    assert len(events) == 3 * 2 + 3 * 3 * 4
    assert [block[0] for block in blocks] == ["a", "b", "c"] + ["b", "c", "a"] + ["c", "a", "b"] + ["a", "b", "c"]
    assert all(len(set(block)) == 1 for block in blocks)
    assert set(times) == set(names)
    assert all(len(values) == 3 and all(v > 0 for v in values) for values in times.values())


def test_turns_stop_every_variant_when_one_fails():
    from step_speed import Turns

    events, running = [], []

    def failing(iterations: int, tick) -> None:
        tick()
        tick()
        raise ValueError("variant b broke")

    runners = {"a": _turn_runner("a", events, running), "b": failing, "c": _turn_runner("c", events, running)}
    with pytest.raises(ValueError, match="variant b broke"):
        Turns(runners, steps=3, warmup=2, rounds=4).run()
    # b fails at the start of the first timed round, where it goes first: a and c ran their warm-up only, and
    # stopped waiting for their turns instead of hanging.
    assert events == ["a", "a", "c", "c"]


@pytest.mark.slow
def test_turns_build_every_variant_afresh_at_the_same_rounds():
    from step_speed import Turns

    events, running, builds = [], [], []

    def counted(name: str):
        run = _turn_runner(name, events, running)

        def build_and_run(iterations: int, tick) -> None:
            builds.append((name, iterations))
            run(iterations, tick)

        return build_and_run

    names = ["a", "b"]
    # 12 rounds in units of 2, over 3 instances: 2 units each (4 rounds), every instance warming up first.
    times = Turns({n: counted(n) for n in names}, steps=3, warmup=2, rounds=12, instances=3, unit=2).run()
    # Both variants build an instance (in that round's rotated order) before either builds the next.
    assert [sorted(builds[i:i + 2]) for i in (0, 2, 4)] == [[("a", 2 + 4 * 3), ("b", 2 + 4 * 3)]] * 3
    # Per instance: a warm-up turn of 2 iterations each, then 4 rounds of 3, rotated by one per round throughout.
    assert len(events) == 3 * (2 * 2 + 4 * 2 * 3)
    assert all(len(values) == 12 and all(v > 0 for v in values) for values in times.values())
    with pytest.raises(ValueError, match="instances"):
        Turns({n: counted(n) for n in names}, steps=3, warmup=2, rounds=12, instances=4, unit=4)
    with pytest.raises(ValueError, match="multiple of unit"):
        Turns({n: counted(n) for n in names}, steps=3, warmup=2, rounds=10, instances=1, unit=4)


@pytest.mark.slow
def test_turns_collect_a_finished_instances_garbage_before_the_next_turn():
    """An instance left in a reference cycle is freed before the next instance is built, even with Python's
    automatic collection off (which would otherwise free it at some later, arbitrary moment)."""
    import gc
    import weakref

    from step_speed import Turns

    alive: list[bool] = []  # per instance: whether the previous instance of its variant was still alive at its build
    last: dict[str, weakref.ref] = {}

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    def runner(name: str):
        def build_and_run(iterations: int, tick) -> None:
            if name in last:
                alive.append(last[name]() is not None)
            instance = Cycle()
            last[name] = weakref.ref(instance)
            del instance
            for _ in range(iterations):
                tick()

        return build_and_run

    enabled = gc.isenabled()
    gc.disable()
    try:
        Turns({"a": runner("a"), "b": runner("b")}, steps=2, warmup=1, rounds=6, instances=3).run()
    finally:
        if enabled:
            gc.enable()
    assert alive == [False] * 4 and all(ref() is None for ref in last.values())


def test_measure_sums_the_turns_that_hold_one_logging_step(monkeypatch):
    import step_speed as S

    seen = {}

    class FakeTurns:
        def __init__(self, runners, steps, warmup, rounds, instances, unit):
            seen.update(steps=steps, warmup=warmup, rounds=rounds, instances=instances, unit=unit)
            self.names = list(runners)

        def run(self):  # seconds per iteration of each turn: rounds 0..9 for plain, twice that for the others
            return {name: [(r + 1) * (1 if name == "plain" else 2) for r in range(seen["rounds"])] for name in self.names}

    monkeypatch.setattr(S, "Turns", FakeTurns)
    result = S.measure("toy", steps=10, warmup=50, rounds=12, instances=10)
    # Turns of 10 iterations: 5 per figure (one logging step in 50), 12 rounds give 2 figures, so 2 instances.
    assert seen == {"steps": 10, "warmup": 50, "rounds": 10, "instances": 2, "unit": 5}
    assert result["group"] == 5 and result["rounds"] == 10
    assert result["times"]["plain"] == [3.0, 8.0]  # means of rounds 1-5 and 6-10
    assert result["times"]["gan_lightning"] == [6.0, 16.0]
    rows = {row["variant"]: row for row in S.summary(result)}
    assert rows["gan_lightning"]["speed"] == pytest.approx(0.5)
    # Turns as long as the cadence, or a warm-up off the cadence: every turn is a figure.
    assert S.measure("toy", steps=50, warmup=50, rounds=4, instances=2)["group"] == 1
    assert S.measure("toy", steps=10, warmup=20, rounds=4, instances=2)["group"] == 1
