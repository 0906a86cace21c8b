"""``python -m gan_lightning evaluate``: metrics (FID, KID, accuracy, ...) of a checkpoint or of an .npz of
samples written by ``sample``, as JSON; the sampling can be split over several processes (``--devices``).

The JSON names what the numbers are: ``extractor`` (the feature network and its weights' digest), ``features``
(its protocol: layer, resizing), ``num_samples`` and ``num_reference`` (the counts actually used: the reference
set is capped by the data's size), and metric keys that carry the feature space (``fid_mnist`` for the MNIST
classifier, ``fid`` only for Inception-v3; ``gan_lightning.metrics.image.metric_key``). A checkpoint with
``model.refinement`` is measured on the generator's own samples (plain keys) and on the refined ones
(``fid_mnist_refined``, ...); a samples file says itself whether ``sample`` refined it. Progress bars on stderr
when it is a terminal (``--quiet``: none)."""

from __future__ import annotations

import functools
import json
import os
from typing import Optional, Sequence

import numpy as np
import torch
from jsonargparse import ArgumentParser

from gan_lightning.commands.checkpoints import data_from_checkpoint, load_gan
from gan_lightning.data.base import GANDataModule
from gan_lightning.errors import DataNotFound, UserError
from gan_lightning.metrics.features import DomainFeatures, FeatureExtractor
from gan_lightning.metrics.image import (FeatureSet, check_metrics, data_key, extract, generated_features,
                                         named_metrics, real_uint8, reference_features)
from gan_lightning.runtime.console import quiet_if, set_quiet
from gan_lightning.runtime.files import atomic_write


def _evaluate_worker(args, datamodule, extractor, out: dict) -> dict:
    device = args.device_for_rank
    extractor.prepare(device)
    key = {"dataset": data_key(datamodule), "split": "train", "extractor": extractor.name,
           "count": args.num_reference, "seed": args.reference_seed}
    ref, cached = reference_features(lambda: real_uint8(datamodule, args.num_reference, args.reference_seed),
                                     extractor, key, args.cache_dir, progress_desc="reference features")
    out["num_reference"] = len(ref.features)
    tag = extractor.tag
    if args.samples:
        with np.load(args.samples) as f:
            if "samples" not in f:
                raise UserError(f"--samples: {args.samples!r} has no 'samples' array (write it with `sample`)")
            images = torch.from_numpy(f["samples"])
            labels = torch.from_numpy(f["labels"]).long() if "labels" in f else None
            refined = bool(f["refined"]) if "refined" in f else False
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise UserError(f"--samples: expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        feats, logits = extract(extractor, images, args.batch_size, progress_desc="features of the samples")
        gen = FeatureSet(feats, logits, labels)
        names = args.metrics or (["fid", "kid", "accuracy", "intra_fid"] if labels is not None else ["fid", "kid"])
        out.update(num_samples=len(feats), refined=refined)
        out.update(named_metrics(names, gen, ref, tag, refined=refined, progress_desc="metrics"))
        return out
    model = load_gan(args.ckpt_path, device, args.trust_checkpoint)
    names = args.metrics or (["fid", "kid", "accuracy", "intra_fid"] if model.conditioning.class_count > 0
                             else ["fid", "kid", "class_histogram"])
    refinement = getattr(model, "refinement", None)
    out.update(num_samples=args.num, refinement=None if refinement is None else repr(refinement))
    for refined in (False, True) if refinement is not None else (False,):
        what = "refined samples" if refined else "samples"
        gen = generated_features(model, extractor, args.num, args.seed, args.batch_size, refine=refined,
                                 progress_desc=what)
        out.update(named_metrics(names, gen, ref, tag, refined=refined, progress_desc=f"metrics of the {what}"))
    return out


def _evaluate_rank(args, datamodule, extractor, base: dict, fabric) -> dict:
    set_quiet(args.quiet)  # a spawned process starts with the default
    args.device_for_rank = fabric.device
    return _evaluate_worker(args, datamodule, extractor, dict(base))


def evaluate_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning evaluate``: metrics of a checkpoint or a samples file, as JSON."""
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
    parser.add_argument("--quiet", type=bool, nargs="?", const=True, default=False,
                        help="No progress bars (they are drawn only when stderr is a terminal anyway).")
    args = parser.parse_args(list(argv))
    with quiet_if(args.quiet):
        return _evaluate(args, parser)


def _evaluate(args, parser: ArgumentParser) -> int:
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
    # num_samples and num_reference are filled in with the counts actually used.
    base = {"source": args.ckpt_path or args.samples, "extractor": extractor.name, "features": extractor.description,
            "seed": args.seed, "reference_seed": args.reference_seed, "devices": args.devices}
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
        with atomic_write(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0
