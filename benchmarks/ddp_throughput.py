"""DDP throughput on CPU: one process with batch 2B against two ``gan_ddp_spawn`` processes with batch B each.

For each model (the PacGAN toy MLP GAN on the ring, a small DCGAN on EmbeddedMNIST) it trains ``warmup + steps``
generator iterations in both set-ups and reports the real samples consumed per second over the last ``steps``
(``steps * n_critic * batch per process * processes`` samples, timed on rank 0 between the end of the warm-up
step and the end of the last step; start-up, process launch and warm-up excluded). Both set-ups see the same
global batch per D step, and every process runs ``--threads`` intra-op threads (default 1), so the two-process
set-up uses twice the cores: the ratio is the scaling of data parallelism (ideal 2.0), what is lost is gloo
all-reduces and per-process overhead, and on a busy machine the competition for the second core. (One process
with two threads is not the fairer baseline it looks: on a shared, oversubscribed machine OpenMP's spinning
threads can make it many times slower than one thread.)

    python benchmarks/ddp_throughput.py [--steps 40] [--warmup 5] [--threads 1] [--start spawn]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

import gan_lightning.training.strategies  # noqa: F401  (registers gan_ddp_spawn)
from gan_lightning.data import EmbeddedMNIST, ToyDataModule
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from gan_lightning.training.system import GAN


class Threads(pl.Callback):
    """Sets the intra-op thread count inside each (spawned) process."""

    def __init__(self, n: int) -> None:
        self.n = n

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        torch.set_num_threads(self.n)


class Throughput(pl.Callback):
    """Times generator steps ``warmup+1 .. warmup+steps`` on rank 0 and writes ``{seconds, samples}`` as JSON."""

    def __init__(self, out: str, warmup: int, steps: int) -> None:
        self.out, self.warmup, self.steps = out, warmup, steps
        self.t0 = 0.0
        self.samples = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if step == self.warmup:
            self.t0 = time.perf_counter()
        elif self.warmup < step <= self.warmup + self.steps:
            self.samples += x.shape[0] * trainer.world_size  # every process consumed a batch like this one
            if step == self.warmup + self.steps and trainer.global_rank == 0:
                seconds = time.perf_counter() - self.t0
                Path(self.out).write_text(json.dumps({"seconds": seconds, "samples": self.samples}))


def toy_setup(batch: int) -> tuple[GAN, pl.LightningDataModule]:
    """The PacGAN toy architecture of experiments/toy_*.yaml on the 8-mode ring."""
    torch.manual_seed(0)
    g = MLPGenerator(out_shape=[2], latent_dim=2, hidden=[400, 400, 400, 400])
    d = MLPDiscriminator(in_shape=[2], hidden=[200, 200, 200], maxout_pieces=5)
    opt = partial(torch.optim.Adam, lr=1e-4, betas=(0.5, 0.999))
    return GAN(g, d, g_optimizer=opt, d_optimizer=opt), ToyDataModule(num_samples=100_000, batch_size=batch)


def dcgan_setup(batch: int) -> tuple[GAN, pl.LightningDataModule]:
    """A small DCGAN (ngf = ndf = 16, z of 64) on the 5,000 embedded MNIST digits, unconditional."""
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=64, channels=1, image_size=28, ngf=16)
    d = DCGANDiscriminator(channels=1, image_size=28, ndf=16)
    opt = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    return GAN(g, d, g_optimizer=opt, d_optimizer=opt), EmbeddedMNIST(labels="none", batch_size=batch)


MODELS = {"toy MLP (ring)": (toy_setup, 256), "DCGAN-16 (MNIST 5k)": (dcgan_setup, 32)}


def measure(setup: Any, batch: int, processes: int, args: argparse.Namespace) -> float:
    """Real samples per second with ``processes`` processes of batch ``batch`` each."""
    model, data = setup(batch)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "throughput.json")
        trainer = pl.Trainer(
            max_steps=args.warmup + args.steps,
            max_epochs=-1,
            accelerator="cpu",
            devices=processes,
            strategy=f"gan_ddp_{args.start}" if processes > 1 else "auto",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
            callbacks=[Threads(args.threads), Throughput(out, args.warmup, args.steps)],
        )
        trainer.fit(model, data)
        result = json.loads(Path(out).read_text())
    return result["samples"] / result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed generator steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed generator steps first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op CPU threads per process")
    parser.add_argument("--start", default="spawn", choices=["spawn", "fork"], help="gan_ddp_<start> for 2 processes")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    load_before = f"{os.getloadavg()[0]:.2f}"
    rows = []
    for name, (setup, batch) in MODELS.items():
        one = measure(setup, 2 * batch, 1, args)
        two = measure(setup, batch, 2, args)
        rows.append((name, batch, one, two))

    print(f"\nCPU, {os.cpu_count()} cores visible, {args.threads} thread(s) per process, "
          f"{args.steps} timed steps after {args.warmup} warm-up, torch {torch.__version__}\n")
    print(f"load average before/after: {load_before} / {os.getloadavg()[0]:.2f} (other jobs share these cores)\n")
    print("| model | global batch | 1 process x 2B (samples/s) | 2 x gan_ddp_%s x B (samples/s) | 2p / 1p |" % args.start)
    print("|---|---|---|---|---|")
    for name, batch, one, two in rows:
        print(f"| {name} | 2 x {batch} = {2 * batch} | {one:,.0f} | {two:,.0f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
