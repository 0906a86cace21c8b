"""Weights & Biases without an account or a network: offline runs with sample grids and the config.

Each test fits a tiny DCGAN on the embedded MNIST subset for a few steps through ``gan_lightning.commands.main``
(what ``python -m gan_lightning`` calls) with a SampleGrid every 2 generator steps. The environment is
scrubbed so that no API key can be found (``WANDB_API_KEY`` unset, ``HOME`` and ``NETRC`` in the test's
temporary folder) and every W&B folder points into that temporary folder, so nothing is written to the real home.

An offline run keeps what ``wandb sync`` will upload in its transaction log ``offline-run-*/run-<id>.wandb``
(recent wandb versions write ``files/config.yaml`` only on sync): ``run_log`` reads that log — LevelDB-log
framing, one ``wandb_internal_pb2.Record`` protobuf per record — so the tests check the config and the image
history exactly as W&B will receive them.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gan_lightning.commands import main
from gan_lightning.runtime.loggers import wandb_has_key

REPO = Path(__file__).resolve().parents[1]

# A second --config on top of the experiment: CPU, no progress bar, a grid of 2 rows of 4 every 2 steps.
EXTRA = {
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [{"class_path": "gan_lightning.metrics.SampleGrid",
                       "init_args": {"every_n_steps": 2, "per_row": 4, "rows": 2}}],
    },
}
TINY = ["--model.generator.init_args.ngf=8", "--model.discriminator.init_args.ndf=8",
        "--model.generator.init_args.latent_dim=8", "--data.init_args.batch_size=16"]


@pytest.fixture
def no_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No W&B key anywhere, every W&B folder under ``tmp_path``; any run left open is finished afterwards."""
    wandb = pytest.importorskip("wandb")
    home = tmp_path / "home"
    home.mkdir()
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DISABLED", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT",
                "WANDB_ENTITY", "WANDB_BASE_URL", "GAN_LIGHTNING_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for var, sub in (("WANDB_DIR", "wandb-dir"), ("WANDB_CACHE_DIR", "wandb-cache"),
                     ("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_DATA_DIR", "wandb-data"),
                     ("WANDB_ARTIFACT_DIR", "wandb-artifacts")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "gl-cache"))
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(EXTRA))
    yield extra
    wandb.finish()


def fit(extra: Path, run_dir: Path, mode: str) -> None:
    import wandb

    rc = main(["fit", "--config", str(REPO / "experiments" / "gan_mnist5k.yaml"), "--config", str(extra),
               "--trainer.max_steps=4", f"--wandb={mode}", "--run_dir", str(run_dir), *TINY])
    assert rc == 0
    wandb.finish()  # Lightning leaves the run open; finishing it writes the offline run's files.


def _chunks(path: Path) -> Iterator[bytes]:
    """The records of a W&B transaction log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
    records framed as (crc32: 4, length: 2, type: 1) + payload; types 1 full, 2 first, 3 middle, 4 last."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, pos, parts = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is zero padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if (kind == 0 and length == 0) or pos + 7 + length > len(data):  # end, or a record still being written
            break
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield payload
        elif kind == 2:
            parts = payload
        elif kind == 3:
            parts += payload
        elif kind == 4:
            yield parts + payload


def run_log(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The config (all updates merged) and the history rows of an offline run, from its transaction log."""
    from wandb.proto import wandb_internal_pb2 as pb

    logs = list(run.glob("run-*.wandb"))
    assert len(logs) == 1, logs
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for chunk in _chunks(logs[0]):
        record = pb.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return config, history


def grid_rows(run: Path, count: int, timeout: float = 20.0) -> tuple[dict[str, Any], dict[int, list[str]]]:
    """The config and ``{generator step: logged grid files}``, once ``count`` grids are in the log.

    ``wandb.finish()`` can return before wandb-core has flushed the last history rows to the offline log, so
    this reads it again for a few seconds rather than racing it."""
    deadline = time.monotonic() + timeout
    while True:
        config, history = run_log(run)
        grids = {row["trainer/global_step"]: row["samples/filenames"] for row in history if "samples/filenames" in row}
        if len(grids) >= count or time.monotonic() > deadline:
            return config, grids
        time.sleep(0.2)


def offline_run(run_dir: Path) -> Path:
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline run under {run_dir / 'wandb'}, found {runs}"
    assert not list((run_dir / "wandb").glob("run-*")), "an online run was started"
    return runs[0]


@pytest.mark.slow
def test_offline_run_holds_the_sample_grids_and_the_full_config(no_account, tmp_path):
    run_dir = tmp_path / "run"
    fit(no_account, run_dir, "offline")

    # Local grids at steps 2 and 4 (the end of training at step 4 does not write a second one).
    local = sorted(p.name for p in (run_dir / "samples").glob("*.png"))
    assert local == ["step_000002.png", "step_000004.png"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "config.yaml").is_file()

    files = offline_run(run_dir) / "files"
    logged = sorted((files / "media" / "images").glob("*.png"))
    assert len(logged) >= len(local), f"sample grids logged to W&B: {logged}"
    assert all(p.name.startswith("samples_") and p.stat().st_size > 100 for p in logged)

    # Each grid is in the run's history at its generator step, pointing at one of those PNGs.
    config, grids = grid_rows(files.parent, 2)
    assert sorted(grids) == [2, 4], grids
    assert sorted(name for names in grids.values() for name in names) == sorted(f"media/images/{p.name}" for p in logged)

    # W&B holds the whole resolved config: model, data, trainer (callbacks included), not only hyperparameters.
    if (files / "config.yaml").is_file():  # written by wandb versions that keep it for offline runs
        on_disk = yaml.safe_load((files / "config.yaml").read_text())
        assert on_disk["model"]["value"] == config["model"]
    model, data, trainer = config["model"], config["data"], config["trainer"]
    assert model["loss"] == "non_saturating"
    assert model["generator"]["class_path"] == "gan_lightning.nets.DCGANGenerator"
    assert model["generator"]["init_args"]["ngf"] == 8 and model["discriminator"]["init_args"]["ndf"] == 8
    assert model["ema_decay"] == 0.999
    assert data["class_path"] == "gan_lightning.data.EmbeddedMNIST"
    assert data["init_args"]["batch_size"] == 16 and data["init_args"]["labels"] == "none"
    assert trainer["max_steps"] == 4
    assert any(cb["class_path"] == "gan_lightning.metrics.SampleGrid" for cb in trainer["callbacks"])
    assert config["seed_everything"] == 0 and config["wandb"] == "offline"
    assert config["run_dir"] == str(run_dir) and config["experiment"] == "gan_mnist5k"
    # The local resolved config says the same.
    local_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert local_config["model"] == model and local_config["data"] == data

    # Nothing went to the (fake) home folder.
    assert not list((tmp_path / "home").iterdir())


@pytest.mark.slow
def test_auto_without_a_key_goes_offline(no_account, tmp_path):
    assert wandb_has_key() is False
    run_dir = tmp_path / "auto"
    fit(no_account, run_dir, "auto")
    run = offline_run(run_dir)
    assert len(list((run / "files" / "media" / "images").glob("*.png"))) >= 2
    config, grids = grid_rows(run, 2)
    assert sorted(grids) == [2, 4]
    assert config["wandb"] == "auto" and config["data"]["class_path"] == "gan_lightning.data.EmbeddedMNIST"
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == ["step_000002.png", "step_000004.png"]
    assert not list((tmp_path / "home").iterdir())


def test_wandb_has_key_looks_at_the_environment_and_netrc(no_account, tmp_path, monkeypatch):
    assert wandb_has_key() is False
    netrc = tmp_path / "home" / ".netrc"
    netrc.write_text("machine example.com\n  login x\n  password y\n")
    assert wandb_has_key() is False
    netrc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    assert wandb_has_key() is True
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    assert wandb_has_key() is True


def test_bad_wandb_mode_is_a_one_line_error(no_account, tmp_path, capsys):
    rc = main(["fit", "--config", str(REPO / "experiments" / "gan_mnist5k.yaml"), "--config", str(no_account),
               "--trainer.max_steps=1", "--wandb=sometimes", "--run_dir", str(tmp_path / "bad"), *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "--wandb" in err, err
    assert not (tmp_path / "bad" / "wandb").exists()


def test_checkpoint_monitor_keeps_the_best_fid(tmp_path, monkeypatch, classifier_cache):
    """``--checkpoint.monitor=val/fid_mnist --checkpoint.mode=min --checkpoint.save_top_k=1``: the metric callback's
    values reach Lightning's callbacks, so the kept checkpoint is the one of the step with the lowest FID, next
    to last.ckpt."""
    import csv
    import re

    import torch

    from gan_lightning.commands import main

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    rc = main(["fit", "--config", str(REPO / "experiments" / "gan_mnist5k.yaml"), "--wandb=disabled", f"--run_dir={run}",
               "--trainer.max_steps=8", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=2",
               "--model.generator.init_args.ngf=4", "--model.discriminator.init_args.ndf=4",
               "--trainer.callbacks=[{class_path: gan_lightning.metrics.ImageMetrics, init_args: "
               "{every_n_steps: 2, num_samples: 64, num_reference: 64, metrics: [fid]}}]",
               "--checkpoint.monitor=val/fid_mnist", "--checkpoint.mode=min", "--checkpoint.save_top_k=1",
               "--checkpoint.every_n_train_steps=2"])
    assert rc == 0
    with open(run / "metrics.csv") as f:
        fids = {int(r["step"]): float(r["val/fid_mnist"]) for r in csv.DictReader(f) if r.get("val/fid_mnist")}
    assert sorted(fids) == [2, 4, 6, 8]
    best_step = min(fids, key=fids.get)
    kept = [p for p in (run / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    assert len(kept) == 1 and int(re.search(r"step=(\d+)", kept[0].name).group(1)) == best_step
    assert torch.load(kept[0], weights_only=True)["global_step"] == best_step
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
