"""Shared fixtures: a quiet CPU trainer, the torchvision data folder, the embedded MNIST subset parsed once.

Everything a test writes goes under its ``tmp_path``; nothing touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# MNIST / FashionMNIST in torchvision's raw layout (<root>/MNIST/raw/...): $GAN_LIGHTNING_DATA, else data/ in the
# repository. Tests that need them are skipped when they are absent (the embedded subset needs no download).
DATA_ROOT = Path(os.environ.get("GAN_LIGHTNING_DATA", REPO / "data"))

# Two cores shared with other jobs: one intra-op thread keeps runs fast and predictable.
torch.set_num_threads(1)


@pytest.fixture
def data_root() -> Path:
    """The torchvision data folder; tests that need it are skipped when it is absent."""
    if not (DATA_ROOT / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST not found at {DATA_ROOT} (set GAN_LIGHTNING_DATA to a folder with MNIST/FashionMNIST "
                    "in torchvision's raw layout)")
    return DATA_ROOT


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
