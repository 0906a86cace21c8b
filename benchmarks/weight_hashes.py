"""SHA-256 of the final weights of short `fit` runs in four configurations, for checking that a change to the
training step changes no numbers.

    .venv/bin/python benchmarks/weight_hashes.py [--out hashes.json]

Each configuration runs through ``python -m gan_lightning fit`` (one thread, no W&B, no callbacks) into a
temporary folder; the hash covers the networks' tensors in the checkpoint's ``state_dict`` (G, D, the EMA copy of G and
the augmentation: names, dtypes, shapes and bytes, in sorted name order) and both optimizers' states.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

COMMON = ["--wandb=disabled", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false", "--trainer.logger=false", "--trainer.accelerator=cpu"]

NETWORKS = ("generator", "discriminator", "generator_ema", "augment")

CONFIGS: dict[str, list[str]] = {
    # The toy ring: MLPs, R1, EMA, linear learning-rate decay.
    "toy": ["--config", "experiments/toy_ring.yaml", "--trainer.max_steps=300"],
    # The default experiment: conditional DCGAN, projection D with spectral norm and a class head, hinge, EMA.
    "default": ["--config", "experiments/cgan_mnist5k.yaml", "--trainer.max_steps=30", "--model.ema_start=10"],
    # Split D steps, two D steps per G step, the gradient penalty and DiffAugment.
    "split_gp_augment": [
        "--config", "experiments/cgan_mnist5k.yaml", "--trainer.max_steps=20", "--model.d_step=split",
        "--model.n_critic=2", "--model.loss=wasserstein",
        "--model.regularizers=[{class_path: gan_lightning.objectives.GradientPenalty, init_args: {weight: 10.0}}, "
        "{class_path: gan_lightning.objectives.ClassLoss}]",
        "--model.augment=gan_lightning.objectives.DiffAugment",
    ],
    # Gradient clipping of both networks.
    "clip": ["--config", "experiments/cgan_mnist5k.yaml", "--trainer.max_steps=30", "--model.grad_clip_norm=0.5"],
}


def tensor_digest(h: "hashlib._Hash", name: str, value: object) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            tensor_digest(h, f"{name}.{key}", value[key])
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            tensor_digest(h, f"{name}.{i}", item)
    else:
        h.update(f"{name}={value!r}".encode())


def run(name: str, args: list[str], root: Path) -> str:
    run_dir = root / name
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "gan_lightning", "fit", *args, *COMMON, f"--run_dir={run_dir}"]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    h = hashlib.sha256()
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.split(".")[0] in NETWORKS}
    tensor_digest(h, "state_dict", weights)
    tensor_digest(h, "optimizers", [opt["state"] for opt in ckpt["optimizer_states"]])
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the hashes as JSON to this file")
    parser.add_argument("--only", nargs="*", default=None, help="configurations to run (default: all)")
    args = parser.parse_args()
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            hashes[name] = run(name, cfg, Path(tmp))
            print(f"{name:18s} {hashes[name]}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(hashes, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
