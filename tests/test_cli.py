"""The command line: the command table, one-line errors, the n_critic link, a quiet console, and what a run logs
(``<run_dir>/metrics.csv``, the W&B run's config and tags).

Runs go through the real command line (``python -m gan_lightning`` in a subprocess, on the toy ring for a few
steps) where the whole console matters; the error cases run in-process through ``gan_lightning.commands.main`` (what
``python -m gan_lightning`` calls), which prints the same line. W&B runs offline with no key anywhere and every
W&B folder under the test's temporary folder; the offline run is read back with W&B's own reader
(``wandb leet inspect --summary --json``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from gan_lightning.commands import COMMANDS, main
from gan_lightning.commands import fit as cli
from gan_lightning.commands.parsing import one_line, user_error_in_chain
from gan_lightning.runtime.console import quiet_console
from gan_lightning.runtime.loggers import MetricsCSV
from scrubbed_env import scrubbed_env

REPO = Path(__file__).resolve().parents[1]
TOY = str(REPO / "experiments" / "toy_ring.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
WANDB = Path(sys.executable).with_name("wandb")


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gan_lightning", *args], cwd=tmp_path, env=scrubbed_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- the command table

EXPECTED_COMMANDS = ["fit", "sample", "evaluate", "classifier", "sweep", "export", "report"]


@pytest.mark.slow
def test_help_lists_every_command_with_its_description(tmp_path):
    out = run_cli(tmp_path, "--help")
    assert out.returncode == 0 and out.stderr == "" and "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    table = [line.split(None, 1) for line in lines[lines.index("commands:") + 1:] if line.startswith("  ")]
    assert [name for name, _ in table] == EXPECTED_COMMANDS == list(COMMANDS)
    assert all(len(description) > 20 for _, description in table)
    assert dict(table)["fit"].startswith("train a GAN (LightningCLI)")


@pytest.mark.parametrize("args", [[], ["validate"], ["predict"], ["--config"], ["fitt"]])
def test_no_command_or_an_unknown_one(args, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    if not args:  # the table, on stderr
        assert captured.out == "" and all(f"  {name} " in captured.err for name in COMMANDS)
    else:
        assert captured.err.splitlines() == [
            f"error: unknown command {args[0]!r}; choose one of fit, sample, evaluate, classifier, sweep, export, report"
        ]


def test_every_command_resolves_to_a_function():
    for name, command in COMMANDS.items():
        module, function = command.target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_fit_help_lists_the_options_and_only_fit_exists(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m gan_lightning") and "--model.n_critic" in out and "--run_dir" in out
    assert cli.GANCLI.subcommands().keys() == {"fit"}


# ----------------------------------------------------------------------------- one-line errors


def broken_yaml(tmp_path: Path) -> str:
    path = tmp_path / "broken.yaml"
    path.write_text("model: [\n")
    return str(path)


ERRORS = [
    (["--data.batch_size=0"], "error: data.batch_size: must be >= 1, got 0"),
    (["--data.init_args.batch_size=x"], "error: data.batch_size: expected int (got x)"),
    (["--model.n_critic=x"], "error: model.n_critic: expected int (got x)"),
    (["--model.ema_decay=2"], "error: model.ema_decay: must be in [0.0, 1.0) (0 = no EMA), got 2.0"),
    (["--nonexistent=1"],
     "error: unrecognized arguments: --nonexistent=1; python -m gan_lightning fit --help lists the options"),
    (["--data.init_args.draws_per_step=2"],
     "error: data.draws_per_step: follows model.n_critic (one batch per D step); set --model.n_critic"),
    (["--model.n_critic=0"],
     "error: data.draws_per_step: must be an integer >= 1 (the CLI sets it from model.n_critic), got 0"),
    (["--trainer.devices=x"], "error: trainer: `devices` selected with `CPUAccelerator` should be an int > 0."),
]


@pytest.mark.parametrize("extra, message", ERRORS, ids=[e[0][0] for e in ERRORS])
def test_user_mistakes_are_one_line(extra, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["fit", "--config", TOY, "--wandb=disabled", f"--run_dir={tmp_path / 'run'}", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.splitlines() == [message]
    assert not (tmp_path / "run").exists()


def test_config_files_missing_or_not_yaml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "nope.yaml")
    assert main(["fit", "--config", TOY, "--config", missing]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: --config: no file at {missing!r}"]
    broken = broken_yaml(tmp_path)
    assert main(["fit", f"--config={broken}"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --config: {broken!r} is not valid YAML: expected the node content, but found '<stream end>' at "
        "line 2, column 1"]


def test_checkpoint_and_run_directory_mistakes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    base = ["fit", "--config", TOY, "--wandb=disabled"]
    cases = [
        ([f"--ckpt_path={tmp_path / 'no.ckpt'}"],
         f"error: --ckpt_path: no checkpoint at {str(tmp_path / 'no.ckpt')!r}; fit writes <run_dir>/checkpoints/last.ckpt"),
        ([f"--ckpt_path={tmp_path / 'text.ckpt'}"],
         f"error: --ckpt_path: {str(tmp_path / 'text.ckpt')!r} is not a checkpoint written by fit (torch.load with "
         "weights_only=True failed: UnpicklingError)"),
        ([f"--run_dir={tmp_path / 'a_file' / 'run'}"],
         f"error: --run_dir: cannot create {str(tmp_path / 'a_file' / 'run')!r}: {str(tmp_path / 'a_file')!r} is a "
         "file, not a folder; choose another --run_dir"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        assert capsys.readouterr().err.splitlines() == [message]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "text.ckpt"]  # no run directory was made


def test_a_gpu_where_there_is_none_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    rc = main(["fit", "--config", TOY, "--wandb=disabled", f"--run_dir={tmp_path / 'run'}", "--trainer.accelerator=gpu"])
    assert rc == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: trainer.accelerator: 'gpu' but this machine has no usable GPU (torch.cuda.is_available() is False); "
        "use --trainer.accelerator=cpu or auto"]


class BrokenData(cli.GANDataModule):
    """A data module with a bug: its error is not the user's and keeps its traceback."""

    def __init__(self, batch_size: int = 8, draws_per_step: int = 1) -> None:
        raise RuntimeError("a bug in a data module")


def test_a_bug_while_building_the_classes_keeps_its_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception) as raised:
        main(["fit", "--config", TOY, "--wandb=disabled", f"--run_dir={tmp_path / 'run'}", f"--data={__name__}.BrokenData"])
    assert user_error_in_chain(raised.value) is None
    chain, e = [], raised.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(e, RuntimeError) and str(e) == "a bug in a data module" for e in chain)


def test_one_line_condenses_jsonargparse_union_errors():
    message = (
        'Parser key "model.loss":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [typing.Literal['hinge', 'wasserstein'], <class 'gan_lightning.objectives.GANLoss'>]\n  Errors:\n"
        "    - Expected a typing.Literal['hinge', 'wasserstein']\n    - Expected a dot import path string: foo\n"
        "  Given value type: <class 'str'>\n  Given value: foo"
    )
    assert one_line(message) == "model.loss: expected one of ['hinge', 'wasserstein'] or dot import path string (got foo)"


@pytest.mark.slow
def test_a_mistake_on_the_real_command_line_prints_one_line_and_no_traceback(tmp_path):
    out = run_cli(tmp_path, "fit", "--config", TOY, "--wandb=disabled", "--data.batch_size=0")
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: data.batch_size: must be >= 1, got 0"] and out.stdout == ""
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- the n_critic link, run folders


def test_n_critic_sets_the_data_modules_draws_per_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = cli.GANCLI(args=["--config", TOY, "--wandb=disabled", f"--run_dir={tmp_path / 'run'}", "--model.n_critic=3",
                            "--data.init_args.num_samples=1000"], run=False)
    assert made.model.n_critic == 3 and made.datamodule.draws_per_step == 3
    x, _ = next(iter(made.datamodule.train_dataloader()))
    assert x.shape == (3 * 100, 2)  # batch_size 100 per D step, three D steps


def test_default_root_dir_is_the_parent_of_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GAN_LIGHTNING_RUN_ID", "job7")
    made = cli.GANCLI(args=["--config", TOY, "--wandb=disabled", f"--trainer.default_root_dir={tmp_path / 'mine'}",
                            "--seed_everything=4"], run=False)
    expected = str(tmp_path / "mine" / "toy_ring" / "job7-seed4")
    assert made.config.run_dir == expected and made.trainer.default_root_dir == expected


# ----------------------------------------------------------------------------- quiet console


def test_quiet_console_drops_only_the_named_messages():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_console()
        warnings.warn("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no "
                      "pre-optimization state was saved. Example: ...", UserWarning)
        warnings.warn("Using ModelCheckpoint with a monitor that is never logged", UserWarning)
    assert [str(w.message) for w in caught] == ["Using ModelCheckpoint with a monitor that is never logged"]

    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    record = lambda msg: logging.LogRecord(tips.name, logging.INFO, __file__, 1, msg, None, None)  # noqa: E731
    assert not tips.filter(record("💡 Tip: For seamless cloud logging, try installing litlogger"))
    assert tips.filter(record("GPU available: False, used: False"))


# ----------------------------------------------------------------------------- what a run logs


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_metrics_csv_format_and_continuation(tmp_path):
    log = MetricsCSV(str(tmp_path))
    log.log_metrics({"train/g_loss": torch.tensor(0.5), "epoch": 0}, step=1)
    log.log_metrics({"train/g_loss": 0.25, "epoch": 0}, step=3)
    log.log_metrics({"val/fid_mnist": 7.0}, step=4)  # a new key rewrites the header
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["epoch", "step", "train/g_loss", "val/fid_mnist"]
    assert [(r["step"], r["train/g_loss"], r["val/fid_mnist"]) for r in rows] == [("1", "0.5", ""), ("3", "0.25", ""),
                                                                             ("4", "", "7.0")]
    # The run continues in the same folder from step 3: rows below it stay, the rest is logged again.
    again = MetricsCSV(str(tmp_path))
    again.log_metrics({"train/g_loss": 0.125, "epoch": 0}, step=3)
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["epoch", "step", "train/g_loss", "val/fid_mnist"]
    assert [(r["step"], r["train/g_loss"]) for r in rows] == [("1", "0.5"), ("3", "0.125")]


@pytest.mark.slow
def test_a_run_without_wandb_keeps_metrics_csv_and_draws_n_critic_batches(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(tmp_path, "fit", "--config", TOY, "--wandb=disabled", f"--run_dir={run_dir}", *QUIET,
                  "--trainer.max_steps=3", "--trainer.log_every_n_steps=1", "--model.n_critic=2")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert not (run_dir / "wandb").exists() and not (tmp_path / "wandb-dir").exists()
    header, rows = read_csv(run_dir / "metrics.csv")
    assert header == sorted(header) and {"step", "train/d_loss", "train/g_loss", "progress/kimg"} <= set(header)
    train = [r for r in rows if r["train/g_loss"]]
    assert len(train) == 3
    # 2 D steps x 100 real points per generator step: the data module drew n_critic batches each step.
    assert [round(float(r["progress/kimg"]) * 1000) for r in train] == [200, 400, 600]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()


NOISE = ["Using ModelCheckpoint with manual optimization", "def training_step", "anonymous setting", "💡", "litlogger",
         "litmodels", "Seed set to", "Traceback"]


@pytest.mark.slow
def test_an_offline_run_is_quiet_and_gives_wandb_the_config_once(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(tmp_path, "fit", "--config", TOY, "--wandb=offline", f"--run_dir={run_dir}", "--seed_everything=3",
                  "--trainer.max_steps=4", "--trainer.log_every_n_steps=2", "--checkpoint.every_n_train_steps=2",
                  GAN_LIGHTNING_SWEEP="lr-grid")
    assert out.returncode == 0, out.stderr
    console = out.stdout + out.stderr
    assert [n for n in NOISE if n in console] == []
    assert console.count("run directory:") == 1 and f"run directory: {run_dir}\n" in out.stdout
    # CSV beside W&B.
    header, rows = read_csv(run_dir / "metrics.csv")
    assert {"step", "train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"} <= set(header)
    assert len([r for r in rows if r["train/d_loss"]]) == 2

    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    read = subprocess.run([str(WANDB), "leet", "inspect", "--summary", "--json", str(runs[0])], capture_output=True,
                          text=True, timeout=120, env=scrubbed_env(tmp_path))
    assert read.returncode == 0, read.stderr
    summary = json.loads(read.stdout)
    assert summary["state"] == "finished" and summary["tags"] == ["seed:3", "sweep:lr-grid"]
    assert summary["project"] == "gan_lightning" and summary["name"] == "run"
    config = summary["config"]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    # Exactly the resolved config, nested as the YAML is: no flattened module hyperparameters beside it.
    assert set(config) == set(resolved)
    for key in ("model", "data", "trainer", "seed_everything", "experiment", "run_dir"):
        assert config[key] == resolved[key], key
    assert config["model"]["n_critic"] == 1 and config["model"]["generator"]["class_path"] == "gan_lightning.nets.MLPGenerator"
    last = [r for r in rows if r["train/g_loss"]][-1]
    assert summary["summary"]["train/g_loss"] == pytest.approx(float(last["train/g_loss"]))


@pytest.mark.slow
def test_secrets_never_reach_a_saved_or_logged_config(tmp_path):
    """A config value under a key that names a secret (api_key) is redacted in config.yaml, in the checkpoint's
    provenance and in the W&B run's config; the rest of the config is kept."""
    run_dir = tmp_path / "run"
    out = run_cli(tmp_path, "fit", "--config", TOY, "--wandb=offline", f"--run_dir={run_dir}", "--trainer.max_steps=2",
                  "--trainer.callbacks+=user_extensions.Notifier", "--trainer.callbacks.init_args.api_key=SECRET-123",
                  PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{REPO}")
    assert out.returncode == 0, out.stderr
    saved = (run_dir / "config.yaml").read_text()
    assert "SECRET-123" not in saved and "api_key: <redacted>" in saved and "channel: gans" in saved
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert "SECRET-123" not in ckpt["provenance"]["config"] and "SECRET-123" not in repr(ckpt["hyper_parameters"])
    (wandb_run,) = list((run_dir / "wandb").glob("offline-run-*"))
    read = subprocess.run([str(WANDB), "leet", "inspect", "--summary", "--json", str(wandb_run)], capture_output=True,
                          text=True, timeout=120, env=scrubbed_env(tmp_path))
    assert read.returncode == 0, read.stderr
    assert "SECRET-123" not in read.stdout and "<redacted>" in read.stdout
