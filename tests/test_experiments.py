"""Every ``experiments/*.yaml`` parses and trains one step through the real CLI (lightning-hydra-template style).

The CLI runs in-process (``gan_lightning.commands.main``) with ``fast_dev_run`` on CPU. Data the experiments name is
found offline: the embedded MNIST subset always; torchvision MNIST / FashionMNIST from the data folder (the
real one when ``$GAN_LIGHTNING_DATA`` or ``data/`` holds it, else tiny files the test session fabricates);
CIFAR10 from a tiny folder in torchvision's pickle layout written here, with the file list torchvision checks set
to the checksums of those files, so torchvision's own loading and integrity checks run unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torchvision
import yaml
from PIL import Image

from conftest import DATA_ROOT
from gan_lightning.commands import main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
# One step checks the wiring (parsing, class paths, data, networks, loss, callbacks), not throughput: a small
# batch keeps the GPU-sized experiments affordable on a 2-core CPU without changing anything else.
BATCH_SIZE = 8


def test_experiments_exist():
    assert EXPERIMENTS, "no experiments/*.yaml found"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fake_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 26) -> None:
    """``root/cifar-10-batches-py`` with 5 training batches of ``per_batch`` images, a test batch and the meta
    file, pickled as torchvision reads them; torchvision's expected checksums become these files'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write_batch(name: str, n: int) -> list[str]:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, size=n)],
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        return [name, _md5(folder / name)]

    train = [write_batch(f"data_batch_{i}", per_batch) for i in range(1, 6)]
    test = [write_batch("test_batch", per_batch)]
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": labels, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", train)
    monkeypatch.setattr(cifar, "test_list", test)
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": _md5(folder / "batches.meta")})


def test_fake_cifar10_loads_through_torchvision(tmp_path, monkeypatch):
    fake_cifar10(tmp_path, monkeypatch, per_batch=3)
    ds = torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    assert ds.data.shape == (15, 32, 32, 3) and len(ds.targets) == 15 and ds.classes[0] == "airplane"
    # The integrity check is real: a changed file is rejected.
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"corrupted")
    with pytest.raises(RuntimeError, match="corrupted"):
        torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)


def _data_args(config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    data = config.get("data", {})
    if not data.get("class_path", "").endswith("TorchvisionImages"):
        return []
    name = data.get("init_args", {}).get("name", "MNIST")
    if name in ("MNIST", "FashionMNIST"):
        if not (DATA_ROOT / name / "raw").is_dir():
            pytest.skip(f"{name} not found under {DATA_ROOT} (set GAN_LIGHTNING_DATA)")
        return [f"--data.init_args.root={DATA_ROOT}"]
    if name == "CIFAR10":
        # Enough images for one step: BATCH_SIZE real images for each of the experiment's n_critic D steps.
        per_step = BATCH_SIZE * config.get("model", {}).get("n_critic", 1)
        fake_cifar10(tmp_path / "cifar", monkeypatch, per_batch=max(8, -(-per_step // 5)))
        return [f"--data.init_args.root={tmp_path / 'cifar'}"]
    pytest.fail(f"test_experiments does not know how to provide torchvision data set {name!r} offline")


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_runs_with_fast_dev_run(path, tmp_path, monkeypatch, capsys, classifier_cache):
    config = yaml.safe_load(path.read_text())
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("#"), "each experiment says in its header what it is and how to run it"
    monkeypatch.chdir(tmp_path)  # whatever the run writes by default stays in tmp_path
    run_dir = tmp_path / "run"
    argv = [
        "fit", "--config", str(path),
        "--trainer.fast_dev_run=true", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        "--wandb=disabled", f"--run_dir={run_dir}", f"--data.init_args.batch_size={BATCH_SIZE}",
        *_data_args(config, tmp_path, monkeypatch),
    ]
    assert "batch_size" in config["data"]["init_args"], "experiments state their batch size"
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    assert "error:" not in err

    # Callbacks named in the YAML ran at the end of the one step, writing into the run directory.
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in config.get("trainer", {}).get("callbacks", [])]
    if "SampleGrid" in callbacks:
        grid = run_dir / "samples" / "step_000001.png"
        assert grid.is_file()
        with Image.open(grid) as im:
            assert im.size[0] > 32 and im.size[1] > 32
    if "ImageMetrics" in callbacks:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        # FID on the domain classifier's features names them; plain "fid" is kept for Inception-v3's.
        assert metrics["step"] == 1 and math.isfinite(metrics["fid_mnist"]) and "fid" not in metrics
    if "ToyMetrics" in callbacks:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["step"] == 1
        assert 0 <= metrics["modes"] <= {"ring": 8, "grid": 25}[config["data"]["init_args"]["name"]]
        # Plain keys are the generator's own samples; a refining experiment adds the refined ones beside them.
        refines = config["model"].get("refinement") is not None
        assert ("modes_refined" in metrics) == refines and ("high_quality_refined" in metrics) == refines
    # Nothing escaped the run directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run"] + (["cifar"] if (tmp_path / "cifar").exists() else []))


@pytest.mark.parametrize("enable", [True, False])
def test_configured_progress_bar_and_its_off_switch(tmp_path, monkeypatch, enable):
    """The toy experiments refresh their progress bar every 50 steps; --trainer.enable_progress_bar=false still
    turns it off instead of clashing with the configured bar."""
    from lightning.pytorch.callbacks import ProgressBar

    from gan_lightning.commands.fit import GANCLI

    monkeypatch.chdir(tmp_path)
    cli = GANCLI(args=["--config", str(REPO / "experiments" / "toy_ring.yaml"), "--wandb=disabled",
                       f"--run_dir={tmp_path / 'run'}", f"--trainer.enable_progress_bar={str(enable).lower()}"],
                 run=False)
    bars = [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]
    if enable:
        assert len(bars) == 1 and bars[0].refresh_rate == 50
    else:
        assert bars == [] and cli.trainer.progress_bar_callback is None
