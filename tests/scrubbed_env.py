"""The environment a test's subprocess runs in: no W&B key or setting of this machine, and every folder W&B, the
package's cache or XDG would write to under the test's own ``tmp_path``, so that nothing reaches the network or
the user's home."""

from __future__ import annotations

import os
from pathlib import Path


def scrubbed_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any W&B key or setting, HOME and every W&B folder under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WANDB_") and k not in ("GAN_LIGHTNING_SWEEP", "GAN_LIGHTNING_RUN_ID")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), WANDB_DIR=str(tmp_path / "wandb-dir"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_DATA_DIR=str(tmp_path / "wandb-data"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
               GAN_LIGHTNING_CACHE=str(tmp_path / "gl-cache"), OMP_NUM_THREADS="1", **extra)
    return env
