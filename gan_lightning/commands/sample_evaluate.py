"""``sample`` (and the checkpoint loading the other commands share)."""

from __future__ import annotations

import functools
import os
import pickle
import re
import shutil
from typing import Optional, Sequence

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.runtime.compat import CLASS_PATH_KEY, INSTANTIATOR_KEY
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.sampling.pixels import to_float
from gan_lightning.sampling.draw import (check_truncation, draw, draw_from, interpolation_noise, save_grid,
                                    save_scatter, to_uint8)
from gan_lightning.training.system import GAN


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
        if not trust and found:
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
    return to_float(images)


def real_from_checkpoint(ckpt_path: str, seed: int = 0, trust: bool = False):
    """``real(n)``: ``n`` training samples of the data a checkpoint was trained on (a seeded subset, cycled)."""

    def real(n: int) -> torch.Tensor:
        x, _ = data_from_checkpoint(ckpt_path, trust).real_samples(n, seed=seed)
        return x[torch.arange(n) % len(x)]

    return real


PNG_NAME = re.compile(r"\d{6,}\.png")  # the files an export writes, beside labels.csv


def _check_output(path: str, field: str, suffix: str) -> None:
    """Refuse an output file that cannot be written, before anything is drawn: wrong suffix, a folder in the way,
    or a parent folder that cannot be created."""
    if not path.endswith(suffix):
        raise UserError(f"{field}: {path!r} must end in {suffix}")
    if os.path.isdir(path):
        raise UserError(f"{field}: {path!r} is a folder; give a file name ending in {suffix}")
    _check_parent(path, field)


def _check_parent(path: str, field: str) -> None:
    """Refuse a path whose parent folder neither exists nor can be created."""
    parent = os.path.dirname(os.path.abspath(path))
    nearest = parent
    while not os.path.exists(nearest):
        nearest = os.path.dirname(nearest)
    if not os.path.isdir(nearest):
        raise UserError(f"{field}: cannot create the folder {parent!r}: {nearest!r} is a file")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UserError(f"{field}: cannot write into {nearest!r} (permission denied); choose another folder")


def _make_parent(path: str, field: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise UserError(f"{field}: cannot create the folder {parent!r} ({err.strerror or type(err).__name__})") from None


def _check_png_dir(folder: str) -> None:
    """``--png_dir`` must be a new folder, an empty one or an earlier export (only ``NNNNNN.png`` and
    ``labels.csv``), so that replacing it loses nothing else and leaves no stale image behind."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"--png_dir: {folder!r} is a file; give a folder (it is created if missing)")
    if os.path.isdir(folder):
        other = sorted(n for n in os.listdir(folder) if n != "labels.csv" and not PNG_NAME.fullmatch(n))
        if other:
            raise UserError(f"--png_dir: {folder!r} holds files sample did not write (e.g. {other[0]!r}); give a new "
                            "or empty folder")
    _check_parent(folder, "--png_dir")


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temporary file, then renamed over ``path``: a reader never sees a partial file."""
    _make_parent(path, "--out")
    tmp = path[:-4] + f".tmp-{os.getpid()}.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _labels_table(arrays: dict[str, np.ndarray]) -> Optional[tuple[list[str], list[list[str]]]]:
    """The header and rows (without the file column) of labels.csv: ``label`` for class labels, ``condition_j``
    for the flattened values of any other condition; None for an unconditional model."""
    if "labels" in arrays:
        return ["label"], [[str(int(v))] for v in arrays["labels"]]
    if not arrays:
        return None
    values = np.concatenate([a.reshape(len(a), -1) for a in arrays.values()], axis=1)
    header = [f"condition_{j}" for j in range(values.shape[1])]
    return header, [[f"{v:.9g}" for v in row] for row in values.astype(np.float64)]


def _write_png_dir(folder: str, images: torch.Tensor, conditions: dict[str, np.ndarray]) -> None:
    """``folder/000000.png ...`` (one per uint8 image) and ``folder/labels.csv``, written into a temporary sibling
    folder that then replaces ``folder`` (an earlier export is replaced only once the new one is complete)."""
    from gan_lightning.sampling.draw import save_pngs

    folder = os.path.abspath(folder)
    _make_parent(folder, "--png_dir")
    parent, name = os.path.split(folder)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    old = os.path.join(parent, f".{name}.old-{os.getpid()}")
    os.mkdir(tmp)
    try:
        files = save_pngs(images, tmp)
        table = _labels_table(conditions)
        if table is not None:
            header, rows = table
            with open(os.path.join(tmp, "labels.csv"), "w") as f:
                f.write(",".join(["file", *header]) + "\n")
                f.writelines(",".join([file, *row]) + "\n" for file, row in zip(files, rows))
        if os.path.isdir(folder):
            _check_png_dir(folder)  # again, just before an earlier export is replaced
            os.rename(folder, old)
            try:
                os.rename(tmp, folder)
            except OSError:
                os.rename(old, folder)
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, folder)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def _write_atomically(path: str, write) -> None:
    """``write(tmp)`` to a temporary file with the same suffix, then renamed over ``path``."""
    _make_parent(path, "--grid")
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{ext}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device: {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {device!r} but no CUDA device is available here; use --device cpu")


def sample_parser() -> ArgumentParser:
    """The options of ``python -m gan_lightning sample``."""
    parser = ArgumentParser(prog="python -m gan_lightning sample", description="Draw samples from a trained GAN.")
    parser.add_argument("--ckpt_path", type=str, required=True, help="Checkpoint written by fit.")
    parser.add_argument("--num", type=int, default=1000,
                        help="Number of samples (with --interpolate: number of interpolation rows).")
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="Output .npz: samples (and labels or conditions; with --interpolate also t and z).")
    parser.add_argument("--png_dir", type=Optional[str], default=None,
                        help="Also (or instead of --out) one PNG per sample, DIR/000000.png ..., and DIR/labels.csv "
                             "(file,label or file,condition_0,...): a folder FID tools read.")
    parser.add_argument("--labels", type=Optional[list[int]], default=None,
                        help="Class-conditional models: class labels, cycled to --num (default: evenly over all classes).")
    parser.add_argument("--condition_images", type=Optional[str], default=None,
                        help="Models conditioned on images: .npz with uint8 images (N, C, H, W) under 'samples' or "
                             "'images'; their conditions are used, cycled to --num (default: training images).")
    parser.add_argument("--seed", type=int, default=0, help="Seed: sample i always gets the same noise.")
    parser.add_argument("--truncation", type=Optional[float], default=None,
                        help="Truncation trick, threshold psi > 0 (default: off). Normal prior: coordinates outside "
                             "[-psi, psi] are resampled inside (BigGAN); uniform prior: noise scaled to [-psi, psi] "
                             "(psi >= 1: unchanged).")
    parser.add_argument("--interpolate", type=Optional[int], default=None,
                        help="K >= 2: --num rows of K samples along the slerp from the noise of sample 2r to that of "
                             "sample 2r+1, one class or condition per row.")
    parser.add_argument("--grid", type=Optional[str], default=None,
                        help="Also write a PNG grid: fixed noise and conditions of --seed whatever --num, so grids of "
                             "two checkpoints or runs compare image by image (2D points: a scatter plot of the samples).")
    parser.add_argument("--per_row", type=int, default=10, help="Grid: images per row (per class when conditional).")
    parser.add_argument("--grid_rows", type=int, default=10,
                        help="Grid: rows of samples (unconditional and image conditions; class-conditional models get "
                             "one row per class or per --labels entry); with --interpolate, the rows shown.")
    parser.add_argument("--batch_size", type=int, default=500, help="Samples per generator call.")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--ema", type=str, default="auto", help="auto: the EMA generator when there is one | live.")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Unpickle everything in the checkpoint (only for files from a trusted source).")
    return parser


def _check_sample_args(args) -> None:
    """Every option of ``sample`` that can be checked before the checkpoint is read."""
    if not (args.out or args.png_dir or args.grid):
        raise UserError("sample: give an output: --out FILE.npz, --png_dir DIR or --grid FILE.png")
    if args.num < 1:
        raise UserError(f"--num: must be >= 1, got {args.num}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size: must be >= 1, got {args.batch_size}")
    if args.per_row < 1 or args.grid_rows < 1:
        raise UserError(f"--per_row, --grid_rows: must be >= 1, got {args.per_row} and {args.grid_rows}")
    if args.ema not in ("auto", "live"):
        raise UserError(f"--ema: must be 'auto' or 'live', got {args.ema!r}")
    check_truncation(args.truncation)
    if args.interpolate is not None and args.interpolate < 2:
        raise UserError(f"--interpolate: needs K >= 2 points per row (the two endpoints included), got {args.interpolate}")
    if args.out:
        _check_output(args.out, "--out", ".npz")
    if args.grid:
        _check_output(args.grid, "--grid", ".png")
    if args.png_dir:
        _check_png_dir(args.png_dir)
        folder = os.path.abspath(args.png_dir)
        for field, path in (("--out", args.out), ("--grid", args.grid)):
            if path and os.path.commonpath([folder, os.path.abspath(path)]) == folder:
                raise UserError(f"{field}: {path!r} is inside --png_dir {args.png_dir!r}, which holds only the "
                                "exported PNGs; write it elsewhere")
    _check_device(args.device)


def _grid_images(model: GAN, args, draw_fn, images: Optional[torch.Tensor], real) -> tuple[torch.Tensor, int]:
    """The comparison grid: samples ``0..n-1`` of the seeded draw with conditions fixed by the options alone
    (``--seed``, ``--labels``, ``--condition_images``, ``--per_row``, ``--grid_rows``, ``--truncation``), laid out
    by the conditioning module as the training-time ``SampleGrid`` does; only the networks change between
    checkpoints."""
    conditioning = model.conditioning
    if args.labels:  # one row per given label
        per_label = [label for label in args.labels for _ in range(args.per_row)]
        return draw_fn(len(per_label), conditioning.sample_conditions(len(per_label), labels=per_label)), args.per_row
    if images is not None:  # rows from the given condition images instead of training images
        real = lambda n: images[torch.arange(n) % len(images)]  # noqa: E731
    return conditioning.grid(draw_fn, real, args.per_row, args.grid_rows)


def sample_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning sample``: samples of a checkpoint into an .npz, a folder of PNGs and/or a grid;
    optionally truncated (``--truncation``) or along interpolation paths (``--interpolate``)."""
    args = sample_parser().parse_args(list(argv))
    _check_sample_args(args)
    model = load_gan(args.ckpt_path, args.device, args.trust_checkpoint)
    generator = model.generator
    if args.png_dir and not generator.is_image:
        raise UserError("--png_dir: this model draws 2D points, not images; write them with --out")
    if args.png_dir and generator.out_shape[0] not in (1, 3):
        raise UserError(f"--png_dir: images with {generator.out_shape[0]} channels cannot be PNGs (1 or 3 channels); "
                        "write them with --out")
    conditioning = model.conditioning
    ema = args.ema == "auto"
    images = load_condition_images(args.condition_images, generator.out_shape) if args.condition_images else None
    real = real_from_checkpoint(args.ckpt_path, args.seed, args.trust_checkpoint)
    conditions = conditioning.sample_conditions(args.num, labels=args.labels, images=images, real=real)
    extra: dict[str, np.ndarray] = {}
    if args.interpolate:  # one row per condition, K points per row
        k = args.interpolate
        z, t = interpolation_noise(args.num, k, model.latent_dim, model.latent_prior, args.seed, args.truncation)
        conditions = conditions.repeat_interleave(k, dim=0) if conditions is not None else None
        samples = draw_from(model, z, conditions, args.batch_size, ema)
        extra = {"t": t.numpy(), "z": z.numpy()}
    else:
        samples = draw(model, args.num, seed=args.seed, labels=conditions, batch_size=args.batch_size, ema=ema,
                       truncation=args.truncation)
    pixels = to_uint8(samples) if generator.is_image else None
    arrays = conditioning.arrays(conditions) if conditions is not None else {}
    written = []
    if args.out:
        _write_npz(args.out, {"samples": pixels.numpy() if pixels is not None else samples.float().numpy(),
                              **arrays, **extra})
        written.append(args.out)
    if args.png_dir:
        _write_png_dir(args.png_dir, pixels, arrays)
        written.append(f"{args.png_dir}/ (000000.png ...)")
    if args.grid:
        if not generator.is_image:
            _write_atomically(args.grid, lambda path: save_scatter(samples, path))
        else:
            if args.interpolate:
                grid, nrow = samples[: args.grid_rows * args.interpolate], args.interpolate
            else:
                draw_fn = lambda n, c: draw(model, n, seed=args.seed, labels=c, batch_size=args.batch_size,  # noqa: E731
                                            ema=ema, truncation=args.truncation)
                grid, nrow = _grid_images(model, args, draw_fn, images, real)
            _write_atomically(args.grid, lambda path: save_grid(grid, path, nrow=nrow))
        written.append(args.grid)
    what = f"{args.num} rows of {args.interpolate} interpolated samples" if args.interpolate else f"{args.num} samples"
    print(f"wrote {what} to {' and '.join(written)}")
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
