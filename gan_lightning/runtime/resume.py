"""What a checkpoint needs beyond Lightning's own for a run to continue exactly as if it had never stopped, and
to say where it came from: every process's random streams, a refusal to save diverged weights, and provenance.

Lightning's checkpoints hold the weights, buffers (batch-norm statistics, spectral-norm vectors), optimizer
and scheduler states and the loop counters, but no random state. ``GAN.on_save_checkpoint`` adds the torch
(CPU and CUDA), numpy and Python random states of every process (each process of a ``gan_ddp`` run draws its own
noise), gathered to the process that writes the file; ``GAN.on_train_start`` restores this process's own after
the strategy has set up. The data order is restored by the data modules' sampler (``gan_lightning.data.base``).
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from gan_lightning.errors import UserError


class DivergenceError(UserError):
    """Training produced NaN or infinite values."""


def rng_state() -> dict[str, Any]:
    """This process's random states: torch CPU (and CUDA when initialised), numpy and Python, as tensors, lists
    and numbers only (so checkpoints load with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """The random states of all processes, in rank order (a collective call under torch.distributed)."""
    local = rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, local)
    return states


def check_finite(module: torch.nn.Module, step: int) -> None:
    """Refuse to checkpoint weights or buffers that hold NaN or Inf (one host sync per checkpoint)."""
    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t).all() for t in tensors])
    if not bool(finite.all()):
        names = [n for n, t in list(module.named_parameters()) + list(module.named_buffers())
                 if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        raise DivergenceError(
            f"training diverged by step {step}: {names[0]} holds NaN or Inf; no checkpoint was written from these "
            "weights (the last good one is kept); lower the learning rates or add a regularizer (R1, GradientPenalty)"
        )


def check_same_model(current: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Refuse to resume from a checkpoint of another model (another experiment or changed networks), naming the
    first difference, before Lightning tries to load it."""
    missing = [k for k in current if k not in saved]
    extra = [k for k in saved if k not in current]
    shapes = [k for k in current if k in saved and torch.is_tensor(current[k]) and torch.is_tensor(saved[k])
              and tuple(current[k].shape) != tuple(saved[k].shape)]
    if not (missing or extra or shapes):
        return
    if shapes:
        k = shapes[0]
        what = f"{k} has shape {tuple(saved[k].shape)} there but {tuple(current[k].shape)} here"
    else:
        what = f"{(missing or extra)[0]} is {'missing from the checkpoint' if missing else 'not in this model'}"
    raise UserError(f"--ckpt_path: the checkpoint was trained with another model ({what}); resume with the config "
                    "it was trained with (config.yaml in its run directory)")


def _git_revision() -> Optional[str]:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


_REVISION: Optional[str] = None
_REVISION_READ = False


def provenance(run_dir: Optional[str]) -> dict[str, Any]:
    """Package version, code revision (when run from a git checkout) and the run's resolved config text."""
    global _REVISION, _REVISION_READ
    from gan_lightning import __version__

    if not _REVISION_READ:
        _REVISION, _REVISION_READ = _git_revision(), True
    info: dict[str, Any] = {"version": __version__, "revision": _REVISION, "torch": str(torch.__version__)}
    config = Path(run_dir) / "config.yaml" if run_dir else None
    if config is not None and config.is_file():
        info["config"] = redact(config.read_text())
    return info


SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)


def redact_dict(config: Any) -> Any:
    """A nested config (dicts and lists) with the value of every key that names a secret replaced."""
    if isinstance(config, dict):
        return {k: ("<redacted>" if SECRET_KEY.search(str(k)) and v not in (None, "") else redact_dict(v))
                for k, v in config.items()}
    if isinstance(config, list):
        return [redact_dict(v) for v in config]
    return config


def redact(config_text: str) -> str:
    """A YAML text with the value of every key that names a secret (api_key, token, password, ...) replaced."""
    out = []
    for line in config_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip() and SECRET_KEY.search(key):
            line = f"{key}: <redacted>"
        out.append(line)
    return "\n".join(out) + ("\n" if config_text.endswith("\n") else "")
