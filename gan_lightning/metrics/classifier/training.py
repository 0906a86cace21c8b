"""Training the domain classifier: its augmentation and training loop (``train_classifier``, which writes the
checkpoint), and ``get_classifier``, the cached classifier of a data set, trained the first time only."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import UserError
from gan_lightning.metrics.classifier.datasets import check_dataset, load_split
from gan_lightning.metrics.classifier.network import DomainClassifier, device_of, predict
from gan_lightning.metrics.classifier.storage import classifier_path, load_classifier, save_classifier
from gan_lightning.runtime.console import progress, progress_shown
from gan_lightning.sampling.pixels import to_float

# Default passes over the training split: about 700 steps of 256 on the 60,000-image sets (~99% on MNIST),
# more passes on the 4,000 training digits of mnist5k so that it, too, gets a few hundred steps.
DEFAULT_EPOCHS: dict[str, int] = {"MNIST": 3, "FashionMNIST": 3, "CIFAR10": 3, "mnist5k": 20}


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
    batch_size: int = 256,        # Images per step.
    lr: float = 2e-3,             # Peak Adam learning rate of the one-cycle schedule.
    max_steps: Optional[int] = None,  # Stop after this many steps (tests); None = all epochs.
    augment: str = "shift",       # shift: random translations of up to 2 pixels | none.
    device: str = "cpu",          # Where to train: cpu, cuda, cuda:1, ...
    verbose: bool = True,         # Progress on stderr: a bar on a terminal (loss every 100 steps), else a line per 100 steps.
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
        steps = _fit(model, x_train, y_train, epochs, seed, batch_size, lr, max_steps, augment, verbose,
                     desc=f"{name} classifier")
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
         lr: float, max_steps: Optional[int], augment: str, verbose: bool, desc: str = "classifier") -> int:
    """Train ``model`` in place, leave it in eval mode, return the number of steps taken.

    Adam with a one-cycle learning rate; shuffled batches indexed straight from the uint8 tensors. With
    ``verbose``: a progress bar over the steps when stderr is a terminal (the loss in its postfix every 100
    steps), otherwise one line per 100 steps.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = len(y_train) // batch_size  # drop the ragged last batch: BatchNorm dislikes tiny ones.
    if steps_per_epoch < 1:
        raise UserError(f"batch_size: {batch_size} is larger than the {len(y_train)} training images; lower it")
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    model.train()
    bar_shown = progress_shown(verbose)
    with progress(total, desc, unit="step", enabled=verbose) as bar:
        step = _steps(model, opt, x_train, y_train, gen, steps_per_epoch, total, batch_size, lr, augment, verbose,
                      bar, bar_shown)
    model.eval()
    return step


def _steps(model: DomainClassifier, opt: torch.optim.Optimizer, x_train: Tensor, y_train: Tensor,
           gen: torch.Generator, steps_per_epoch: int, total: int, batch_size: int, lr: float, augment: str,
           verbose: bool, bar: Any, bar_shown: bool) -> int:
    """The training loop of ``_fit``: ``total`` steps; returns the number taken."""
    device = device_of(model)
    step = 0
    while step < total:
        order = torch.randperm(len(y_train), generator=gen)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = to_float(x_train[idx])
            if augment == "shift":
                x = _shift(x, 2, gen)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, lr)
            loss = F.cross_entropy(model(x.to(device)), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if verbose and (step % 100 == 0 or step == total):
                # .item() syncs, but only every 100 steps, and this loop runs on the CPU in practice.
                if bar_shown:
                    bar.set_postfix_str(f"loss {loss.item():.4f}")
                else:
                    print(f"  step {step}/{total}  loss {loss.item():.4f}", file=sys.stderr, flush=True)
    return step


# -------------------------------------------------------------------------------------------------- cache


def get_classifier(name: str, root: str = "data", cache_dir: str | os.PathLike | None = None,
                   device: str = "cpu", **train_kwargs: Any) -> tuple[DomainClassifier, dict[str, Any]]:
    """The cached classifier of ``name`` (``classifier_path(name, cache_dir)``), training it (and filling the
    cache) the first time only.

    ``train_kwargs`` go to ``train_classifier`` and matter only when it trains; a cached file is used whatever
    settings wrote it (its metadata says which).
    """
    path = classifier_path(name, cache_dir)
    if path.is_file():
        return load_classifier(path, device)
    print(f"no cached {name} classifier at {path}; training one (once)", file=sys.stderr, flush=True)
    model, meta = train_classifier(name, root, out=str(path), device=device, **train_kwargs)
    return model, meta
