"""``python -m gan_lightning classifier``: train the domain classifier of a data set and write it to the cache.
A progress bar over the training steps on stderr when it is a terminal (a line per 100 steps otherwise;
``--quiet``: neither)."""

from __future__ import annotations

from typing import Optional, Sequence

from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.metrics.classifier.datasets import DATASETS, as_root_flag, check_dataset
from gan_lightning.metrics.classifier.storage import classifier_path
from gan_lightning.metrics.classifier.training import DEFAULT_EPOCHS, train_classifier
from gan_lightning.runtime.console import quiet_if


def classifier_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning classifier --data MNIST --root data [--out PATH] ...``"""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="python -m gan_lightning classifier",
                            description="Train the domain classifier of a data set (for conditional accuracy and FID).")
    parser.add_argument("--data", type=str, default="MNIST", help=f"One of {sorted(DATASETS)}.")
    parser.add_argument("--root", type=str, default="data", help="Folder with torchvision's layout (data/MNIST/raw/...).")
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="Checkpoint to write (default: the cache, <cache>/classifiers/<data>.pt).")
    parser.add_argument("--epochs", type=Optional[int], default=None,
                        help=f"Passes over the training split (default: {DEFAULT_EPOCHS}).")
    parser.add_argument("--seed", type=int, default=0, help="Initialisation, batch order and augmentation.")
    parser.add_argument("--width", type=int, default=32, help="Channels of the first conv block.")
    parser.add_argument("--batch_size", type=int, default=256, help="Images per step.")
    parser.add_argument("--lr", type=float, default=2e-3, help="Peak Adam learning rate (one-cycle schedule).")
    parser.add_argument("--augment", type=str, default="shift", help="shift (random 2-pixel translations) | none.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--quiet", type=bool, nargs="?", const=True, default=False,
                        help="No progress bar and no loss lines on stderr.")
    args = parser.parse_args(list(argv))
    check_dataset(args.data, "--data")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs: must be >= 1, got {args.epochs}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {args.batch_size}")
    if args.augment not in ("shift", "none"):
        raise UserError(f"--augment: must be 'shift' or 'none', got {args.augment!r}")
    out = args.out or str(classifier_path(args.data))
    try:
        with quiet_if(args.quiet):
            _, meta = train_classifier(args.data, args.root, out=out, epochs=args.epochs, seed=args.seed,
                                       width=args.width, batch_size=args.batch_size, lr=args.lr,
                                       augment=args.augment, device=args.device, verbose=not args.quiet)
    except DataNotFound as err:
        raise as_root_flag(err) from None
    print(f"{args.data} classifier: test accuracy {100 * meta['test_accuracy']:.2f}% on {meta['test_images']} "
          f"real test images, {meta['steps']} steps in {meta['train_seconds']:.0f} s; wrote {out}")
    return 0
