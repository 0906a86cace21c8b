"""Does a spatially conditioned generator obey its condition? (sketch_mnist5k.yaml)

    .venv/bin/python benchmarks/spatial_quality.py --ckpt_path runs/sketch_mnist5k/<run>/checkpoints/last.ckpt

For real MNIST test digits (10,000 from the MNIST test set in --root, or the embedded subset with --data mnist5k) it builds the
condition maps, draws one sample per map and reports:

- condition L1: mean |m(G(z, m(x))) - m(x)| against the same distance to another digit's map (chance), and
  their ratio (gan_lightning.metrics.spatial);
- class agreement: how often the MNIST domain classifier (trained on real digits) gives the sample the class of
  the digit whose sketch it was drawn from — the sketch carries the class, so an obedient G keeps it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gan_lightning.metrics.classifier import get_classifier, load_split, predict
from gan_lightning.commands.checkpoints import load_gan
from gan_lightning.conditioning import SpatialCondition
from gan_lightning.metrics.spatial import condition_error
from gan_lightning.sampling.pixels import to_float, to_uint8
from gan_lightning.sampling.draw import draw

from bench_common import DATA_ROOT  # noqa: E402  (same folder)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--root", default=str(DATA_ROOT), help="torchvision data folder (default: $GAN_LIGHTNING_DATA, else data/)")
    parser.add_argument("--data", default="MNIST", help="MNIST (test split from --root) or mnist5k")
    parser.add_argument("--num", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = load_gan(args.ckpt_path)
    if not isinstance(model.conditioning, SpatialCondition):
        print(f"error: --ckpt_path: {args.ckpt_path!r} is not a spatially conditioned model", file=sys.stderr)
        return 2
    images, labels = load_split(args.data, args.root, "test")
    images, labels = images[: args.num], labels[: args.num]
    real = to_float(images)
    err = condition_error(model, real, seed=args.seed)
    maps = model.generator.conditioning.from_images(real)
    samples = to_uint8(draw(model, len(real), seed=args.seed, labels=maps))
    classifier, meta = get_classifier("MNIST", args.root)
    agree = float((predict(classifier, samples) == labels).double().mean())
    real_acc = float((predict(classifier, images) == labels).double().mean())
    out = {**err, "class_agreement": agree, "classifier_real_accuracy": real_acc, "num": len(real)}
    print("| metric | value |\n| --- | --- |")
    for k, v in out.items():
        print(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
