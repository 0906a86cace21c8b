"""A fast start: ``--help``, an unknown command and the argument mistakes found before a command's own module is
imported cost Python's start-up and no heavy library; ``import gan_lightning`` imports none either, and
``gan_lightning.GAN`` imports the training system when first used.

Each check runs the real command in a fresh interpreter with ``-X importtime``, which lists every module the
process imports, and compares the top-level packages with the libraries that must stay out.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gan_lightning

REPO = Path(__file__).resolve().parents[1]

# Must not be imported by --help, a bad command or an argument mistake (torch included: it alone takes seconds).
CLI_HEAVY = {"torch", "lightning", "wandb", "matplotlib", "torchvision", "torchmetrics", "torch_fidelity"}
# Must not be imported by `import gan_lightning` (Lightning would be allowed for GAN, which is lazy instead).
IMPORT_HEAVY = {"wandb", "matplotlib", "torchmetrics", "torch_fidelity", "lightning", "torch"}


def imported(args: list[str], cwd: Path) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr without the import lines, top-level packages imported) of ``python -X importtime
    ARGS``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    modules, other = set(), []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name != "imported package":
                modules.add(name.split(".")[0])
        else:
            other.append(line)
    return proc.returncode, proc.stdout, "\n".join(other), modules


@pytest.mark.slow
def test_help_imports_nothing_heavy(tmp_path):
    rc, out, err, modules = imported(["-m", "gan_lightning", "--help"], tmp_path)
    assert rc == 0 and "commands:" in out and err == ""
    assert "gan_lightning" in modules and modules & CLI_HEAVY == set()


def broken(tmp_path: Path) -> str:
    path = tmp_path / "broken.yaml"
    path.write_text("model: [\n")
    return str(path)


MISTAKES = {
    "no command": ([], None),
    "unknown command": (["fitt"], "error: unknown command 'fitt'; choose one of "),
    "fit: unknown experiment": (["fit", "--config", "no_such_experiment"],
                                "error: --config: no file at 'no_such_experiment' and no bundled experiment"),
    "fit: missing file": (["fit", "--config", "/nowhere/x.yaml"], "error: --config: no file at '/nowhere/x.yaml'"),
    "fit: not YAML": (["fit", "--config", "BROKEN"], "error: --config: "),
    "sweep: bad option": (["sweep", "--no_such_option"], "error: "),
    "report: bad option": (["report", "--no_such_option"], "error: "),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_found_before_the_command_imports_nothing_heavy(case, tmp_path):
    args, message = MISTAKES[case]
    args = [broken(tmp_path) if a == "BROKEN" else a for a in args]
    rc, out, err, modules = imported(["-m", "gan_lightning", *args], tmp_path)
    assert rc == 2 and out == ""
    if message is None:
        assert "usage: python -m gan_lightning COMMAND" in err
    else:
        assert len(err.splitlines()) == 1 and err.startswith(message), err
    assert modules & CLI_HEAVY == set(), case


@pytest.mark.slow
def test_import_gan_lightning_imports_nothing_heavy(tmp_path):
    rc, out, err, modules = imported(["-c", "import gan_lightning; print(gan_lightning.__version__)"], tmp_path)
    assert rc == 0 and out.strip() == gan_lightning.__version__
    assert modules & IMPORT_HEAVY == set()


def test_gan_is_exported_lazily():
    from gan_lightning.training.system import GAN

    assert "GAN" in dir(gan_lightning) and gan_lightning.__all__ == ["GAN"]
    assert gan_lightning.GAN is GAN
    from gan_lightning import GAN as exported

    assert exported is GAN
    with pytest.raises(AttributeError, match="no attribute 'Trainer'"):
        gan_lightning.Trainer  # noqa: B018


def test_metrics_exports_its_callbacks_lazily():
    import gan_lightning.metrics as metrics
    from gan_lightning.metrics import callbacks, toy

    for name in metrics.__all__:
        assert name in dir(metrics)
    assert metrics.ImageMetrics is callbacks.ImageMetrics and metrics.SampleGrid is callbacks.SampleGrid
    assert metrics.ToyMetrics is callbacks.ToyMetrics and metrics.mode_coverage is toy.mode_coverage
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        metrics.Nothing  # noqa: B018


@pytest.mark.slow
def test_a_metrics_submodule_does_not_import_the_callbacks(tmp_path):
    # The toy metric is plain torch: importing it must not pull in the callbacks (Lightning, torchmetrics).
    rc, _, err, modules = imported(["-c", "import gan_lightning.metrics.toy"], tmp_path)
    assert rc == 0, err
    assert "torch" in modules and modules & {"lightning", "torchmetrics", "torch_fidelity", "wandb"} == set()
