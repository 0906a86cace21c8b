"""The sampling tools of ``python -m gan_lightning sample``: truncation, spherical interpolation, the fixed-seed
comparison grid and PNG export, on checkpoints written by ``fit``.

Four tiny models are trained once through the CLI into a temporary folder: a toy 2D model with a uniform prior,
an unconditional DCGAN with an EMA generator, a class-conditional one (LabelConcat) whose run keeps the
checkpoints of steps 2 and 4 and writes its training-time sample grids, and a spatially conditioned one
(SpatialCondition). The commands run in-process through ``gan_lightning.commands.main``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan_lightning.commands import main
from gan_lightning.commands.checkpoints import load_gan
from gan_lightning.sampling.draw import noise_for, save_pngs, slerp, to_uint8
from gan_lightning.training.system import GAN

TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False}
LABEL_CONCAT = {"class_path": "gan_lightning.conditioning.LabelConcat"}
SKETCH = {"class_path": "gan_lightning.conditioning.SpatialCondition", "init_args": {"kind": "downsample", "size": 7}}

CONFIGS = {
    "toy": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.MLPGenerator",
                          "init_args": {"out_shape": [2], "latent_dim": 4, "hidden": [16, 16]}},
            "discriminator": {"class_path": "gan_lightning.nets.MLPDiscriminator",
                              "init_args": {"in_shape": [2], "hidden": [16], "maxout_pieces": 2}},
            "latent_prior": "uniform",
        },
        "data": {"class_path": "gan_lightning.data.ToyDataModule",
                 "init_args": {"name": "ring", "num_samples": 2000, "batch_size": 32}},
        "trainer": {**TRAINER, "max_steps": 10},
    },
    "mnist": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.DCGANGenerator", "init_args": {"latent_dim": 8, "ngf": 8}},
            "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator", "init_args": {"ndf": 8}},
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
        "trainer": {**TRAINER, "max_steps": 4,
                    "callbacks": [{"class_path": "gan_lightning.metrics.SampleGrid",
                                   "init_args": {"every_n_steps": 2, "per_row": 4}}]},
    },
    "sketch": {
        "seed_everything": 0,
        "model": {
            "generator": {"class_path": "gan_lightning.nets.DCGANGenerator",
                          "init_args": {"latent_dim": 8, "ngf": 8, "conditioning": SKETCH}},
            "discriminator": {"class_path": "gan_lightning.nets.DCGANDiscriminator",
                              "init_args": {"ndf": 8, "conditioning": SKETCH}},
        },
        "data": {"class_path": "gan_lightning.data.EmbeddedMNIST", "init_args": {"labels": "none", "batch_size": 16}},
        "trainer": {**TRAINER, "max_steps": 2},
    },
}
# Two checkpoints of one run: steps 2 and 4 (and last.ckpt = step 4).
EXTRA = {"cmnist": ["--checkpoint.every_n_train_steps=2", "--checkpoint.save_top_k=-1"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Trains each model once; returns name -> run directory."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, config in CONFIGS.items():
        cfg = root / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        run_dir = root / name
        rc = main(["fit", "--config", str(cfg), "--wandb=disabled", f"--run_dir={run_dir}", *EXTRA.get(name, [])])
        assert rc == 0
        runs[name] = run_dir
    return runs


def ckpt(trained, name: str) -> str:
    return str(trained[name] / "checkpoints" / "last.ckpt")


def step_ckpt(trained, name: str, step: int) -> str:
    (path,) = (trained[name] / "checkpoints").glob(f"*step={step}.ckpt")
    return str(path)


def run(*args: str) -> int:
    return main(["sample", *args])


def sample(trained, name: str, out: Path, *args: str) -> dict[str, np.ndarray]:
    assert run("--ckpt_path", ckpt(trained, name), "--out", str(out), *args) == 0
    with np.load(out) as f:
        return dict(f)


# ---------------------------------------------------------------------------------------------- interpolation
def test_interpolation_rows_start_and_end_at_the_samples_of_the_endpoint_noise(trained, tmp_path):
    """Row r goes from sample 2r to sample 2r+1 of the seeded draw: its first and last images are exactly those
    samples as ``sample`` draws them, and its noise starts and ends at exactly their noise."""
    k, rows = 5, 3
    plain = sample(trained, "mnist", tmp_path / "s.npz", "--num", str(2 * rows), "--seed", "3")["samples"]
    data = sample(trained, "mnist", tmp_path / "i.npz", "--num", str(rows), "--interpolate", str(k), "--seed", "3")
    assert set(data) == {"samples", "t", "z"}
    x = data["samples"]
    assert x.dtype == np.uint8 and x.shape == (rows * k, 1, 28, 28)
    path = x.reshape(rows, k, 1, 28, 28)
    np.testing.assert_array_equal(path[:, 0], plain[0::2])
    np.testing.assert_array_equal(path[:, -1], plain[1::2])
    assert not np.array_equal(path[:, 1], path[:, 0])  # the inner points are other images
    np.testing.assert_array_equal(data["t"], np.tile(np.linspace(0, 1, k, dtype=np.float32), rows))
    model = load_gan(ckpt(trained, "mnist"))
    z = data["z"].reshape(rows, k, -1)
    ends = noise_for(torch.arange(2 * rows), model.latent_dim, model.latent_prior, seed=3).numpy()
    np.testing.assert_array_equal(z[:, 0], ends[0::2])
    np.testing.assert_array_equal(z[:, -1], ends[1::2])


def test_interpolation_keeps_one_class_per_row(trained, tmp_path):
    """Rows cycle through the classes (or through --labels); each row's endpoints are the samples of the
    endpoint noise with the row's class."""
    k = 4
    data = sample(trained, "cmnist", tmp_path / "i.npz", "--num", "3", "--interpolate", str(k))
    np.testing.assert_array_equal(data["labels"], np.repeat([0, 1, 2], k))
    assert data["labels"].dtype == np.int64
    same = sample(trained, "cmnist", tmp_path / "s.npz", "--num", "6", "--labels", "[0,0,1,1,2,2]")["samples"]
    path = data["samples"].reshape(3, k, 1, 28, 28)
    np.testing.assert_array_equal(path[:, 0], same[0::2])
    np.testing.assert_array_equal(path[:, -1], same[1::2])

    given = sample(trained, "cmnist", tmp_path / "g.npz", "--num", "3", "--interpolate", str(k), "--labels", "[7,2]")
    np.testing.assert_array_equal(given["labels"], np.repeat([7, 2, 7], k))
    np.testing.assert_array_equal(given["z"], data["z"])  # the class does not change the noise
    assert not np.array_equal(given["samples"], data["samples"])  # ... but reaches the generator


def test_interpolation_keeps_one_image_condition_per_row(trained, tmp_path):
    k = 3
    data = sample(trained, "sketch", tmp_path / "i.npz", "--num", "4", "--interpolate", str(k))
    c = data["conditions"]
    assert c.shape == (4 * k, 1, 7, 7) and c.dtype == np.float32
    rows = c.reshape(4, k, -1)
    assert (rows == rows[:, :1]).all()  # one condition per row
    assert not np.array_equal(rows[0, 0], rows[1, 0])  # rows take successive conditions
    plain = sample(trained, "sketch", tmp_path / "s.npz", "--num", "4")
    np.testing.assert_array_equal(rows[:, 0], plain["conditions"].reshape(4, -1))  # sample's conditions 0..3


def test_slerp_points_have_the_coefficients_and_norm_slerp_defines(trained, tmp_path):
    """Every interpolated latent is p = a sin((1-t)w)/sin(w) + b sin(tw)/sin(w), w the angle between a and b, so
    |p| = sqrt(|a|^2 sin^2((1-t)w) + |b|^2 sin^2(tw) + 2|a||b| cos(w) sin((1-t)w) sin(tw)) / sin(w); at the
    midpoint sqrt(|a|^2 + |b|^2 + 2|a||b| cos w) / (2 cos(w/2)), longer than the chord's midpoint."""
    k, rows = 5, 6
    data = sample(trained, "mnist", tmp_path / "i.npz", "--num", str(rows), "--interpolate", str(k))
    z = data["z"].astype(np.float64).reshape(rows, k, -1)
    t = data["t"].astype(np.float64)[:k]
    for row in z:
        a, b = row[0], row[-1]
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        w = math.acos(a @ b / (na * nb))
        for p, ti in zip(row, t):
            sa, sb = math.sin((1 - ti) * w) / math.sin(w), math.sin(ti * w) / math.sin(w)
            coef, residual, *_ = np.linalg.lstsq(np.stack([a, b], 1), p, rcond=None)
            np.testing.assert_allclose(coef, [sa, sb], rtol=1e-5, atol=1e-6)  # in the plane of a and b, slerp's weights
            norm = math.sqrt(na**2 * sa**2 + nb**2 * sb**2 + 2 * na * nb * math.cos(w) * sa * sb)
            assert np.linalg.norm(p) == pytest.approx(norm, rel=1e-5)
        mid = np.linalg.norm(row[k // 2])
        assert mid == pytest.approx(math.sqrt(na**2 + nb**2 + 2 * na * nb * math.cos(w)) / (2 * math.cos(w / 2)), rel=1e-5)
        assert mid > np.linalg.norm((a + b) / 2) * 1.0001  # not the straight line's midpoint


def test_slerp_keeps_the_norm_of_equal_norm_endpoints_and_is_linear_for_parallel_ones():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 16, generator=g, dtype=torch.float64)
    b = torch.randn(4, 16, generator=g, dtype=torch.float64)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    p = slerp(a, b, t)
    torch.testing.assert_close(p.norm(dim=2), a.norm(dim=1, keepdim=True).expand(4, 7))
    assert torch.equal(p[:, 0], a) and torch.equal(p[:, -1], b)
    parallel = slerp(a, 2 * a, t)  # angle 0: the straight line
    torch.testing.assert_close(parallel, a[:, None] * (1 + t[None, :, None]))


# ---------------------------------------------------------------------------------------------- truncation
def test_truncated_normal_noise_stays_within_psi_and_is_a_truncated_normal():
    """Coordinates outside [-psi, psi] are resampled inside, the others kept; the result has the truncated
    normal's standard deviation sqrt(1 - 2 psi phi(psi) / (2 Phi(psi) - 1)); sample i depends on (seed, i, psi)."""
    n, d = 3000, 32
    idx = torch.arange(n)
    z = noise_for(idx, d, "normal", seed=5)
    for psi in (0.3, 1.0, 2.0):
        zt = noise_for(idx, d, "normal", seed=5, truncation=psi)
        assert zt.abs().max() <= psi
        inside = z.abs() <= psi
        assert torch.equal(zt[inside], z[inside])
        assert (zt[~inside] != z[~inside]).all()
        phi = math.exp(-psi**2 / 2) / math.sqrt(2 * math.pi)
        std = math.sqrt(1 - 2 * psi * phi / math.erf(psi / math.sqrt(2)))
        assert float(zt.std()) == pytest.approx(std, rel=0.01)
        assert abs(float(zt.mean())) < 0.01
        # A pure function of (seed, index, psi): any subset, in any order, gets the same rows.
        some = torch.tensor([2999, 7, 1500, 0])
        assert torch.equal(noise_for(some, d, "normal", seed=5, truncation=psi), zt[some])
    assert not torch.equal(noise_for(idx, d, "normal", seed=6, truncation=0.3),
                           noise_for(idx, d, "normal", seed=5, truncation=0.3))
    assert torch.equal(noise_for(idx, d, "normal", seed=5, truncation=50.0), z)  # nothing beyond 50: unchanged


def test_truncation_reaches_the_samples_and_a_large_psi_changes_nothing(trained, tmp_path):
    model = load_gan(ckpt(trained, "mnist"))
    off = sample(trained, "mnist", tmp_path / "off.npz", "--num", "20", "--seed", "2")["samples"]
    large = sample(trained, "mnist", tmp_path / "l.npz", "--num", "20", "--seed", "2", "--truncation", "100")["samples"]
    np.testing.assert_array_equal(large, off)
    half = sample(trained, "mnist", tmp_path / "h.npz", "--num", "20", "--seed", "2", "--truncation", "0.5")["samples"]
    z = noise_for(torch.arange(20), model.latent_dim, "normal", seed=2, truncation=0.5)
    assert z.abs().max() <= 0.5
    np.testing.assert_array_equal(half, to_uint8(model.generate(z)).numpy())
    assert not np.array_equal(half, off)


def test_truncation_scales_uniform_noise(trained, tmp_path):
    model = load_gan(ckpt(trained, "toy"))
    assert model.latent_prior == "uniform"
    z = noise_for(torch.arange(30), model.latent_dim, "uniform", seed=0)
    psi = 0.25
    x = sample(trained, "toy", tmp_path / "t.npz", "--num", "30", "--truncation", str(psi))["samples"]
    np.testing.assert_array_equal(x, model.generate(z * psi).numpy())
    zt = noise_for(torch.arange(30), model.latent_dim, "uniform", seed=0, truncation=psi)
    assert torch.equal(zt, z * psi) and zt.abs().max() <= psi
    off = sample(trained, "toy", tmp_path / "o.npz", "--num", "30")["samples"]
    one = sample(trained, "toy", tmp_path / "1.npz", "--num", "30", "--truncation", "1")["samples"]
    np.testing.assert_array_equal(one, off)  # U(-1, 1) already lies in [-1, 1]


def test_interpolation_endpoints_are_the_truncated_samples(trained, tmp_path):
    plain = sample(trained, "mnist", tmp_path / "s.npz", "--num", "4", "--truncation", "0.7")["samples"]
    data = sample(trained, "mnist", tmp_path / "i.npz", "--num", "2", "--interpolate", "3", "--truncation", "0.7")
    path = data["samples"].reshape(2, 3, 1, 28, 28)
    np.testing.assert_array_equal(path[:, 0], plain[0::2])
    np.testing.assert_array_equal(path[:, -1], plain[1::2])
    assert np.abs(data["z"].reshape(2, 3, -1)[:, [0, -1]]).max() <= 0.7


# ---------------------------------------------------------------------------------------------- PNG export
def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_png_export_decodes_to_the_samples_and_labels(trained, tmp_path):
    n = 23
    folder = tmp_path / "pngs"
    data = sample(trained, "cmnist", tmp_path / "x.npz", "--num", str(n), "--png_dir", str(folder), "--seed", "1")
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{i:06d}.png" for i in range(n)] + ["labels.csv"]
    for i in range(n):
        with Image.open(folder / f"{i:06d}.png") as im:
            assert im.mode == "L"
        np.testing.assert_array_equal(read_png(folder / f"{i:06d}.png"), data["samples"][i, 0])
    with open(folder / "labels.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "label"]
    assert [r[0] for r in rows[1:]] == [f"{i:06d}.png" for i in range(n)]
    np.testing.assert_array_equal([int(r[1]) for r in rows[1:]], data["labels"])

    # What torch-fidelity's `fidelity --input1 DIR` reads: exactly the n PNGs, as RGB copies of the samples.
    from torch_fidelity.datasets import ImagesPathDataset
    from torch_fidelity.utils import glob_samples_paths

    files = glob_samples_paths(str(folder), samples_find_deep=False, samples_find_ext="png,jpg,jpeg", verbose=False)
    assert len(files) == n
    first = ImagesPathDataset(files)[0]
    assert first.shape == (3, 28, 28) and first.dtype == torch.uint8
    assert (first.numpy() == data["samples"][0]).all()


def test_png_dir_alone_writes_the_same_images_and_replaces_an_earlier_export(trained, tmp_path):
    folder = tmp_path / "fid" / "samples"
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "12", "--png_dir", str(folder)) == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in range(12)]  # no labels: unconditional
    ref = sample(trained, "mnist", tmp_path / "x.npz", "--num", "12")["samples"]
    for i in range(12):
        np.testing.assert_array_equal(read_png(folder / f"{i:06d}.png"), ref[i, 0])
    # A second, smaller export replaces the first entirely: no stale image from the larger one is left behind.
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--png_dir", str(folder), "--seed", "9") == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["samples"]  # no temporary folder left


def test_png_export_of_image_conditions_lists_them(trained, tmp_path):
    folder = tmp_path / "pngs"
    data = sample(trained, "sketch", tmp_path / "x.npz", "--num", "6", "--png_dir", str(folder))
    with open(folder / "labels.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file"] + [f"condition_{j}" for j in range(49)]
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float32)
    np.testing.assert_array_equal(values, data["conditions"].reshape(6, 49))


def test_save_pngs_stores_rgb_pixels_exactly(tmp_path):
    images = torch.randint(0, 256, (3, 3, 5, 7), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert save_pngs(images, str(tmp_path)) == ["000000.png", "000001.png", "000002.png"]
    for i in range(3):
        with Image.open(tmp_path / f"{i:06d}.png") as im:
            assert im.mode == "RGB"
        np.testing.assert_array_equal(read_png(tmp_path / f"{i:06d}.png"), images[i].permute(1, 2, 0).numpy())


def test_a_failed_export_keeps_the_earlier_one(trained, tmp_path, monkeypatch):
    folder = tmp_path / "pngs"
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "4", "--png_dir", str(folder)) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(images, folder, start=0):
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(Path(folder) / "000000.png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gan_lightning.sampling.draw.save_pngs", fail)
    with pytest.raises(OSError):
        run("--ckpt_path", ckpt(trained, "mnist"), "--num", "9", "--png_dir", str(folder), "--seed", "4")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pngs"]


# ---------------------------------------------------------------------------------------------- fixed grid
def test_grid_is_fixed_by_the_seed_and_changes_only_with_the_networks(trained, tmp_path, monkeypatch):
    """With the same --seed the grid feeds the networks the same noise and labels whatever the checkpoint,
    --num or --out: two calls give byte-identical PNGs, and two checkpoints of one run differ by their weights
    only. The grid is also the one the training-time SampleGrid wrote at that step (same seed and layout)."""
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    generate = GAN.generate

    def recording(self, z, c=None, ema=True, **kwargs):
        inputs.append((z.clone(), None if c is None else c.clone()))
        return generate(self, z, c, ema, **kwargs)

    monkeypatch.setattr(GAN, "generate", recording)
    step2, step4 = step_ckpt(trained, "cmnist", 2), step_ckpt(trained, "cmnist", 4)

    def grid(ckpt_path: str, name: str, *args: str) -> tuple[bytes, list]:
        inputs.clear()
        assert run("--ckpt_path", ckpt_path, "--grid", str(tmp_path / name), "--per_row", "4", *args) == 0
        return (tmp_path / name).read_bytes(), list(inputs)

    a, inputs_a = grid(step4, "a.png", "--num", "3")
    b, inputs_b = grid(step4, "b.png", "--num", "50", "--out", str(tmp_path / "b.npz"))
    c, inputs_c = grid(step2, "c.png")
    assert a == b
    assert a != c  # the networks changed between steps 2 and 4
    grid_a = inputs_a[-1]
    for z, labels in (inputs_b[-1], inputs_c[-1]):
        assert torch.equal(z, grid_a[0]) and torch.equal(labels, grid_a[1])
    assert torch.equal(grid_a[1], torch.arange(10).repeat_interleave(4))  # one row per class
    assert torch.equal(grid_a[0], noise_for(torch.arange(40), 8, "normal", seed=0))
    # The weights did change between the checkpoints, and nothing else that the grid depends on.
    s2, s4 = torch.load(step2, weights_only=True), torch.load(step4, weights_only=True)
    assert any(not torch.equal(s2["state_dict"][k], s4["state_dict"][k]) for k in s4["state_dict"])

    samples = trained["cmnist"] / "samples"
    assert a == (samples / "step_000004.png").read_bytes()
    assert c == (samples / "step_000002.png").read_bytes()

    other, _ = grid(step4, "d.png", "--seed", "1")
    assert other != a


def test_grid_rows_follow_labels_and_interpolation_rows(trained, tmp_path):
    out = tmp_path / "g.png"
    assert run("--ckpt_path", ckpt(trained, "cmnist"), "--grid", str(out), "--labels", "[3,5]", "--per_row", "6") == 0
    with Image.open(out) as im:
        assert im.size == (2 + 6 * 30, 2 + 2 * 30)  # 6 per row, one row per label, 28 px + 2 px padding
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--grid", str(out), "--per_row", "3", "--grid_rows", "2") == 0
    with Image.open(out) as im:
        assert im.size == (2 + 3 * 30, 2 + 2 * 30)
    # Image conditions: a row of real images, a row of their maps, then --grid_rows rows of samples from them.
    assert run("--ckpt_path", ckpt(trained, "sketch"), "--grid", str(out), "--per_row", "3", "--grid_rows", "2") == 0
    with Image.open(out) as im:
        assert im.size == (2 + 3 * 30, 2 + 4 * 30)
    first = np.asarray(Image.open(out))[2:30, 2:30]
    cond = np.zeros((2, 1, 28, 28), dtype=np.uint8)
    cond[1, :, :, :14] = 255
    np.savez(tmp_path / "cond.npz", images=cond)
    assert run("--ckpt_path", ckpt(trained, "sketch"), "--grid", str(out), "--per_row", "3", "--grid_rows", "2",
               "--condition_images", str(tmp_path / "cond.npz")) == 0
    given = np.asarray(Image.open(out))
    assert (given[2:30, 2:30] == 0).all() and not (first == 0).all()  # the first real image is the given blank one
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--grid", str(out), "--num", "5", "--interpolate", "7",
               "--grid_rows", "4") == 0
    with Image.open(out) as im:
        assert im.size == (2 + 7 * 30, 2 + 4 * 30)  # K per row, the first --grid_rows rows


# ---------------------------------------------------------------------------------------------- mistakes
def one_line_error(capsys, field: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("args, field", [
    (["--truncation", "0"], "--truncation"),
    (["--truncation", "-0.5"], "--truncation"),
    (["--truncation", "1e400"], "--truncation"),  # overflows to inf
    (["--interpolate", "1"], "--interpolate"),
    (["--interpolate", "0"], "--interpolate"),
    (["--per_row", "0"], "--per_row"),
    (["--batch_size", "0"], "--batch_size"),
    (["--grid", "GRID.jpg"], "--grid"),
    (["--device", "nonsense"], "--device"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(trained, tmp_path, capsys, args, field):
    out = tmp_path / "x.npz"
    args = [a.replace("GRID", str(tmp_path / "g")) for a in args]
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "4", "--out", str(out),
               "--png_dir", str(tmp_path / "pngs"), *args) == 2
    one_line_error(capsys, field)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_no_output_is_a_one_line_error(trained, capsys):
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "4") == 2
    line = one_line_error(capsys, "sample")
    assert "--out" in line and "--png_dir" in line


def test_output_paths_that_cannot_be_written_are_one_line_errors(trained, tmp_path, capsys):
    existing = tmp_path / "keep.npz"
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "3", "--out", str(existing)) == 0
    kept = existing.read_bytes()
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")

    # --png_dir that is a file; the --out given beside it is not touched.
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--out", str(existing),
               "--png_dir", str(blocker)) == 2
    assert "is a file" in one_line_error(capsys, "--png_dir")
    # --out in a folder that cannot be created (a file is in the way).
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--out", str(blocker / "sub" / "x.npz")) == 2
    assert str(blocker) in one_line_error(capsys, "--out")
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--out", str(tmp_path)) == 2
    one_line_error(capsys, "--out")
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--out", str(existing),
               "--grid", str(blocker / "g.png")) == 2
    one_line_error(capsys, "--grid")
    # --png_dir holding files sample did not write is refused: replacing it would delete them.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--png_dir", str(mine)) == 2
    assert "notes.txt" in one_line_error(capsys, "--png_dir")
    # An --out or --grid inside --png_dir would be lost when the export replaces the folder.
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--png_dir", str(tmp_path / "new"),
               "--out", str(tmp_path / "new" / "x.npz")) == 2
    assert "inside --png_dir" in one_line_error(capsys, "--out")
    assert run("--ckpt_path", ckpt(trained, "mnist"), "--num", "5", "--png_dir", str(tmp_path / "new"),
               "--grid", str(tmp_path / "new" / "sub" / "g.png")) == 2
    assert "inside --png_dir" in one_line_error(capsys, "--grid")
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]

    assert existing.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "keep.npz", "mine"]


def test_png_dir_for_points_is_a_one_line_error(trained, tmp_path, capsys):
    assert run("--ckpt_path", ckpt(trained, "toy"), "--num", "4", "--png_dir", str(tmp_path / "p")) == 2
    assert "2D points" in one_line_error(capsys, "--png_dir")
    assert not (tmp_path / "p").exists()
