"""``python -m gan_lightning export``: a checkpoint's generator alone, in the folder layout of the Hugging Face
Hub's PyTorch models, for someone who has no Lightning run, optimizer or discriminator:

- ``model.safetensors``: the generator's weights and buffers (the EMA generator's when the model has one);
- ``config.json``: its class path and arguments, conditioning method included, and the latent prior;
- ``README.md``: a model card: what the generator is, how to load it, the training config and the final metrics
  of the run (its ``metrics.json``, when there is one).

``gan_lightning.nets.Generator.from_pretrained(DIR)`` rebuilds it and ``generator.sample(n, seed=S)`` draws what
``python -m gan_lightning sample --ckpt_path CKPT --seed S`` draws (unrefined: refinement needs the
discriminator); ``generator.push_to_hub("user/name")`` uploads it. The folder is written beside its target and
takes its place only once complete (``gan_lightning.runtime.files.replace_folder``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from jsonargparse import ArgumentParser

from gan_lightning.commands.checkpoints import load_gan, read_checkpoint
from gan_lightning.errors import UserError
from gan_lightning.nets.base import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME, default_model_card
from gan_lightning.runtime.files import replace_folder
from gan_lightning.training.system import GAN

EXPORT_FILES = (CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME)


def check_out_folder(out: str) -> None:
    """``--out`` must be a new folder, an empty one or an earlier export (only the files export writes), so that
    replacing it loses nothing else; its parent must be a folder this process can write."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out: {out!r} is a file; give a folder (it is created if missing)")
    if os.path.isdir(out):
        other = sorted(n for n in os.listdir(out) if n not in EXPORT_FILES)
        if other:
            raise UserError(f"--out: {out!r} holds files export did not write (e.g. {other[0]!r}); give a new or empty "
                            "folder")
    nearest = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(nearest):
        nearest = os.path.dirname(nearest)
    if not os.path.isdir(nearest) or not os.access(nearest, os.W_OK | os.X_OK):
        raise UserError(f"--out: cannot create {out!r} inside {nearest!r}; choose another folder")


def run_dir_of(ckpt_path: str) -> Path:
    """The run directory of a checkpoint: ``<run>/checkpoints/last.ckpt`` -> ``<run>``; otherwise its folder."""
    folder = Path(ckpt_path).resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def final_metrics(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's ``metrics.json`` (written by the metric callbacks), or None when there is none or it is not JSON."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, sort_keys=True) + "`"
    return str(v)


def model_card(model: GAN, ema: bool, ckpt: dict[str, Any], ckpt_path: str) -> str:
    """The README.md of an export: the generator's card (``default_model_card``) with where it came from, the
    training config and the final metrics."""
    generator = model.sampling_generator if ema else model.generator
    which = (f"the EMA generator (decay {model.ema_decay:g})" if ema and model.generator_ema is not None
             else "the trained generator")
    lines = ["## Training", "",
             f"Exported by `python -m gan_lightning export` from `{Path(ckpt_path).name}` (generator step "
             f"{ckpt.get('global_step', '?')}): {which}. Sample `i` of seed `S` (`generator.sample(n, seed=S)`) is "
             f"sample `i` of `python -m gan_lightning sample --seed S` on that checkpoint."]
    if model.refinement is not None:
        lines += ["", f"The model refines its samples with its discriminator ({model.refinement!r}); this folder "
                      "holds the generator alone, so its samples are the unrefined ones."]
    provenance = ckpt.get("provenance") or {}
    config = provenance.get("config")
    if not config:
        hparams = dict(ckpt.get("hyper_parameters") or {})
        config = yaml.safe_dump({"model": hparams}, sort_keys=False) if hparams else None
    if config:
        lines += ["", "### Config", "", "```yaml", config.rstrip(), "```"]
    versions = {k: provenance[k] for k in ("version", "revision", "torch") if provenance.get(k)}
    if versions:
        lines += ["", "gan_lightning " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    metrics = final_metrics(run_dir_of(ckpt_path))
    if metrics:
        lines += ["", "### Final metrics", "", "From the run's `metrics.json`.", "", "| metric | value |",
                  "| --- | --- |"]
        lines += [f"| {k} | {_value(v)} |" for k, v in metrics.items()]
    return default_model_card(generator, "\n".join(lines))


def export_generator(ckpt_path: str, out: str, ema: str = "auto", trust: bool = False) -> Path:
    """Writes the generator of the checkpoint ``ckpt_path`` (the EMA generator with ``ema="auto"`` when there is
    one, the trained one with ``"live"``) to the folder ``out``; returns the folder."""
    if ema not in ("auto", "live"):
        raise UserError(f"--ema: must be 'auto' or 'live', got {ema!r}")
    check_out_folder(out)
    ckpt = read_checkpoint(ckpt_path, trust)
    model = load_gan(ckpt_path, "cpu", trust)
    generator = model.sampling_generator if ema == "auto" else model.generator
    card = model_card(model, ema == "auto", ckpt, ckpt_path)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with replace_folder(out) as tmp:
        generator.save_pretrained(tmp, model_card=card)
        check_out_folder(out)  # again, just before an earlier export is replaced
    return Path(out)


def export_parser() -> ArgumentParser:
    """The options of ``python -m gan_lightning export``."""
    parser = ArgumentParser(prog="python -m gan_lightning export",
                            description="Write a checkpoint's generator alone to a folder that "
                                        "gan_lightning.nets.Generator.from_pretrained and the Hugging Face Hub read.")
    parser.add_argument("--ckpt_path", type=str, required=True, help="Checkpoint written by fit (or from Python).")
    parser.add_argument("--out", type=str, required=True,
                        help="Folder to write (new, empty, or an earlier export, which is replaced): config.json, "
                             "model.safetensors, README.md.")
    parser.add_argument("--ema", type=str, default="auto", help="auto: the EMA generator when there is one | live.")
    parser.add_argument("--trust_checkpoint", type=bool, default=False,
                        help="Unpickle everything in the checkpoint (only for files from a trusted source).")
    return parser


def export_main(argv: Sequence[str]) -> int:
    """``python -m gan_lightning export --ckpt_path CKPT --out DIR``."""
    args = export_parser().parse_args(list(argv))
    folder = export_generator(args.ckpt_path, args.out, args.ema, args.trust_checkpoint)
    print(f"wrote the generator to {folder}/ ({', '.join(EXPORT_FILES)}); load it with "
          f"gan_lightning.nets.Generator.from_pretrained({str(folder)!r})")
    return 0
