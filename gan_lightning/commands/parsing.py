"""A command line's mistakes as one line ``error: ...``: the argparse parser of ``sweep`` and ``report``
(:class:`OneLineParser`), for ``fit`` what LightningCLI, jsonargparse and Lightning raise, told apart from bugs
(:func:`one_line`, :func:`user_error_in_chain`, :func:`rejected_by_lightning`), and ``fit``'s config files checked
and found before anything heavy is imported (:func:`fit_arguments`: a path, or the name of an experiment bundled
with the package, :func:`bundled_experiment`).

Nothing here imports torch or Lightning: a mistake found here is reported at Python's own start-up cost.
"""

from __future__ import annotations

import argparse
import os
import re
import traceback
from pathlib import Path
from typing import Optional, Sequence

import yaml

from gan_lightning.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1]


def experiments_folder() -> Path:
    """The experiment YAMLs bundled with the package: ``gan_lightning/experiments`` in an installed package (the
    wheel maps the repository's ``experiments/`` there), else ``experiments/`` of the source checkout the package
    is imported from."""
    bundled = PACKAGE / "experiments"
    checkout = PACKAGE.parent
    if not bundled.is_dir() and (checkout / "pyproject.toml").is_file() and (checkout / "experiments").is_dir():
        return checkout / "experiments"
    return bundled


def bundled_experiments() -> list[str]:
    """The names of the bundled experiments (file stems), sorted."""
    folder = experiments_folder()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def bundled_experiment(name: str) -> Optional[Path]:
    """The bundled experiment that ``--config name`` means, or None: ``name`` is an experiment's name, with or
    without ``.yaml``, alone or as ``experiments/<name>[.yaml]`` (the repository's layout, so that the README's
    commands also work where the package is installed and there is no ``experiments/`` folder)."""
    path = Path(name)
    if path.is_absolute() or str(path.parent) not in (".", "experiments"):
        return None
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    found = experiments_folder() / f"{stem}.yaml"
    return found if stem and found.is_file() else None


def config_paths(args: Sequence[str]) -> list[str]:
    """The files given with ``--config``/``-c`` in ``args``."""
    paths = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            paths.append(args[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def check_config_file(path: str) -> None:
    """A ``--config`` file that is missing or not YAML, named with the place of the problem."""
    if not os.path.isfile(path):
        raise UserError(f"--config: no file at {path!r}")
    try:
        with open(path) as f:
            yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"--config: {path!r} is not valid YAML: {problem}{where}") from None


def config_file(given: str) -> str:
    """The file ``--config given`` reads: ``given`` when it exists, else the bundled experiment it names; a
    ``UserError`` listing the bundled experiments when neither exists."""
    if os.path.isfile(given):
        return given
    found = bundled_experiment(given)
    if found is not None:
        return str(found)
    if Path(given).is_absolute() or str(Path(given).parent) not in (".", "experiments"):
        raise UserError(f"--config: no file at {given!r}")
    names = ", ".join(bundled_experiments()) or "none (the package's experiments folder is missing)"
    raise UserError(f"--config: no file at {given!r} and no bundled experiment of that name; bundled: {names}")


def fit_arguments(args: Sequence[str]) -> list[str]:
    """``fit``'s arguments with every ``--config``/``-c`` file resolved (:func:`config_file`) and checked to be
    YAML, before LightningCLI (and with it torch and Lightning) is imported. Resolved paths are kept as given, so
    calling it twice changes nothing."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = config_file(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + config_file(arg.split("=", 1)[1])
    for path in config_paths(out):
        check_config_file(path)
    return out


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a one-line ``UserError`` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def rejected_by_lightning(err: BaseException) -> bool:
    """Whether ``err`` is Lightning refusing a trainer setting (accelerator, devices, strategy, precision): raised
    by Lightning's own code while its accelerator connector checks the settings, not by a class of the project."""
    frames = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(err.__traceback__)]
    lightning = os.sep + "lightning" + os.sep
    connector = os.path.join("trainer", "connectors", "accelerator_connector.py")
    return any(f.endswith(connector) for f in frames) and bool(frames) and lightning in frames[-1]


def user_error_in_chain(err: BaseException) -> Optional[UserError]:
    """The first ``UserError`` among ``err`` and the exceptions it was raised from (``__cause__``, ``__context__``)."""
    seen: set[int] = set()
    stack = [err]
    while stack:
        e = stack.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        stack += [e.__cause__, e.__context__]
    return None


# Lines of jsonargparse's nested error text that say nothing about the mistake itself.
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:|Given value type: |"
    r"Problem with given class_path|Expected a NoneType|Expected a path but .* either not accessible or invalid)"
)


def one_line(message: str) -> str:
    """A jsonargparse parse error (often several indented lines: a Union's alternatives, a class's init_args) as one
    line: the dotted key, what was expected, and the value given."""
    keys: list[str] = []
    reasons: list[str] = []
    given: Optional[str] = None
    for raw in message.splitlines():
        line = raw.strip()
        line = line[2:] if line.startswith("- ") else line
        while (m := re.match(r'Parser key "([^"]+)":\s*(.*)$', line)) is not None:
            if m.group(1) not in keys:
                keys.append(m.group(1))
            line = m.group(2)
        line = re.sub(r"<class '([\w.]+)'>", r"\1", line)
        line = re.sub(r"typing\.Literal\[(.*)\]", r"one of [\1]", line)
        if not line or _NOISE.match(line):
            continue
        if line.startswith("Given value: "):
            given = given or line[len("Given value: "):]
            continue
        m = re.search(r"\. Got value: (.*)$", line)
        if m:
            given, line = given or m.group(1), line[: m.start()]
        line = line[:1].lower() + line[1:] if line[1:2].islower() else line
        if line not in reasons:
            reasons.append(line)
    if given is not None:
        reasons = [r[: -len(given) - 2] if r.endswith(": " + given) else r for r in reasons]
        if len(given) > 60 or given.startswith(("Namespace(", "NestedArg(")):
            given = None
    expected = [re.match(r"expected (?:an? )?(.*)$", r) for r in reasons]
    if reasons and all(expected):  # the alternatives of a Union, or one type
        text = "expected " + " or ".join(m.group(1) for m in expected if m)
    else:
        text = "; ".join(reasons) or " ".join(message.split())
    if given is not None:
        text += f" (got {given})"
    if text.startswith("unrecognized arguments"):
        text += "; python -m gan_lightning fit --help lists the options"
    return f"{'.'.join(keys)}: {text}" if keys else text
