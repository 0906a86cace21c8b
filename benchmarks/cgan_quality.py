"""Sample quality of a class-conditional MNIST GAN: right class, and as varied as the real digits?

    .venv/bin/python benchmarks/cgan_quality.py --ckpt_path runs/<experiment>/<run>/checkpoints/last.ckpt
        [--root DIR] [--num 10000] [--seed 0] [--json results.json]

Draws ``--num`` samples spread evenly over the 10 classes (1,000 per class by default; EMA generator when the
model has one), rounds them to uint8 exactly as ``python -m gan_lightning sample`` writes them, and reports per
class:

- accuracy: the fraction the MNIST domain classifier (trained on *real* MNIST, cached after its first run; see
  ``python -m gan_lightning classifier``) assigns to the requested class; target: overall >= 98%;
- diversity ratio: mean per-pixel standard deviation of the class's samples over that of the real training
  digits of the class; target: every class >= 0.85 (a collapsed class scores ~0);

and overall:

- FID on the same classifier's penultimate features (``DomainFeatures(data="MNIST")``, the metrics'
  ``fid_mnist``; not Inception's FID, and not comparable with published ones) of the samples against the 10,000
  real MNIST test digits, next to its floor: the same FID for the 5,000 embedded training digits (the data the
  model learns from) against the test digits; target: FID <= 2x the floor.

The samples are the model's: refined by its ``model.refinement`` when it names one (``refined`` in the JSON).

Prints a markdown table and, with ``--json``, writes the numbers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from jsonargparse import ArgumentParser
from torch import Tensor

from gan_lightning.metrics.classifier import (
    as_root_flag, classifier_path, get_classifier, load_classifier, load_split, predict,
)
from gan_lightning.commands.checkpoints import load_gan
from gan_lightning.data.images import embedded_mnist
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.metrics.conditional import accuracy_by_class, diversity_ratio
from gan_lightning.metrics.features import DomainFeatures
from gan_lightning.metrics.image import FeatureSet, compute, extract, reference_features
from gan_lightning.sampling.pixels import to_uint8
from gan_lightning.sampling.draw import draw, labels_for

from bench_common import DATA_ROOT, write_atomic  # noqa: E402  (same folder)



def parse(argv: Sequence[str]):
    parser = ArgumentParser(prog="benchmarks/cgan_quality.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", type=str, required=True, help="Conditional MNIST GAN checkpoint written by fit.")
    parser.add_argument("--root", type=str, default=str(DATA_ROOT), help="Folder holding torchvision's MNIST layout (default: $GAN_LIGHTNING_DATA, else data/).")
    parser.add_argument("--num", type=int, default=10000, help="Samples, spread evenly over the classes.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed: sample i always gets the same noise.")
    parser.add_argument("--json", type=Optional[str], default=None, help="Also write the results to this JSON file.")
    parser.add_argument("--classifier", type=Optional[str], default=None,
                        help="Classifier checkpoint (default: the cached MNIST one, trained on first use).")
    parser.add_argument("--min_accuracy", type=float, default=0.98, help="Target overall conditional accuracy.")
    parser.add_argument("--min_ratio", type=float, default=0.85, help="Target diversity ratio, every class.")
    parser.add_argument("--max_fid_ratio", type=float, default=2.0,
                        help="Target: FID of the samples at most this multiple of the floor (embedded digits' FID).")
    parser.add_argument("--batch_size", type=int, default=500, help="Samples per generator call.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, ...")
    return parser.parse_args(list(argv))


def evaluate(args) -> dict:
    start = time.perf_counter()
    model = load_gan(args.ckpt_path, args.device)
    if model.conditioning.class_count == 0:
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
        test, test_labels = load_split("MNIST", args.root, "test")
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
    fid = fid_against_test(samples, test, test_labels, args)
    fid_ok = fid["samples"] <= args.max_fid_ratio * fid["floor"]
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
        "refined": getattr(model, "refinement", None) is not None,
        "fid_mnist": fid,
        "targets": {"accuracy": args.min_accuracy, "ratio": args.min_ratio, "fid_ratio": args.max_fid_ratio},
        "pass": {
            "accuracy": overall >= args.min_accuracy,
            "diversity": ratios[worst] >= args.min_ratio,
            "fid_mnist": fid_ok,
            "all": overall >= args.min_accuracy and ratios[worst] >= args.min_ratio and fid_ok,
        },
        "sample_seconds": sample_seconds,
        "seconds": time.perf_counter() - start,
    }


def fid_against_test(samples: Tensor, test: Tensor, test_labels: Tensor, args) -> dict:
    """FID of ``samples`` and of the embedded 5,000 training digits (the floor), both against the real test
    digits, on the MNIST domain classifier's features. The real sets' features go to the metrics' reference
    cache (keyed by the classifier's weights)."""
    extractor = DomainFeatures(data="MNIST", root=args.root, path=args.classifier).prepare(args.device)
    embedded, embedded_labels = embedded_mnist()
    test_set, _ = reference_features(lambda: (test, test_labels), extractor, {
        "dataset": "MNIST-1x28x28", "split": "test", "extractor": extractor.name, "count": len(test), "seed": 0})
    floor_set, _ = reference_features(lambda: (embedded, embedded_labels), extractor, {
        "dataset": "EmbeddedMNIST-1x28x28", "split": "all", "extractor": extractor.name, "count": len(embedded),
        "seed": 0})
    fid = compute(["fid"], FeatureSet(extract(extractor, samples, args.batch_size)[0]), test_set)["fid"]
    floor = compute(["fid"], floor_set, test_set)["fid"]
    return {"samples": fid, "floor": floor, "ratio": fid / floor, "extractor": extractor.name,
            "features": extractor.description, "num_samples": len(samples), "num_reference": len(test_set.features),
            "reference": f"MNIST test ({len(test)})", "floor_images": f"embedded MNIST subset ({len(embedded)})"}


def table(r: dict) -> str:
    ok = lambda good: "pass" if good else "**FAIL**"  # noqa: E731
    t, fid = r["targets"], r["fid_mnist"]
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
        f"| fid_mnist of the samples vs {fid['reference']} | {fid['samples']:.3f} | <= {t['fid_ratio']:g} x floor "
        f"= {t['fid_ratio'] * fid['floor']:.3f} | {ok(r['pass']['fid_mnist'])} |",
        f"| fid_mnist floor: {fid['floor_images']} vs {fid['reference']} | {fid['floor']:.3f} | | |",
        f"| fid_mnist / floor | {fid['ratio']:.2f} | <= {t['fid_ratio']:g} | |",
        "",
        "fid_mnist: FID on the MNIST domain classifier's penultimate features, not Inception-v3's.",
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
        write_atomic(Path(args.json), json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
