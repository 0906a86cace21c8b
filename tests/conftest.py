"""Shared fixtures: a quiet CPU trainer, the shared data folder, the embedded MNIST subset parsed once.

Everything a test writes goes under its ``tmp_path``; nothing touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import pytest
import torch

# Development and CI keep MNIST / FashionMNIST in torchvision's raw layout next to the repository (SPEC §5).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

# Two cores shared with other jobs: one intra-op thread keeps runs fast and predictable.
torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """The shared torchvision data folder; tests that need it are skipped when it is absent."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (MNIST/FashionMNIST in torchvision's raw layout)")
    return SHARED_DATA


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
