"""Progress bars and honest metric names, end to end.

Bars: every long step (``sample``, ``evaluate``, reference features, the metric callbacks, classifier training)
draws a tqdm bar on stderr when stderr is a terminal, and none when it is not or with ``--quiet``. A terminal is
either faked (an in-memory stream whose ``isatty()`` is true, put in place of ``sys.stderr``) or, in one slow
test, a real pseudo-terminal around ``python -m gan_lightning``.

Names: the image metrics' keys carry the feature space (``fid_mnist`` for the mnist5k classifier), JSON outputs
state the extractor and the counts used, and with ``model.refinement`` plain keys are the generator's own samples
while ``*_refined`` are the refined ones.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gan_lightning.commands import main
from gan_lightning.commands.checkpoints import load_gan
from gan_lightning.data import EmbeddedMNIST
from gan_lightning.metrics.callbacks import ImageMetrics
from gan_lightning.metrics.classifier import training as classifier_training
from gan_lightning.metrics.features import DomainFeatures, FeatureExtractor, InceptionFeatures
from gan_lightning.metrics.image import (METRICS, FeatureSet, compute, extract, frechet_distance, generated_features,
                                         metric_key, named_metrics, real_uint8)
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator
from gan_lightning.runtime.console import progress, progress_shown, quiet_if
from gan_lightning.sampling.refinement import LatentRefinement
from gan_lightning.training.system import GAN

REPO = Path(__file__).resolve().parents[1]
BAR = re.compile(r"\d+%\|")  # what a tqdm bar looks like: "samples:  40%|████      | 20/50 [...]"

pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")


class Terminal(io.StringIO):
    """An in-memory stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """An in-memory stderr that is not a terminal (a log file, a pipe)."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


REFINED_MNIST = {
    "seed_everything": 0,
    "model": {
        "generator": {"class_path": "gan_lightning.nets.DCGANGenerator", "init_args": {"latent_dim": 8, "ngf": 8}},
        "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator", "init_args": {"ndf": 8}},
        "refinement": {"class_path": "gan_lightning.sampling.LatentRefinement",
                       "init_args": {"steps": 2, "step_size": 0.5}},
    },
    "data": {"class_path": "gan_lightning.data.EmbeddedMNIST", "init_args": {"labels": "none", "batch_size": 16}},
    # 30 steps: enough for G's batch-norm running statistics (used in eval mode, where samples are drawn) to move
    # from their initial values, under which the untrained G draws nearly the same image for every noise.
    "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 30, "enable_progress_bar": False,
                "enable_model_summary": False},
}


@pytest.fixture(scope="module")
def refined_ckpt(tmp_path_factory) -> str:
    """A tiny unconditional DCGAN with ``model.refinement``, fitted for 30 steps through the CLI."""
    root = tmp_path_factory.mktemp("progress")
    config = root / "refined.yaml"
    config.write_text(yaml.safe_dump(REFINED_MNIST))
    assert main(["fit", "--config", str(config), "--wandb=disabled", f"--run_dir={root / 'run'}"]) == 0
    return str(root / "run" / "checkpoints" / "last.ckpt")


# ---------------------------------------------------------------------------------------------- the helper
def test_progress_draws_only_on_a_terminal_and_never_when_quiet(monkeypatch):
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert progress_shown() is shown
        with progress(7, "work", unit="item") as bar:
            for _ in range(7):
                bar.update(1)
        text = stream.getvalue()
        assert bool(BAR.search(text)) is shown, text
        if shown:
            assert "work: 100%" in text and "7/7" in text
        else:
            assert text == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert not progress_shown(enabled=False)
    with quiet_if(True):
        assert not progress_shown()
        with progress(3, "quiet work") as bar:
            bar.update(3)
    assert progress_shown(), "quiet_if put the setting back"
    assert terminal.getvalue() == ""


# --------------------------------------------------------------------------------------------- the commands
def test_sample_shows_a_bar_on_a_terminal_only(refined_ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.npz"
    args = ["sample", "--ckpt_path", refined_ckpt, "--num", "30", "--batch_size", "8", "--out", str(out),
            "--png_dir", str(tmp_path / "png")]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(args) == 0
    text = terminal.getvalue()
    assert "samples: 100%" in text and "30/30" in text, text
    assert "PNG files: 100%" in text
    for quiet, stream in ((True, Terminal()), (False, io.StringIO())):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(args + (["--quiet"] if quiet else [])) == 0
        assert not BAR.search(stream.getvalue()), stream.getvalue()
    # Drawn one batch at a time under the bar, the samples are those of one draw; refined, and the file says so.
    model = load_gan(refined_ckpt, "cpu")
    from gan_lightning.sampling.draw import draw, to_uint8

    with np.load(out) as f:
        assert bool(f["refined"]) is True
        np.testing.assert_array_equal(f["samples"], to_uint8(draw(model, 30, seed=0)).numpy())
    assert "refined by LatentRefinement(steps=2" in capsys.readouterr().out


def test_evaluate_names_features_counts_and_refinement_and_shows_bars(refined_ckpt, tmp_path, monkeypatch,
                                                                     classifier_cache):
    monkeypatch.setattr(classifier_training, "train_classifier", None)  # the tiny cached classifier only
    out = tmp_path / "e.json"
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["evaluate", "--ckpt_path", refined_ckpt, "--num", "40", "--num_reference", "60",
                 "--metrics=[fid,kid]", "--out", str(out)]) == 0
    text = terminal.getvalue()
    for step in ("reference features", "samples", "refined samples", "metrics of the samples",
                 "metrics of the refined samples"):
        assert re.search(re.escape(step) + r": +100%", text), (step, text)
    got = json.loads(out.read_text())
    ext = DomainFeatures().prepare()
    assert got["extractor"] == ext.name and got["features"] == ext.description
    assert (got["num_samples"], got["num_reference"]) == (40, 60)
    assert got["refinement"].startswith("LatentRefinement(")
    assert {"fid_mnist", "kid_mnist", "kid_std_mnist", "fid_mnist_refined", "kid_mnist_refined"} <= set(got)
    assert not {"fid", "kid", "fid_refined", "fid_mnist_unrefined"} & set(got)
    # Plain keys: the generator's own samples, computed here by hand; the refined ones differ.
    model = load_gan(refined_ckpt, "cpu")
    real, _ = real_uint8(EmbeddedMNIST(labels="none"), 60, 0)
    ref = extract(ext, real)[0]
    own = generated_features(model, ext, 40, seed=0, refine=False).features
    refined = generated_features(model, ext, 40, seed=0, refine=True).features
    assert got["fid_mnist"] == pytest.approx(frechet_distance(own, ref), rel=1e-6)
    assert got["fid_mnist_refined"] == pytest.approx(frechet_distance(refined, ref), rel=1e-6)
    assert got["fid_mnist"] != pytest.approx(got["fid_mnist_refined"], rel=1e-6)

    # A samples file written by `sample` from this model holds refined samples: its values are *_refined.
    npz = tmp_path / "s.npz"
    assert main(["sample", "--ckpt_path", refined_ckpt, "--num", "40", "--out", str(npz), "--quiet"]) == 0
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert main(["evaluate", "--samples", str(npz), "--data", "gan_lightning.data.EmbeddedMNIST",
                 "--data.init_args.labels=none", "--num_reference", "60", "--metrics=[fid]", "--out", str(out)]) == 0
    from_file = json.loads(out.read_text())
    assert from_file["refined"] is True and set(from_file) & {"fid_mnist", "fid_mnist_refined"} == {"fid_mnist_refined"}
    assert from_file["fid_mnist_refined"] == pytest.approx(got["fid_mnist_refined"], rel=1e-5)
    assert not BAR.search(pipe.getvalue()), "a bar went to a stderr that is not a terminal"

    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["evaluate", "--samples", str(npz), "--data", "gan_lightning.data.EmbeddedMNIST",
                 "--num_reference", "60", "--metrics=[fid]", "--quiet=true", "--out", str(out)]) == 0
    assert not BAR.search(quiet.getvalue())


def test_classifier_training_shows_a_bar_a_log_line_or_nothing(tmp_path, monkeypatch):
    kwargs = dict(out=str(tmp_path / "c.pt"), width=4, batch_size=64, max_steps=4)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    classifier_training.train_classifier("mnist5k", **kwargs)
    assert re.search(r"mnist5k classifier: 100%\|.*4/4", terminal.getvalue()), terminal.getvalue()
    assert "loss" in terminal.getvalue()  # the loss of the last step, in the bar's postfix
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    classifier_training.train_classifier("mnist5k", **kwargs)
    assert not BAR.search(pipe.getvalue()) and re.search(r"step 4/4 +loss \d", pipe.getvalue()), pipe.getvalue()
    silent = Terminal()
    monkeypatch.setattr(sys, "stderr", silent)
    classifier_training.train_classifier("mnist5k", verbose=False, **kwargs)
    assert silent.getvalue() == ""


def test_classifier_command_quiet_prints_only_its_result(tmp_path, monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "c.pt"
    assert main(["classifier", "--data", "mnist5k", "--epochs", "1", "--batch_size", "1000", "--width", "4",
                 "--out", str(out), "--quiet"]) == 0
    assert terminal.getvalue() == "" and out.is_file()
    assert "mnist5k classifier: test accuracy" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- the callbacks
def _refining_gan() -> GAN:
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=8, ngf=8)
    d = DCGANDiscriminator(ndf=8)
    return GAN(g, d, refinement=LatentRefinement(steps=2, step_size=0.5))


@pytest.mark.parametrize("bar", [True, False])
def test_image_metrics_callback_bars_follow_the_trainers_and_keys_say_what_was_measured(
        bar, classifier_cache, make_trainer, monkeypatch, tmp_path):
    monkeypatch.setattr(classifier_training, "train_classifier", None)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    model = _refining_gan()
    callback = ImageMetrics(every_n_steps=0, num_samples=30, num_reference=40, metrics=["fid", "class_histogram"])
    trainer = make_trainer(30, callbacks=[callback], enable_progress_bar=bar)  # 30: see REFINED_MNIST
    trainer.fit(model, datamodule=EmbeddedMNIST(labels="none", batch_size=16))
    text = terminal.getvalue()
    if bar:
        for step in ("reference features", "metrics: samples", "metrics: refined samples"):
            assert step in text, (step, text)
    else:
        assert not BAR.search(text), text
    keys = {"fid_mnist", "classes_covered", "class_entropy"}
    assert set(callback.last) == keys | {f"{k}_refined" for k in keys}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["image_metrics"]["num_samples"] == 30 and written["image_metrics"]["num_reference"] == 40
    assert written["fid_mnist"] == pytest.approx(callback.last["fid_mnist"])
    # The plain value is the generator's own samples.
    ext = DomainFeatures().prepare()
    own = generated_features(model, ext, 30, seed=0, refine=False)
    real, _ = real_uint8(EmbeddedMNIST(labels="none"), 40, 0)
    assert callback.last["fid_mnist"] == pytest.approx(frechet_distance(own.features, extract(ext, real)[0]), rel=1e-6)
    assert callback.last["fid_mnist"] != pytest.approx(callback.last["fid_mnist_refined"], rel=1e-6)


# -------------------------------------------------------------------------------------------------- names
class Pixels(FeatureExtractor):
    """A user-defined extractor that sets no tag: its values carry its class name."""

    name = "pixels"
    num_features = 4

    def forward(self, images):
        return images.flatten(1)[:, :4].float()


def test_metric_keys_name_the_feature_space_and_the_refinement():
    assert metric_key("fid", "") == "fid" and metric_key("kid_std", "mnist") == "kid_std_mnist"
    assert metric_key("fid", "mnist", refined=True) == "fid_mnist_refined"
    assert InceptionFeatures().tag == ""  # the standard network keeps the standard names (no weights loaded here)
    assert DomainFeatures("mnist5k").tag == DomainFeatures("MNIST").tag == "mnist"
    assert DomainFeatures("FashionMNIST").tag == "fashion" and DomainFeatures("CIFAR10").tag == "cifar10"
    assert Pixels().tag == "pixels"
    assert "299" in InceptionFeatures.description and "without antialiasing" in InceptionFeatures.description
    # Feature-space values are tagged; classifier decisions keep their names.
    g = torch.Generator().manual_seed(0)
    gen = FeatureSet(torch.randn(60, 4, generator=g), torch.randn(60, 10, generator=g), torch.arange(60) % 10)
    ref = FeatureSet(torch.randn(80, 4, generator=g) + 1, None, torch.arange(80) % 10)
    names = ["fid", "kid", "accuracy", "class_histogram", "intra_fid", "pr", "is"]
    bare = compute(names, gen, ref, kid_subsets=5, kid_subset_size=20, is_splits=2)
    named = named_metrics(names, gen, ref, "fashion", refined=True, kid_subsets=5, kid_subset_size=20, is_splits=2)
    spaced = {"fid", "kid", "kid_std", "intra_fid", "precision", "recall", "is", "is_std"}
    assert named == {(f"{k}_fashion_refined" if k in spaced else f"{k}_refined"): v for k, v in bare.items()}
    assert set(bare) == spaced | {"accuracy", "classes_covered", "class_entropy"}
    assert set(METRICS) == set(names)
    assert all(math.isfinite(v) for v in named.values())


# ------------------------------------------------------------------------------------- a real terminal
@pytest.mark.slow
def test_a_real_terminal_gets_a_bar_and_quiet_silences_it(refined_ckpt, tmp_path):
    """``python -m gan_lightning sample`` under a pseudo-terminal: a bar; with ``--quiet``: none."""
    import pty
    import subprocess

    def run(*extra: str) -> str:
        leader, follower = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
        cmd = [sys.executable, "-m", "gan_lightning", "sample", "--ckpt_path", refined_ckpt, "--num", "64",
               "--batch_size", "16", "--out", str(tmp_path / "t.npz"), *extra]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        os.close(leader)
        assert proc.wait(timeout=120) == 0
        return b"".join(chunks).decode(errors="replace")

    shown = run()
    assert re.search(r"samples: 100%\|.*64/64", shown), shown
    assert not BAR.search(run("--quiet"))
