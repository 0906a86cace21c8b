"""Sample quality of a class-conditional MNIST GAN: right class, and as varied as the real digits?

    .venv/bin/python benchmarks/cgan_quality.py --ckpt_path runs/<experiment>/<run>/checkpoints/last.ckpt
        [--root ../shared/data] [--num 10000] [--seed 0] [--json results.json]

Draws ``--num`` samples spread evenly over the 10 classes (1,000 per class by default; EMA generator when the
model has one), rounds them to uint8 exactly as ``python -m gan_lightning sample`` writes them, and reports per
class:

- accuracy: the fraction the MNIST domain classifier (trained on *real* MNIST, cached after its first run; see
  ``python -m gan_lightning classifier``) assigns to the requested class; target: overall >= 95%;
- diversity ratio: mean per-pixel standard deviation of the class's samples over that of the real training
  digits of the class; target: every class >= 0.7 (a collapsed class scores ~0).

Prints a markdown table and, with ``--json``, writes the numbers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from jsonargparse import ArgumentParser

from gan_lightning.classifier import (
    as_root_flag, classifier_path, get_classifier, load_classifier, load_split, predict,
)
from gan_lightning.commands import load_gan
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.metrics.conditional import accuracy_by_class, diversity_ratio
from gan_lightning.pixels import to_uint8
from gan_lightning.sampling import draw, labels_for

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data next to the repo.


def parse(argv: Sequence[str]):
    parser = ArgumentParser(prog="benchmarks/cgan_quality.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", type=str, required=True, help="Conditional MNIST GAN checkpoint written by fit.")
    parser.add_argument("--root", type=str, default=str(DEFAULT_ROOT), help="Folder holding torchvision's MNIST layout.")
    parser.add_argument("--num", type=int, default=10000, help="Samples, spread evenly over the classes.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed: sample i always gets the same noise.")
    parser.add_argument("--json", type=Optional[str], default=None, help="Also write the results to this JSON file.")
    parser.add_argument("--classifier", type=Optional[str], default=None,
                        help="Classifier checkpoint (default: the cached MNIST one, trained on first use).")
    parser.add_argument("--min_accuracy", type=float, default=0.95, help="Target overall conditional accuracy.")
    parser.add_argument("--min_ratio", type=float, default=0.7, help="Target diversity ratio, every class.")
    parser.add_argument("--batch_size", type=int, default=500, help="Samples per generator call.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, ...")
    return parser.parse_args(list(argv))


def evaluate(args) -> dict:
    start = time.perf_counter()
    model = load_gan(args.ckpt_path, args.device)
    if model.condition != "label":
        raise UserError(f"--ckpt_path: {args.ckpt_path!r} is not a class-conditional model (condition: "
                        f"{model.condition}); this benchmark needs one trained on MNIST with data.labels: class")
    if args.num < 2 * model.num_classes:
        raise UserError(f"--num: needs at least 2 samples per class ({2 * model.num_classes}), got {args.num}")
    try:
        if args.classifier:
            classifier, meta = load_classifier(args.classifier, args.device)
            clf_path = args.classifier
        else:
            classifier, meta = get_classifier("MNIST", args.root, device=args.device)
            clf_path = str(classifier_path("MNIST"))
        real, real_labels = load_split("MNIST", args.root, "train")
    except DataNotFound as err:
        raise as_root_flag(err) from None
    if tuple(model.generator.out_shape) != tuple(real.shape[1:]):
        raise UserError(f"--ckpt_path: the model draws {tuple(model.generator.out_shape)} images but MNIST digits are "
                        f"{tuple(real.shape[1:])}; evaluate a model trained on MNIST-shaped data")
    if model.num_classes != classifier.num_classes:
        raise UserError(f"--ckpt_path: the model has {model.num_classes} classes but the MNIST classifier "
                        f"{classifier.num_classes}")

    labels = labels_for(args.num, model.num_classes)
    t = time.perf_counter()
    samples = to_uint8(draw(model, args.num, seed=args.seed, labels=labels, batch_size=args.batch_size))
    sample_seconds = time.perf_counter() - t
    overall, per_class_acc = accuracy_by_class(predict(classifier, samples), labels)
    ratios = diversity_ratio(samples, labels, real, real_labels)
    worst = min(ratios, key=ratios.get)
    return {
        "ckpt_path": args.ckpt_path,
        "num": args.num,
        "seed": args.seed,
        "classifier": {"path": clf_path, "test_accuracy": meta.get("test_accuracy"), "data": meta.get("data")},
        "accuracy": overall,
        "per_class": {c: {"accuracy": per_class_acc[c], "diversity_ratio": ratios[c], "samples": int((labels == c).sum())}
                      for c in sorted(ratios)},
        "min_ratio": ratios[worst],
        "min_ratio_class": worst,
        "targets": {"accuracy": args.min_accuracy, "ratio": args.min_ratio},
        "pass": {
            "accuracy": overall >= args.min_accuracy,
            "diversity": ratios[worst] >= args.min_ratio,
            "all": overall >= args.min_accuracy and ratios[worst] >= args.min_ratio,
        },
        "sample_seconds": sample_seconds,
        "seconds": time.perf_counter() - start,
    }


def table(r: dict) -> str:
    ok = lambda good: "pass" if good else "**FAIL**"  # noqa: E731
    t = r["targets"]
    lines = [
        f"## Conditional sample quality: {r['ckpt_path']}",
        "",
        f"{r['num']} samples (seed {r['seed']}), classified by the MNIST domain classifier "
        f"(real-test accuracy {100 * r['classifier']['test_accuracy']:.2f}%, {r['classifier']['path']}).",
        "",
        f"| class | samples | accuracy | diversity ratio | ratio >= {t['ratio']:.2f} |",
        "|---:|---:|---:|---:|:---:|",
    ]
    for c, v in r["per_class"].items():
        lines.append(f"| {c} | {v['samples']} | {100 * v['accuracy']:.1f}% | {v['diversity_ratio']:.3f} | "
                     f"{ok(v['diversity_ratio'] >= t['ratio'])} |")
    lines += [
        "",
        "| metric | value | target | result |",
        "|---|---:|---:|:---:|",
        f"| overall accuracy | {100 * r['accuracy']:.2f}% | >= {100 * t['accuracy']:.0f}% | {ok(r['pass']['accuracy'])} |",
        f"| min diversity ratio (class {r['min_ratio_class']}) | {r['min_ratio']:.3f} | >= {t['ratio']:.2f} | "
        f"{ok(r['pass']['diversity'])} |",
        "",
        f"Overall: {'PASS' if r['pass']['all'] else 'FAIL'} ({r['seconds']:.0f} s, sampling {r['sample_seconds']:.1f} s)",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        result = evaluate(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp = f"{args.json}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.json)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
