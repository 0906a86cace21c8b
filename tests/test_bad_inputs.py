"""A table of user mistakes through the real command line: each gets exit code 2 and one line
``error: <field or file>: <what is wrong and the fix>`` on stderr, never a traceback.

The commands run in-process through ``gan_lightning.commands.main`` (what ``python -m gan_lightning`` calls); two
go through a real subprocess to check what a shell sees.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gan_lightning.commands import main

REPO = Path(__file__).resolve().parents[1]
QUIET = "--wandb=disabled --trainer.max_steps=1 --trainer.callbacks=null --trainer.enable_progress_bar=false"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Two tiny checkpoints (a toy model, an AC-GAN on the embedded MNIST subset) and assorted bad files."""
    root = tmp_path_factory.mktemp("bad_inputs")
    toy, acgan = root / "toy", root / "acgan"
    assert main(["fit", "--config", str(REPO / "experiments" / "toy_ring.yaml"), f"--run_dir={toy}", *QUIET.split(),
                 "--trainer.max_steps=2"]) == 0
    assert main(["fit", "--config", str(REPO / "experiments" / "acgan_mnist5k.yaml"), f"--run_dir={acgan}",
                 *QUIET.split(), "--model.generator.init_args.ngf=4", "--model.discriminator.init_args.ndf=4"]) == 0
    (root / "text.ckpt").write_text("not a checkpoint")
    np.savez(root / "no_samples.npz", images=np.zeros((3, 1, 28, 28), np.uint8))
    np.savez(root / "float.npz", samples=np.zeros((3, 1, 28, 28), np.float32))
    np.savez(root / "ok.npz", samples=np.zeros((3, 1, 28, 28), np.uint8))
    (root / "a_file").write_text("")
    return {"toy": str(toy / "checkpoints" / "last.ckpt"), "acgan": str(acgan / "checkpoints" / "last.ckpt"),
            "root": str(root)}


def _fit(experiment: str = "toy_ring", run: str = "{root}/run") -> str:
    return f"fit --config {REPO}/experiments/{experiment}.yaml --run_dir {run} {QUIET}"


MNIST = _fit("gan_mnist5k")
FASHION = _fit("dcgan_fashion")
SAMPLE = "sample --ckpt_path {toy} --num 3 --out {root}/s.npz"
ACSAMPLE = "sample --ckpt_path {acgan} --num 3 --out {root}/s.npz"
EMBEDDED = "--data gan_lightning.data.EmbeddedMNIST"

# (id, command line, the start of the one error line)
CASES = [
    # config values
    ("batch_size", _fit() + " --data.init_args.batch_size=0", "error: data.batch_size: must be >= 1"),
    ("n_critic", _fit() + " --model.n_critic=0", "error: "),
    ("unknown_loss", _fit() + " --model.loss=foo", "error: model.loss: expected one of"),
    ("negative_lr", _fit() + " --model.g_optimizer.init_args.lr=-0.1", "error: model.g_optimizer: Invalid learning rate"),
    ("bad_betas", _fit() + " '--model.d_optimizer.init_args.betas=[1.5, 0.9]'", "error: model.d_optimizer: Invalid beta"),
    ("ema_decay", _fit() + " --model.ema_decay=1.5", "error: model.ema_decay: must be in [0.0, 1.0)"),
    ("d_step", _fit() + " --model.d_step=both", "error: model.d_step: expected one of ['joint', 'split']"),
    ("unknown_option", _fit() + " --model.foo=1", "error: unrecognized arguments: --model.foo=1"),
    ("seed_type", _fit() + " --seed_everything=abc", "error: seed_everything:"),
    ("net_choice", _fit() + " --model.generator.init_args.norm=foo", "error: model.generator.norm: expected one of"),
    ("negative_gamma", _fit() + " '--model.regularizers=[{{class_path: gan_lightning.objectives.R1, init_args: {{gamma: -1}}}}]'",
     "error: R1.gamma: must be >= 0"),
    ("refinement_steps", _fit() + " --model.refinement.init_args.steps=0",
     "error: LatentRefinement.steps: must be an integer >= 1"),
    ("relativistic_split", _fit() + " --model.loss=relativistic --model.d_step=split",
     "error: model.d_step: RelativisticLoss pairs real and fake scores"),
    ("shape_mismatch", _fit() + " --model.generator.class_path=gan_lightning.nets.DCGANGenerator",
     "error: model: generator.out_shape (1, 28, 28) does not match discriminator.in_shape (2,)"),
    ("augment_vectors", _fit() + " --model.augment=gan_lightning.objectives.DiffAugment",
     "error: model.augment: DiffAugment augments images"),
    ("augment_policy", MNIST + " --model.augment=gan_lightning.objectives.DiffAugment --model.augment.init_args.policy=zoom",
     "error: DiffAugment.policy: unknown augmentation 'zoom'"),
    ("toy_name", _fit() + " --data.init_args.name=spiral", "error: data.name: unknown toy data set 'spiral'"),
    ("wandb_mode", _fit() + " --wandb=maybe", "error: --wandb: must be one of"),
    ("missing_config", "fit --config {root}/no/such.yaml", "error: --config: no file at"),
    # data
    ("data_root", FASHION + " --data.init_args.root={root}/no/such", "error: data.root: no FashionMNIST files"),
    # devices
    ("no_gpu", _fit() + " --trainer.accelerator=gpu", "error: trainer.accelerator: 'gpu' but this machine has no usable GPU"),
    ("sample_cuda", SAMPLE + " --device cuda", "error: --device: 'cuda' but no CUDA device is available"),
    # checkpoints
    ("fit_missing_ckpt", _fit() + " --ckpt_path {root}/no/such.ckpt", "error: --ckpt_path:"),
    ("fit_text_ckpt", _fit() + " --ckpt_path {root}/text.ckpt", "error: --ckpt_path:"),
    ("fit_other_experiment", _fit() + " --ckpt_path {acgan}", "error: "),
    ("sample_missing_ckpt", "sample --ckpt_path {root}/no/such --num 3 --out {root}/s.npz", "error: --ckpt_path: no checkpoint at"),
    ("sample_text_ckpt", "sample --ckpt_path {root}/text.ckpt --num 3 --out {root}/s.npz",
     "error: --ckpt_path: '{root}/text.ckpt' is not a readable PyTorch checkpoint"),
    # labels and conditions
    ("labels_unconditional", SAMPLE + " --labels [1]", "error: --labels: this model is not conditioned on class labels"),
    ("label_range", ACSAMPLE + " --labels [10]", "error: --labels: label 10 is outside [0, 10)"),
    ("condition_images_for_labels", ACSAMPLE + " --condition_images {root}/ok.npz",
     "error: --condition_images: this model is conditioned on class labels"),
    # sampling options and output paths
    ("num_zero", SAMPLE.replace("--num 3", "--num 0"), "error: --num: must be >= 1"),
    ("out_suffix", SAMPLE.replace("s.npz", "s.txt"), "error: --out: '{root}/s.txt' must end in .npz"),
    ("out_unwritable", SAMPLE.replace("{root}/s.npz", "{root}/a_file/s.npz"), "error: --out: cannot create the folder"),
    ("run_dir_unwritable", _fit(run="{root}/a_file/run"), "error: "),
    ("png_dir_is_file", "sample --ckpt_path {toy} --num 3 --png_dir {root}/a_file", "error: --png_dir:"),
    ("truncation", SAMPLE + " --truncation 0", "error: --truncation: the threshold psi must be a finite number > 0"),
    ("no_output", "sample --ckpt_path {toy} --num 3", "error: sample: give an output"),
    # samples files and evaluate
    ("evaluate_both", "evaluate --ckpt_path {acgan} --samples {root}/ok.npz", "error: evaluate: give exactly one of"),
    ("samples_no_array", "evaluate --samples {root}/no_samples.npz " + EMBEDDED, "error: --samples: '{root}/no_samples.npz' has no 'samples' array"),
    ("samples_dtype", "evaluate --samples {root}/float.npz " + EMBEDDED, "error: --samples: expected uint8 images"),
    ("samples_missing", "evaluate --samples {root}/no/such.npz " + EMBEDDED, "error: --samples: no file at"),
    ("samples_no_data", "evaluate --samples {root}/ok.npz", "error: --data: a samples file needs its reference data"),
    ("unknown_metric", "evaluate --ckpt_path {acgan} --metrics [foo]", "error: --metrics: unknown metric(s) ['foo']"),
    ("evaluate_num", "evaluate --ckpt_path {acgan} --num 1", "error: evaluate: --num and --num_reference must be >= 2"),
    # commands
    ("unknown_command", "train --config x", "error: unknown command 'train'; choose one of fit, sample, evaluate"),
    ("classifier_data", "classifier --data Foo", "error: --data: unknown data set 'Foo'"),
]


def test_the_table_is_large_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("command, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(files, command, expected, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing a failed command writes lands in the repository
    argv = shlex.split(command.format(**files))
    try:
        rc = main(argv)
    except SystemExit as exit_:  # a parser that exits on its own must still exit 2 with one line
        rc = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith(expected.format(**files)), lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["sample", "--ckpt_path", "/no/such.ckpt", "--num", "3", "--out", "s.npz"],
                                  ["fit", "--config", "experiments/toy_ring.yaml", "--data.init_args.batch_size=0",
                                   "--wandb=disabled"]], ids=["sample", "fit"])
def test_a_shell_sees_exit_code_2_and_one_line(argv, tmp_path):
    done = subprocess.run([sys.executable, "-m", "gan_lightning", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert [l for l in done.stderr.splitlines() if l.startswith("error:")] and done.stderr.strip().splitlines()[-1].startswith("error:")
