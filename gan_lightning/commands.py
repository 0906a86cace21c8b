"""``sample`` (and the checkpoint loading the other commands share)."""

from __future__ import annotations

import functools
import os
import pickle
import re
from typing import Optional, Sequence

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.compat import CLASS_PATH_KEY, INSTANTIATOR_KEY
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.sampling import draw, save_grid, save_scatter, to_uint8
from gan_lightning.system import GAN


def read_checkpoint(ckpt_path: str, trust: bool = False) -> dict:
    """A checkpoint's contents, read without executing pickled code: ``torch.load(weights_only=True)`` allows
    tensors, containers and plain values only (what ``fit`` writes). A file that needs more is refused with a
    line saying how to trust it explicitly (``trust=True``: a full unpickle, for files from a trusted source)."""
    if not os.path.isfile(ckpt_path):
        raise DataNotFound(f"--ckpt_path: no checkpoint at {ckpt_path!r}; fit writes runs/<experiment>/<run>/checkpoints/last.ckpt")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        if not trust and "Weights only load failed" in str(err):
            raise UserError(f"--ckpt_path: {ckpt_path!r} holds a pickled object{what} beyond tensors and plain values, "
                            "and loading it could run code from the file; if you trust its source, add "
                            "--trust_checkpoint") from None
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a readable PyTorch checkpoint (UnpicklingError)") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"--ckpt_path: {ckpt_path!r} is not a checkpoint written by `python -m gan_lightning fit`")
    return ckpt


def load_gan(ckpt_path: str, device: str = "cpu", trust: bool = False) -> GAN:
    """A trained GAN from a checkpoint written by ``fit``, in eval mode (read as ``read_checkpoint`` does)."""
    ckpt = read_checkpoint(ckpt_path, trust)
    hparams = ckpt.get("hyper_parameters", {})
    if INSTANTIATOR_KEY not in hparams or "generator" not in hparams:
        raise UserError(
            f"--ckpt_path: {ckpt_path!r} was not written by `python -m gan_lightning fit`; load it in Python with "
            "GAN.load_from_checkpoint(path, generator=..., discriminator=...)"
        )
    model = GAN.load_from_checkpoint(ckpt_path, map_location=device, weights_only=not trust)
    return model.eval()


def load_condition_images(path: str, shape: tuple[int, ...]) -> torch.Tensor:
    """uint8 images ``(N, *shape)`` from an .npz (array ``images`` or ``samples``), in data space [-1, 1]."""
    if not os.path.isfile(path):
        raise DataNotFound(f"--condition_images: no file at {path!r}")
    with np.load(path) as f:
        key = next((k for k in ("images", "samples") if k in f), None)
        if key is None:
            raise UserError(f"--condition_images: {path!r} has no 'images' or 'samples' array")
        images = torch.from_numpy(f[key])
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise UserError(
            f"--condition_images: expected uint8 images of shape (N, {', '.join(map(str, shape))}), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    return images.float().div(127.5).sub(1.0)


def real_from_checkpoint(ckpt_path: str, seed: int = 0, trust: bool = False):
    """``real(n)``: ``n`` training samples of the data a checkpoint was trained on (a seeded subset, cycled)."""

    def real(n: int) -> torch.Tensor:
        x, _ = data_from_checkpoint(ckpt_path, trust).real_samples(n, seed=seed)
        return x[torch.arange(n) % len(x)]

    return real


def sample_main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m gan_lightning sample", description="Draw samples from a trained GAN.")
    parser.add_argument("--ckpt_path", type=str, required=True, help="Checkpoint written by fit.")
    parser.add_argument("--num", type=int, default=1000, help="Number of samples.")
    parser.add_argument("--out", type=str, required=True, help="Output .npz: samples (and labels or conditions).")
    parser.add_argument("--labels", type=Optional[list[int]], default=None,
                        help="Class-conditional models: class labels, cycled to --num (default: evenly over all classes).")
    parser.add_argument("--condition_images", type=Optional[str], default=None,
                        help="Models conditioned on images: .npz with uint8 images (N, C, H, W) under 'samples' or "
                             "'images'; their conditions are used, cycled to --num (default: training images).")
    parser.add_argument("--seed", type=int, default=0, help="Seed: sample i always gets the same noise.")
    parser.add_argument("--grid", type=Optional[str], default=None, help="Also write a PNG grid (scatter plot for 2D).")
    parser.add_argument("--batch_size", type=int, default=500, help="Samples per generator call.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--ema", type=str, default="auto", help="auto: the EMA generator when there is one | live.")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Unpickle everything in the checkpoint (only for files from a trusted source).")
    args = parser.parse_args(list(argv))
    if args.num < 1:
        raise UserError(f"--num: must be >= 1, got {args.num}")
    if not args.out.endswith(".npz"):
        raise UserError(f"--out: {args.out!r} must end in .npz")
    if args.ema not in ("auto", "live"):
        raise UserError(f"--ema: must be 'auto' or 'live', got {args.ema!r}")
    model = load_gan(args.ckpt_path, args.device, args.trust_checkpoint)
    conditioning = model.conditioning
    images = load_condition_images(args.condition_images, model.generator.out_shape) if args.condition_images else None
    conditions = conditioning.sample_conditions(args.num, labels=args.labels, images=images,
                                                real=real_from_checkpoint(args.ckpt_path, args.seed,
                                                                          args.trust_checkpoint))
    samples = draw(model, args.num, seed=args.seed, labels=conditions, batch_size=args.batch_size,
                   ema=args.ema == "auto")
    out = {"samples": to_uint8(samples).numpy() if model.generator.is_image else samples.float().numpy()}
    if conditions is not None:
        out.update(conditioning.arrays(conditions))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out[:-4] + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, args.out)
    if args.grid:
        if model.generator.is_image:
            n = min(args.num, 100)
            classes = conditioning.class_labels(conditions)
            if classes is not None:  # one row per class shown
                order = torch.argsort(classes[:n], stable=True)
                save_grid(samples[:n][order], args.grid, nrow=max(1, n // max(1, len(classes[:n].unique()))))
            else:
                save_grid(samples[:n], args.grid, nrow=10)
        else:
            save_scatter(samples, args.grid)
    print(f"wrote {args.num} samples to {args.out}" + (f" and {args.grid}" if args.grid else ""))
    return 0


def data_from_checkpoint(ckpt_path: str, trust: bool = False):
    """The data module a checkpoint was trained on, rebuilt from the config the CLI saved in it."""
    import importlib

    from gan_lightning.data.base import GANDataModule

    ckpt = read_checkpoint(ckpt_path, trust)
    hp = dict(ckpt.get("datamodule_hyper_parameters") or {})
    class_path = hp.pop(CLASS_PATH_KEY, None)
    hp.pop(INSTANTIATOR_KEY, None)
    if not class_path:
        raise UserError(f"--ckpt_path: {ckpt_path!r} holds no data config; give the reference data with --data")
    module, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, GANDataModule)):
        raise UserError(f"--ckpt_path: the data class {class_path!r} in the checkpoint is not a GANDataModule")
    return cls(**hp)


def _evaluate_worker(args, datamodule, extractor, out: dict) -> dict:
    from gan_lightning.metrics.image import FeatureSet, compute, data_key, generated_features, extract
    from gan_lightning.metrics.image import real_uint8, reference_features

    device = args.device_for_rank
    extractor.prepare(device)
    key = {"dataset": data_key(datamodule), "split": "train", "extractor": extractor.name,
           "count": args.num_reference, "seed": args.reference_seed}
    ref, cached = reference_features(lambda: real_uint8(datamodule, args.num_reference, args.reference_seed),
                                     extractor, key, args.cache_dir)
    if args.samples:
        with np.load(args.samples) as f:
            if "samples" not in f:
                raise UserError(f"--samples: {args.samples!r} has no 'samples' array (write it with `sample`)")
            images = torch.from_numpy(f["samples"])
            labels = torch.from_numpy(f["labels"]).long() if "labels" in f else None
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise UserError(f"--samples: expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        feats, logits = extract(extractor, images)
        gen = FeatureSet(feats, logits, labels)
        names = args.metrics or (["fid", "kid", "accuracy", "intra_fid"] if labels is not None else ["fid", "kid"])
    else:
        model = load_gan(args.ckpt_path, device, args.trust_checkpoint)
        gen = generated_features(model, extractor, args.num, args.seed, args.batch_size)
        names = args.metrics or (["fid", "kid", "accuracy", "intra_fid"] if model.conditioning.class_count > 0
                                 else ["fid", "kid", "class_histogram"])
    out.update(compute(names, gen, ref))
    return out


def _evaluate_rank(args, datamodule, extractor, base: dict, fabric) -> dict:
    args.device_for_rank = fabric.device
    return _evaluate_worker(args, datamodule, extractor, dict(base))


def evaluate_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning evaluate``: metrics of a checkpoint or a samples file, as JSON."""
    import json

    from gan_lightning.data.base import GANDataModule
    from gan_lightning.metrics.features import DomainFeatures, FeatureExtractor
    from gan_lightning.metrics.image import check_metrics

    parser = ArgumentParser(prog="python -m gan_lightning evaluate",
                            description="Metrics of a checkpoint or a samples file, as JSON.")
    parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="Checkpoint written by fit.")
    parser.add_argument("--samples", type=Optional[str], default=None, help="Or: an .npz written by `sample`.")
    parser.add_subclass_arguments(GANDataModule, "data", required=False,
                                  help="Reference data (default: the data the checkpoint was trained on).")
    parser.add_subclass_arguments(FeatureExtractor, "extractor", required=False,
                                  help="Feature extractor (default: DomainFeatures of the embedded MNIST subset).")
    parser.add_argument("--metrics", type=Optional[list[str]], default=None, help="Default: by model kind.")
    parser.add_argument("--num", type=int, default=10000, help="Generated samples (checkpoints only).")
    parser.add_argument("--num_reference", type=int, default=10000, help="Real images in the reference set.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the samples' noise.")
    parser.add_argument("--reference_seed", type=int, default=0, help="Seed of the reference subset.")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--devices", type=int, default=1, help="Processes to split the sampling over.")
    parser.add_argument("--accelerator", type=str, default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--cache_dir", type=Optional[str], default=None, help="Reference cache folder.")
    parser.add_argument("--out", type=Optional[str], default=None, help="JSON file (default: print only).")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Unpickle everything in the checkpoint (only for files from a trusted source).")
    args = parser.parse_args(list(argv))
    if bool(args.ckpt_path) == bool(args.samples):
        raise UserError("evaluate: give exactly one of --ckpt_path and --samples")
    if args.samples and not os.path.isfile(args.samples):
        raise DataNotFound(f"--samples: no file at {args.samples!r}")
    if args.ckpt_path and not os.path.isfile(args.ckpt_path):
        raise DataNotFound(f"--ckpt_path: no checkpoint at {args.ckpt_path!r}")
    if args.metrics:
        check_metrics(args.metrics, "--metrics")
    if args.num < 2 or args.num_reference < 2 or args.devices < 1:
        raise UserError("evaluate: --num and --num_reference must be >= 2 and --devices >= 1")
    init = parser.instantiate_classes(args)
    if init.data is not None:
        datamodule = init.data
    elif args.ckpt_path:
        datamodule = data_from_checkpoint(args.ckpt_path, args.trust_checkpoint)
    else:
        raise UserError("--data: a samples file needs its reference data, e.g. --data gan_lightning.data.EmbeddedMNIST")
    extractor = init.extractor if init.extractor is not None else DomainFeatures()
    extractor.prepare("cpu")  # train or load once here, before any process is started
    base = {"source": args.ckpt_path or args.samples, "num": args.num, "num_reference": args.num_reference,
            "extractor": extractor.name, "seed": args.seed, "devices": args.devices}
    if args.devices == 1 or args.samples:
        args.device_for_rank = "cuda" if args.accelerator == "cuda" else "cpu"
        result = _evaluate_worker(args, datamodule, extractor, dict(base))
    else:
        from lightning.fabric import Fabric

        fabric = Fabric(accelerator=args.accelerator, devices=args.devices, strategy="ddp_spawn")
        result = fabric.launch(functools.partial(_evaluate_rank, args, datamodule, extractor, base))
    text = json.dumps(result, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)
    print(text)
    return 0
