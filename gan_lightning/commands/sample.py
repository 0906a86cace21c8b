"""``python -m gan_lightning sample``: samples of a checkpoint into an .npz, a folder of PNGs and/or a grid;
optionally truncated (``--truncation``) or along interpolation paths (``--interpolate``). Every output is checked
before the checkpoint is read and written atomically (``gan_lightning.runtime.files``).

A model with ``model.refinement`` draws refined samples; the .npz then holds ``refined = True``, so that
``evaluate --samples`` reports their values as ``*_refined``. Drawing and the PNG export show progress bars on
stderr when it is a terminal (``--quiet``: none)."""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.commands.checkpoints import load_gan, real_from_checkpoint
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.runtime.console import progress, quiet_if
from gan_lightning.runtime.files import atomic_path, atomic_write, replace_folder
from gan_lightning.sampling.draw import (check_truncation, draw, draw_from, interpolation_noise, save_grid,
                                         save_scatter, to_uint8)
from gan_lightning.sampling.pixels import to_float
from gan_lightning.training.system import GAN


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
    """``np.savez`` written atomically: a reader never sees a partial file."""
    _make_parent(path, "--out")
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


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


def _write_png_dir(folder: str, images: torch.Tensor, conditions: dict[str, np.ndarray], chunk: int = 500) -> None:
    """``folder/000000.png ...`` (one per uint8 image) and ``folder/labels.csv``, written into a temporary sibling
    folder that then replaces ``folder`` (an earlier export is replaced only once the new one is complete)."""
    from gan_lightning.sampling.draw import save_pngs

    folder = os.path.abspath(folder)
    _make_parent(folder, "--png_dir")
    with replace_folder(folder) as tmp:
        files: list[str] = []
        with progress(len(images), "PNG files", unit="file") as bar:
            for lo in range(0, len(images), chunk):
                files += save_pngs(images[lo : lo + chunk], str(tmp), start=lo)
                bar.update(len(images[lo : lo + chunk]))
        table = _labels_table(conditions)
        if table is not None:
            header, rows = table
            with open(tmp / "labels.csv", "w") as f:
                f.write(",".join(["file", *header]) + "\n")
                f.writelines(",".join([file, *row]) + "\n" for file, row in zip(files, rows))
        if os.path.isdir(folder):
            _check_png_dir(folder)  # again, just before an earlier export is replaced


def _write_grid(path: str, write) -> None:
    """``write(tmp)`` to a temporary file with the same suffix, which then replaces ``path``."""
    _make_parent(path, "--grid")
    with atomic_path(path) as tmp:
        write(str(tmp))


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
    parser.add_argument("--quiet", type=bool, nargs="?", const=True, default=False,
                        help="No progress bars (they are drawn only when stderr is a terminal anyway).")
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


def _draw_with_progress(model: GAN, args, conditions: Optional[torch.Tensor], ema: bool) -> torch.Tensor:
    """``draw`` of samples ``0 .. --num - 1``, one ``--batch_size`` at a time under a progress bar; the same
    samples as one ``draw`` call (each sample's noise depends only on its index and the seed)."""
    out = []
    with progress(args.num, "samples") as bar:
        for lo in range(0, args.num, args.batch_size):
            n = min(args.batch_size, args.num - lo)
            c = conditions[lo : lo + n] if conditions is not None else None
            out.append(draw(model, n, seed=args.seed, labels=c, batch_size=args.batch_size, start=lo, ema=ema,
                            truncation=args.truncation))
            bar.update(n)
    return torch.cat(out)


def _draw_from_with_progress(model: GAN, z: torch.Tensor, conditions: Optional[torch.Tensor], batch_size: int,
                             ema: bool) -> torch.Tensor:
    """``draw_from`` one ``batch_size`` at a time under a progress bar."""
    out = []
    with progress(len(z), "interpolated samples") as bar:
        for lo in range(0, len(z), batch_size):
            c = conditions[lo : lo + batch_size] if conditions is not None else None
            out.append(draw_from(model, z[lo : lo + batch_size], c, batch_size, ema))
            bar.update(len(out[-1]))
    return torch.cat(out)


def sample_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning sample``: samples of a checkpoint into an .npz, a folder of PNGs and/or a grid;
    optionally truncated (``--truncation``) or along interpolation paths (``--interpolate``)."""
    args = sample_parser().parse_args(list(argv))
    with quiet_if(args.quiet):
        return _sample(args)


def _sample(args) -> int:
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
        samples = _draw_from_with_progress(model, z, conditions, args.batch_size, ema)
        extra = {"t": t.numpy(), "z": z.numpy()}
    else:
        samples = _draw_with_progress(model, args, conditions, ema)
    refined = getattr(model, "refinement", None) is not None
    if refined:  # every drawn sample went through model.refinement (draw, draw_from and the grid alike)
        extra["refined"] = np.array(True)
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
            _write_grid(args.grid, lambda path: save_scatter(samples, path))
        else:
            if args.interpolate:
                grid, nrow = samples[: args.grid_rows * args.interpolate], args.interpolate
            else:
                draw_fn = lambda n, c: draw(model, n, seed=args.seed, labels=c, batch_size=args.batch_size,  # noqa: E731
                                            ema=ema, truncation=args.truncation)
                grid, nrow = _grid_images(model, args, draw_fn, images, real)
            _write_grid(args.grid, lambda path: save_grid(grid, path, nrow=nrow))
        written.append(args.grid)
    what = f"{args.num} rows of {args.interpolate} interpolated samples" if args.interpolate else f"{args.num} samples"
    if refined:
        what += f" refined by {model.refinement!r}"
    print(f"wrote {what} to {' and '.join(written)}")
    return 0


