"""A domain classifier: a small CNN trained on the real data, used offline where Inception-v3 is unavailable.

It serves two metrics (SPEC §7): conditional accuracy (does G draw the class it was asked for?) and, through
``features``, FID/KID in a feature space that knows the domain. It trains in a few minutes on a 2-core CPU and
is cached on disk, one checkpoint per data set:

    python -m gan_lightning classifier --data MNIST --root ../shared/data      # ~99% test accuracy

writes ``~/.cache/gan_lightning/classifiers/MNIST.pt`` (``$GAN_LIGHTNING_CACHE/classifiers/MNIST.pt`` when that
variable is set), which ``get_classifier("MNIST", root)`` then loads instead of training again.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.errors import DataNotFound, UserError

FORMAT = 1  # Bumped when the checkpoint layout changes; an older file is reported, never half-loaded.

# Data sets the classifier knows, with their native (channels, image_size): it is trained at the data's own
# resolution so that generated images of a model trained on that data need no resizing.
DATASETS: dict[str, tuple[int, int]] = {
    "MNIST": (1, 28),
    "FashionMNIST": (1, 28),
    "CIFAR10": (3, 32),
    "mnist5k": (1, 28),  # The embedded 5,000-digit subset; no test split, so a fixed 1,000 are held out.
}
MNIST5K_HELD_OUT = 1000
# Default passes over the training split: about 700 steps of 256 on the 60,000-image sets (~99% on MNIST),
# more passes on the 4,000 training digits of mnist5k so that it, too, gets a few hundred steps.
DEFAULT_EPOCHS: dict[str, int] = {"MNIST": 3, "FashionMNIST": 3, "CIFAR10": 3, "mnist5k": 20}


class DomainClassifier(nn.Module):
    """Three conv blocks and a 2-layer head: images ``(N, C, H, W)`` in [-1, 1] -> logits ``(N, num_classes)``.

    ``features`` gives the penultimate activations ``(N, feature_dim)`` (after the ReLU): the feature space for
    FID/KID. BatchNorm makes them deterministic only in eval mode, which ``features`` callers should use.
    """

    def __init__(
        self,
        channels: int = 1,       # Image channels C.
        image_size: int = 28,    # Image height = width; at least 8 (three 2x poolings).
        num_classes: int = 10,   # Number of classes K.
        width: int = 32,         # Channels of the first conv block; the next two have 2 * width.
        feature_dim: int = 128,  # Size F of the penultimate features.
    ) -> None:
        super().__init__()
        if image_size < 8:
            raise UserError(f"classifier image_size: must be at least 8, got {image_size}")
        if min(channels, num_classes, width, feature_dim) < 1:
            raise UserError("classifier channels, num_classes, width and feature_dim must all be >= 1")
        self.channels, self.image_size, self.num_classes = int(channels), int(image_size), int(num_classes)
        self.width, self.feature_dim = int(width), int(feature_dim)

        def block(c_in: int, c_out: int) -> nn.Sequential:
            # No conv bias: BatchNorm's shift replaces it.
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        # 28 -> 14 -> 7 -> 3: the expensive full-resolution layer is kept narrow, which is what makes a CPU
        # epoch over MNIST take tens of seconds rather than minutes.
        self.body = nn.Sequential(block(channels, width), block(width, 2 * width), block(2 * width, 2 * width))
        side = image_size // 8
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, feature_dim), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, num_classes))

    def init_args(self) -> dict[str, int]:
        """The ``__init__`` arguments that rebuild this network."""
        return {"channels": self.channels, "image_size": self.image_size, "num_classes": self.num_classes,
                "width": self.width, "feature_dim": self.feature_dim}

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(N, feature_dim)`` for images ``(N, C, H, W)`` in [-1, 1]."""
        return self.fc(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` for images ``(N, C, H, W)`` in [-1, 1]."""
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------------------- data


def check_dataset(name: str, field: str = "data set") -> tuple[int, int]:
    """``(channels, image_size)`` of a known data set; a UserError naming ``field`` otherwise."""
    if name not in DATASETS:
        raise UserError(f"{field}: unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def load_split(name: str, root: str, split: str) -> tuple[Tensor, Tensor]:
    """The real images of one split as uint8 ``(N, C, H, W)`` and int64 labels ``(N,)``, held in memory.

    ``mnist5k`` has no test split: a fixed, seed-independent 1,000 of its 5,000 images form ``test`` and the
    other 4,000 ``train``.
    """
    channels, size = check_dataset(name)
    if name == "mnist5k":
        from gan_lightning.data.images import embedded_mnist

        images, labels = embedded_mnist()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(12345))
        keep = order[:MNIST5K_HELD_OUT] if split == "test" else order[MNIST5K_HELD_OUT:]
        return images[keep], labels[keep]
    from gan_lightning.data.images import TorchvisionImages

    dm = TorchvisionImages(name=name, root=root, split=split, image_size=size, channels=channels)
    dm.setup("fit")
    return dm.train_set.data, dm.train_set.labels


def as_root_flag(err: DataNotFound) -> DataNotFound:
    """The data module's missing-files error, reworded for a command whose flag is ``--root`` (no download)."""
    msg = str(err).replace(", or set data.download: true with internet", "").replace("data.root", "--root")
    return DataNotFound(msg)


def _as_float(images: Tensor) -> Tensor:
    """uint8 0..255 -> float [-1, 1] (the data modules' mapping); float images are taken as already in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0) if images.dtype == torch.uint8 else images.float()


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict(classifier: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted labels ``(N,)`` (int64, CPU) for images ``(N, C, H, W)``: uint8 0..255 or float in [-1, 1].

    Runs in eval mode in batches and puts the classifier's mode back afterwards.
    """
    was_training = classifier.training
    classifier.eval()
    device = _device_of(classifier)
    try:
        out = [classifier(_as_float(images[i : i + batch_size].to(device))).argmax(1).cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        classifier.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


# ----------------------------------------------------------------------------------------------- training


def _lr_at(step: int, total: int, lr: float) -> float:
    """One-cycle schedule: linear warm-up over the first 10% of steps, then cosine decay to zero."""
    warm = max(1, total // 10)
    if step < warm:
        return lr * (step + 1) / warm
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Each image translated by its own random integer offset in [-max_shift, max_shift] (zero-filled).

    Generated digits are not centred as exactly as MNIST's; a little translation keeps the classifier from
    leaning on position. Done for the whole batch with one pad and one gather, no per-image Python.
    """
    n, c, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)  # -1 is the background of images in [-1, 1].
    off = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (off[0].view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1).expand(n, c, h, w + 2 * max_shift)
    pad = pad.gather(2, rows)
    cols = (off[1].view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w).expand(n, c, h, w)
    return pad.gather(3, cols)


def train_classifier(
    name: str,                    # MNIST | FashionMNIST | CIFAR10 | mnist5k.
    root: str = "data",           # Folder with torchvision's layout (unused for mnist5k).
    out: Optional[str] = None,    # Checkpoint to write (default: the cache, classifier_path(name)).
    epochs: Optional[int] = None,  # Passes over the training split; None = DEFAULT_EPOCHS[name].
    seed: int = 0,                # Initialisation, batch order and augmentation.
    width: int = 32,              # DomainClassifier width.
    batch_size: int = 256,
    lr: float = 2e-3,             # Peak Adam learning rate of the one-cycle schedule.
    max_steps: Optional[int] = None,  # Stop after this many steps (tests); None = all epochs.
    augment: str = "shift",       # shift: random translations of up to 2 pixels | none.
    device: str = "cpu",
    verbose: bool = True,
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Train a DomainClassifier on the real training split, measure it on the real test split, save it.

    Returns the classifier (eval mode) and the checkpoint's metadata: ``test_accuracy`` (fraction in [0, 1]),
    ``train_seconds``, ``steps`` and the rest written to ``out``.
    """
    channels, size = check_dataset(name)
    epochs = DEFAULT_EPOCHS[name] if epochs is None else epochs
    if augment not in ("shift", "none"):
        raise UserError(f"augment: must be 'shift' or 'none', got {augment!r}")
    if epochs < 1 or batch_size < 1:
        raise UserError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    start = time.perf_counter()
    x_train, y_train = load_split(name, root, "train")
    x_test, y_test = load_split(name, root, "test")
    num_classes = int(max(y_train.max(), y_test.max())) + 1

    dev = torch.device(device)
    # Init and dropout draw from the global RNG: seed it inside a fork so the caller's stream is left as it was.
    with torch.random.fork_rng(devices=[dev] if dev.type != "cpu" else [], device_type=dev.type):
        torch.manual_seed(seed)
        model = DomainClassifier(channels, size, num_classes, width).to(dev)
        steps = _fit(model, x_train, y_train, epochs, seed, batch_size, lr, max_steps, augment, verbose)
    accuracy = float((predict(model, x_test) == y_test).double().mean())
    meta = {
        "data": name,
        "test_accuracy": accuracy,
        "test_images": int(len(y_test)),
        "epochs": epochs,
        "steps": steps,
        "seed": seed,
        "train_seconds": time.perf_counter() - start,
    }
    save_classifier(model, out or classifier_path(name), meta)
    return model, meta


def _fit(model: DomainClassifier, x_train: Tensor, y_train: Tensor, epochs: int, seed: int, batch_size: int,
         lr: float, max_steps: Optional[int], augment: str, verbose: bool) -> int:
    """Train ``model`` in place, leave it in eval mode, return the number of steps taken.

    Adam with a one-cycle learning rate; shuffled batches indexed straight from the uint8 tensors.
    """
    device = _device_of(model)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = len(y_train) // batch_size  # drop the ragged last batch: BatchNorm dislikes tiny ones.
    if steps_per_epoch < 1:
        raise UserError(f"batch_size: {batch_size} is larger than the {len(y_train)} training images; lower it")
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(len(y_train), generator=gen)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = _as_float(x_train[idx])
            if augment == "shift":
                x = _shift(x, 2, gen)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, lr)
            loss = F.cross_entropy(model(x.to(device)), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if verbose and (step % 100 == 0 or step == total):
                # .item() syncs, but only every 100 steps, and this loop runs on the CPU in practice.
                print(f"  step {step}/{total}  loss {loss.item():.4f}", file=sys.stderr, flush=True)
    model.eval()
    return step


# ------------------------------------------------------------------------------------------ saving, cache


def save_classifier(model: DomainClassifier, path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write ``{format, init_args, state_dict, **meta}`` atomically: a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # A per-process temporary name: two processes filling the same cache never write into one file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": FORMAT, "init_args": model.init_args(), "state_dict": state, **meta}, tmp)
    os.replace(tmp, path)


def load_classifier(path: str | os.PathLike, device: str = "cpu") -> tuple[DomainClassifier, dict[str, Any]]:
    """A saved classifier in eval mode, and its metadata (``data``, ``test_accuracy``, ...)."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataNotFound(
            f"classifier checkpoint {path!r} does not exist; train one with "
            "`python -m gan_lightning classifier --data NAME --root DIR --out PATH`"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"classifier checkpoint {path!r} is not readable ({type(err).__name__}); delete it and "
                        "train again with `python -m gan_lightning classifier`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"classifier checkpoint {path!r} was not written by this version of "
                        "`python -m gan_lightning classifier`; delete it and train again")
    model = DomainClassifier(**ckpt["init_args"])
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "init_args", "format")}
    return model.to(device).eval(), meta


def cache_root() -> Path:
    """The package's cache folder: ``$GAN_LIGHTNING_CACHE``, else ``$XDG_CACHE_HOME/gan_lightning``, else
    ``~/.cache/gan_lightning``."""
    if os.environ.get("GAN_LIGHTNING_CACHE"):
        return Path(os.environ["GAN_LIGHTNING_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gan_lightning"


def classifier_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the cached classifier of data set ``name`` lives: ``<cache>/classifiers/<name>.pt``."""
    check_dataset(name)
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "classifiers"
    return base / f"{name}.pt"


def get_classifier(name: str, root: str = "data", cache_dir: str | os.PathLike | None = None,
                   device: str = "cpu", **train_kwargs: Any) -> tuple[DomainClassifier, dict[str, Any]]:
    """The cached classifier of ``name``, training it (and filling the cache) the first time only.

    ``train_kwargs`` go to ``train_classifier`` and matter only when it trains; a cached file is used whatever
    settings wrote it (its metadata says which).
    """
    path = classifier_path(name, cache_dir)
    if path.is_file():
        return load_classifier(path, device)
    print(f"no cached {name} classifier at {path}; training one (once)", file=sys.stderr, flush=True)
    model, meta = train_classifier(name, root, out=str(path), device=device, **train_kwargs)
    return model, meta


# -------------------------------------------------------------------------------------------------- CLI


def classifier_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning classifier --data MNIST --root ../shared/data [--out PATH] ...``"""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="python -m gan_lightning classifier",
                            description="Train the domain classifier of a data set (for conditional accuracy and FID).")
    parser.add_argument("--data", type=str, default="MNIST", help=f"One of {sorted(DATASETS)}.")
    parser.add_argument("--root", type=str, default="data", help="Folder with torchvision's layout (e.g. ../shared/data).")
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
        _, meta = train_classifier(args.data, args.root, out=out, epochs=args.epochs, seed=args.seed,
                                   width=args.width, batch_size=args.batch_size, lr=args.lr,
                                   augment=args.augment, device=args.device)
    except DataNotFound as err:
        raise as_root_flag(err) from None
    print(f"{args.data} classifier: test accuracy {100 * meta['test_accuracy']:.2f}% on {meta['test_images']} "
          f"real test images, {meta['steps']} steps in {meta['train_seconds']:.0f} s; wrote {out}")
    return 0
