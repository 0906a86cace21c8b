"""``python -m gan_lightning sample`` on checkpoints written by ``fit``.

Three tiny models are trained once through the CLI into a temporary folder: a toy 2D model, an unconditional
DCGAN on the embedded MNIST subset (with an EMA generator) and a class-conditional one (LabelConcat on both
networks). The commands run in-process through ``gan_lightning.commands.main`` (what ``python -m gan_lightning``
calls); one test runs the real module in a subprocess to check the exit code a shell sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan_lightning.commands import main
from gan_lightning.commands.checkpoints import load_gan
from gan_lightning.sampling.draw import noise_for

REPO = Path(__file__).resolve().parents[1]

TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False}
LABEL_CONCAT = {"class_path": "gan_lightning.conditioning.LabelConcat"}

CONFIGS = {
    "toy": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.MLPGenerator",
                          "init_args": {"out_shape": [2], "latent_dim": 2, "hidden": [16, 16]}},
            "discriminator": {"class_path": "gan_lightning.nets.MLPDiscriminator",
                              "init_args": {"in_shape": [2], "hidden": [16], "maxout_pieces": 2}},
        },
        "data": {"class_path": "gan_lightning.data.ToyDataModule",
                 "init_args": {"name": "ring", "num_samples": 2000, "batch_size": 32}},
        "trainer": {**TRAINER, "max_steps": 20},
    },
    "mnist": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.DCGANGenerator",
                          "init_args": {"latent_dim": 8, "ngf": 8}},
            "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator",
                              "init_args": {"ndf": 8}},
            "ema_decay": 0.5,
        },
        "data": {"class_path": "gan_lightning.data.EmbeddedMNIST", "init_args": {"labels": "none", "batch_size": 16}},
        "trainer": {**TRAINER, "max_steps": 4},
    },
    "cmnist": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.DCGANGenerator",
                          "init_args": {"latent_dim": 8, "ngf": 8, "conditioning": LABEL_CONCAT}},
            "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator",
                              "init_args": {"ndf": 8, "conditioning": LABEL_CONCAT}},
        },
        "data": {"class_path": "gan_lightning.data.EmbeddedMNIST", "init_args": {"labels": "class", "batch_size": 16}},
        "trainer": {**TRAINER, "max_steps": 4},
    },
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Trains each model once; returns name -> run directory."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, config in CONFIGS.items():
        cfg = root / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        run_dir = root / name
        rc = main(["fit", "--config", str(cfg), "--wandb=disabled", f"--run_dir={run_dir}"])
        assert rc == 0
        runs[name] = run_dir
    return runs


def ckpt(trained, name: str) -> str:
    return str(trained[name] / "checkpoints" / "last.ckpt")


def sample(trained, name: str, out: Path, *args: str) -> np.lib.npyio.NpzFile:
    rc = main(["sample", "--ckpt_path", ckpt(trained, name), "--out", str(out), *args])
    assert rc == 0
    return np.load(out)


def test_fit_keeps_checkpoint_and_resolved_config(trained):
    for name, run_dir in trained.items():
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["trainer"]["max_steps"] == CONFIGS[name]["trainer"]["max_steps"]
        assert config["data"]["class_path"] == CONFIGS[name]["data"]["class_path"]
        state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        assert state["global_step"] == CONFIGS[name]["trainer"]["max_steps"]


def test_toy_samples_are_float_points(trained, tmp_path, capsys):
    data = sample(trained, "toy", tmp_path / "x.npz", "--num", "37", "--grid", str(tmp_path / "g.png"))
    assert set(data.files) == {"samples"}  # unconditional: no labels
    assert data["samples"].dtype == np.float32 and data["samples"].shape == (37, 2)
    assert np.isfinite(data["samples"]).all()
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert "37 samples" in capsys.readouterr().out


def test_seed_fixes_samples_and_sample_i_does_not_depend_on_batching(trained, tmp_path):
    a = sample(trained, "toy", tmp_path / "a.npz", "--num", "37", "--seed", "3")["samples"]
    b = sample(trained, "toy", tmp_path / "b.npz", "--num", "37", "--seed", "3", "--batch_size", "5")["samples"]
    c = sample(trained, "toy", tmp_path / "c.npz", "--num", "10", "--seed", "3")["samples"]
    d = sample(trained, "toy", tmp_path / "d.npz", "--num", "37", "--seed", "4")["samples"]
    e = sample(trained, "toy", tmp_path / "e.npz", "--num", "37", "--seed", "3")["samples"]
    np.testing.assert_array_equal(a, e)
    # Sample i gets the same noise however the draw is split; the generator's float arithmetic may differ in
    # the last bits between batch sizes.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[:10], c, rtol=1e-5, atol=1e-6)
    assert np.abs(a - d).max() > 1e-3


def test_image_samples_are_uint8_from_the_ema_generator(trained, tmp_path):
    data = sample(trained, "mnist", tmp_path / "x.npz", "--num", "37", "--grid", str(tmp_path / "g.png"))
    x = data["samples"]
    assert set(data.files) == {"samples"}
    assert x.dtype == np.uint8 and x.shape == (37, 1, 28, 28)
    assert x.std() > 0  # not a constant image
    assert (tmp_path / "g.png").is_file()

    # The model has an EMA generator and it differs from the live one after training: sample must use it.
    model = load_gan(ckpt(trained, "mnist"))
    assert model.generator_ema is not None
    z = noise_for(torch.arange(37), model.latent_dim, model.latent_prior, seed=0)
    with torch.no_grad():
        ema = model.generator_ema.eval()(z)
        live = model.generator.eval()(z)
    assert not torch.allclose(ema, live)
    expected = ema.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    assert np.abs(x.astype(int) - expected.astype(int)).max() <= 1  # rounding at a grey-level boundary at most
    assert (x == expected).mean() > 0.99

    live_x = sample(trained, "mnist", tmp_path / "live.npz", "--num", "37", "--ema", "live")["samples"]
    assert not np.array_equal(live_x, x)


def test_same_seed_same_images_other_seed_other_images(trained, tmp_path):
    a = sample(trained, "mnist", tmp_path / "a.npz", "--num", "8", "--seed", "1")["samples"]
    b = sample(trained, "mnist", tmp_path / "b.npz", "--num", "8", "--seed", "1")["samples"]
    c = sample(trained, "mnist", tmp_path / "c.npz", "--num", "8", "--seed", "2")["samples"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_conditional_labels_spread_evenly_over_classes(trained, tmp_path):
    data = sample(trained, "cmnist", tmp_path / "x.npz", "--num", "37", "--grid", str(tmp_path / "g.png"))
    x, y = data["samples"], data["labels"]
    assert x.dtype == np.uint8 and x.shape == (37, 1, 28, 28)
    assert y.dtype == np.int64 and y.shape == (37,)
    counts = np.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.min() == 3 and counts.max() == 4  # 37 = 7 * 4 + 3 * 3
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG"


def test_conditional_given_labels_are_cycled_and_used(trained, tmp_path):
    data = sample(trained, "cmnist", tmp_path / "x.npz", "--num", "7", "--labels", "[3,5]", "--seed", "0")
    np.testing.assert_array_equal(data["labels"], [3, 5, 3, 5, 3, 5, 3])
    assert data["labels"].dtype == np.int64
    # The same noise with another label gives another image: the label reaches the generator.
    threes = sample(trained, "cmnist", tmp_path / "3.npz", "--num", "7", "--labels", "[3]", "--seed", "0")["samples"]
    np.testing.assert_array_equal(data["samples"][0::2], threes[0::2])
    assert not np.array_equal(data["samples"][1::2], threes[1::2])


@pytest.mark.parametrize("labels", ["[3,10]", "[-1]"])
def test_label_outside_classes_is_a_one_line_error(trained, tmp_path, capsys, labels):
    out = tmp_path / "x.npz"
    rc = main(["sample", "--ckpt_path", ckpt(trained, "cmnist"), "--num", "4", "--out", str(out), "--labels", labels])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --labels"), err
    assert "[0, 10)" in lines[0]
    assert not out.exists()


def test_labels_for_an_unconditional_model_is_an_error(trained, tmp_path, capsys):
    rc = main(["sample", "--ckpt_path", ckpt(trained, "mnist"), "--num", "4", "--out", str(tmp_path / "x.npz"),
               "--labels", "[1]"])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: --labels")


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope" / "last.ckpt"
    rc = main(["sample", "--ckpt_path", str(missing), "--num", "4", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: --ckpt_path") and str(missing) in err


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"not a checkpoint")
    rc = main(["sample", "--ckpt_path", str(bad), "--num", "4", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: --ckpt_path") and str(bad) in err


@pytest.mark.slow
def test_missing_checkpoint_exit_code_from_the_shell(tmp_path):
    """The real entry point: exit status 2 and one line on stderr, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "gan_lightning", "sample", "--ckpt_path", "missing.ckpt", "--num", "4", "--out", "x.npz"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --ckpt_path") and "missing.ckpt" in lines[0], proc.stderr
    assert not (tmp_path / "x.npz").exists()


class _Marker:
    """Unpickling this creates a file: a stand-in for code a malicious checkpoint would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_checkpoint_with_unknown_pickled_object_is_refused(trained, tmp_path, capsys):
    """sample/evaluate read checkpoints with weights_only=True: an object outside tensors and plain values is
    refused in one line saying how to trust the file, and its code does not run; --trust_checkpoint opts in."""
    marker = tmp_path / "code-ran"
    data = torch.load(ckpt(trained, "toy"), weights_only=False)
    data["extra"] = _Marker(str(marker))
    evil = tmp_path / "evil.ckpt"
    torch.save(data, evil)
    assert not marker.exists()
    assert main(["sample", "--ckpt_path", str(evil), "--num", "3", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ckpt_path:") and "--trust_checkpoint" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not marker.exists()
    assert main(["evaluate", "--ckpt_path", str(evil), "--num", "4", "--num_reference", "4"]) == 2
    assert not marker.exists()
    assert main(["sample", "--ckpt_path", str(evil), "--num", "3", "--out", str(tmp_path / "s.npz"),
                 "--trust_checkpoint", "true"]) == 0
    assert marker.exists()  # trusted explicitly: fully unpickled


def test_checkpoints_record_provenance(trained):
    from gan_lightning import __version__

    data = torch.load(ckpt(trained, "mnist"), weights_only=True)  # what fit writes loads without unpickling code
    prov = data["provenance"]
    assert prov["version"] == __version__
    assert "model:" in prov["config"] and "generator:" in prov["config"]
