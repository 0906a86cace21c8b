"""Shared fixtures: a quiet CPU trainer, the torchvision data folder, the embedded MNIST subset parsed once.

Everything a test writes goes under its ``tmp_path``; nothing touches the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import pytest
import torch

from fake_data import write_fake_torchvision_data

REPO = Path(__file__).resolve().parents[1]


def _real_data_root() -> Path | None:
    """$GAN_LIGHTNING_DATA, else data/ in the repository, when it holds MNIST in torchvision's raw layout."""
    root = Path(os.environ.get("GAN_LIGHTNING_DATA", REPO / "data"))
    return root if (root / "MNIST" / "raw").is_dir() else None


# MNIST / FashionMNIST in torchvision's raw layout (<root>/MNIST/raw/...): the real files when $GAN_LIGHTNING_DATA
# (else data/ in the repository) holds them; otherwise a temporary folder that the session fixture
# ``torchvision_data`` fills with a few hundred fabricated images per split (tests/fake_data.py), removed at the
# end of the session. The path is fixed at import so that modules can read it at collection time.
_REAL_DATA_ROOT = _real_data_root()
DATA_IS_FABRICATED = _REAL_DATA_ROOT is None
DATA_ROOT = _REAL_DATA_ROOT or Path(tempfile.mkdtemp(prefix="gan_lightning-test-data-"))

# Two cores shared with other jobs: one intra-op thread keeps runs fast and predictable.
torch.set_num_threads(1)


def pytest_report_header(config: pytest.Config) -> str:
    if DATA_IS_FABRICATED:
        where = os.environ.get("GAN_LIGHTNING_DATA") or REPO / "data"
        return f"torchvision data: fabricated tiny MNIST/FashionMNIST in {DATA_ROOT} (no MNIST/raw under {where})"
    return f"torchvision data: {DATA_ROOT}"


def pytest_unconfigure(config: pytest.Config) -> None:
    if DATA_IS_FABRICATED:
        shutil.rmtree(DATA_ROOT, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def torchvision_data() -> Path:
    """The folder ``DATA_ROOT``, filled with the fabricated MNIST and FashionMNIST unless it holds real data.

    Autouse, because modules also read ``DATA_ROOT`` directly (test_experiments); writing takes a few
    milliseconds."""
    if DATA_IS_FABRICATED and not (DATA_ROOT / "FashionMNIST" / "raw").is_dir():
        write_fake_torchvision_data(DATA_ROOT)
    return DATA_ROOT


@pytest.fixture
def data_root(torchvision_data: Path) -> Path:
    """The torchvision data folder: real MNIST / FashionMNIST when available, else the fabricated ones (never
    skipped)."""
    return torchvision_data


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., pl.Trainer]:
    """A real Lightning trainer on CPU with no logger, checkpoints or progress bar, rooted in ``tmp_path``."""

    def make(max_steps: int, **kwargs: Any) -> pl.Trainer:
        options: dict[str, Any] = dict(
            max_steps=max_steps,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
            default_root_dir=str(tmp_path),
        )
        options.update(kwargs)
        return pl.Trainer(**options)

    return make


@pytest.fixture(scope="session")
def tiny_classifier_file(tmp_path_factory) -> Path:
    """A randomly initialised width-4 mnist5k classifier with 16 features, saved as the cache would hold it."""
    from gan_lightning.metrics.classifier import DomainClassifier, save_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DomainClassifier(width=4, feature_dim=16).eval()
    path = tmp_path_factory.mktemp("classifier") / "mnist5k.pt"
    save_classifier(net, path, {"data": "mnist5k", "test_accuracy": 0.0, "steps": 0})
    return path


@pytest.fixture
def classifier_cache(tmp_path_factory, monkeypatch: pytest.MonkeyPatch, tiny_classifier_file: Path) -> Path:
    """A fresh ``GAN_LIGHTNING_CACHE`` (outside ``tmp_path``) holding the tiny mnist5k classifier, so that an
    ImageMetrics callback never trains a real one inside a test."""
    import shutil

    from gan_lightning.metrics.classifier import classifier_path

    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(root))
    dest = classifier_path("mnist5k")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_classifier_file, dest)
    return root
