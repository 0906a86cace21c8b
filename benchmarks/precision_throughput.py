"""Training throughput (real images consumed per second) in fp32, bf16-mixed and with torch.compile, on a
class-conditional DCGAN and an SNGAN-style ResNet at 32x32 (CIFAR-sized random data held in memory), side by
side in one run. Made for a GPU (`--accelerator cuda`); on a CPU it runs too, with small settings.

    .venv/bin/python benchmarks/precision_throughput.py --accelerator cuda --steps 200 --batch 128
    .venv/bin/python benchmarks/precision_throughput.py --accelerator cpu --steps 10 --batch 16 --width 16
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning.conditioning import ConditionalBatchNorm, Projection
from gan_lightning.data.base import InMemory, _identity
from gan_lightning.nets import DCGANDiscriminator, DCGANGenerator, ResNetDiscriminator, ResNetGenerator
from gan_lightning.system import GAN

from step_speed import _Clock  # noqa: E402  (same folder)


def model(arch: str, width: int, compile_mode: str) -> GAN:
    torch.manual_seed(0)
    if arch == "dcgan":
        g = DCGANGenerator(latent_dim=128, channels=3, image_size=32, ngf=width, num_classes=10,
                           conditioning=ConditionalBatchNorm())
        d = DCGANDiscriminator(channels=3, image_size=32, ndf=width, norm="spectral", num_classes=10,
                               conditioning=Projection())
    else:
        g = ResNetGenerator(latent_dim=128, channels=3, image_size=32, ngf=2 * width, num_classes=10,
                            conditioning=ConditionalBatchNorm())
        d = ResNetDiscriminator(channels=3, image_size=32, ndf=width, num_classes=10, conditioning=Projection())
    adam = lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.0, 0.9))  # noqa: E731
    return GAN(g, d, loss="hinge", ema_decay=0.999, g_optimizer=adam, d_optimizer=adam, compile=compile_mode)


def images_per_second(arch: str, precision: str, compile_mode: str, args) -> float:
    n = args.batch * 64
    data = InMemory(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (n,)))
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True, collate_fn=_identity)
    clock = _Clock(args.warmup)
    trainer = pl.Trainer(max_steps=args.warmup + args.steps, accelerator=args.accelerator, devices=1,
                         precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[clock])
    trainer.fit(model(arch, args.width, compile_mode), loader)
    if args.accelerator == "cuda":
        torch.cuda.synchronize()
    return args.batch * args.steps / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", default="cuda")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="steps before timing (compilation happens here)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="DCGAN ngf/ndf; ResNet ndf (ngf = 2x)")
    args = parser.parse_args()
    variants = [("fp32", "32-true", "none"), ("bf16-mixed", "bf16-mixed", "none"), ("compiled fp32", "32-true", "default")]
    print(f"\n{args.accelerator}: batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up\n")
    print("| network | " + " | ".join(name for name, _, _ in variants) + " |")
    print("| --- |" + " --- |" * len(variants))
    for arch in ("dcgan", "resnet"):
        rates = []
        for _, precision, mode in variants:
            try:
                rates.append(images_per_second(arch, precision, mode, args))
            except Exception as err:  # noqa: BLE001 - report the failure in the table, keep measuring
                rates.append(f"failed ({type(err).__name__})")
        cells = [f"{r:,.0f} img/s ({r / rates[0]:.2f}x)" if isinstance(r, float) and isinstance(rates[0], float)
                 else str(r) for r in rates]
        print(f"| {arch} 32x32 | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
