"""The command line, one module per command: ``python -m gan_lightning COMMAND [options]`` (or ``gan-lightning
COMMAND``). ``COMMANDS`` is the table of commands (``fit``, ``sample``, ``evaluate``, ``classifier``, ``sweep``,
``report``); ``--help`` lists them, ``COMMAND --help`` lists a command's options.

A mistake (a bad value, an unknown option, a missing file, a GPU where there is none) is one line ``error: ...``
and exit code 2; a bug keeps its traceback. A command's module is imported only when the command runs, and
``--help``, an unknown command and the mistakes a command's ``prepare`` function finds cost no more than Python
itself: nothing here imports torch, Lightning or W&B.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from gan_lightning.errors import UserError


def resolve(target: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` string names (its module imported now)."""
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class Command:
    """One command of ``python -m gan_lightning``: ``target`` is ``"module:function"``, a function taking the
    command's arguments and returning the exit code. ``prepare``, when given, is a ``"module:function"`` in a module
    that imports nothing heavy: it takes the arguments, raises ``UserError`` for a mistake it can see without the
    command's own module (a missing config file, say) and returns the arguments ``target`` gets (paths resolved);
    the command line thus reports such a mistake in a fraction of a second."""

    target: str
    help: str  # One line, shown by --help.
    prepare: Optional[str] = None

    def run(self, argv: Sequence[str]) -> int:
        args = list(argv)
        if self.prepare is not None:
            args = list(resolve(self.prepare)(args))
        return resolve(self.target)(args)


COMMANDS: dict[str, Command] = {
    "fit": Command("gan_lightning.commands.fit:fit_main",
                   "train a GAN (LightningCLI): --config <experiment name or YAML file> [--key=value ...]",
                   prepare="gan_lightning.commands.parsing:fit_arguments"),
    "sample": Command("gan_lightning.commands.sample:sample_main",
                      "draw samples from a checkpoint into an .npz (and a PNG grid)"),
    "evaluate": Command("gan_lightning.commands.evaluate:evaluate_main",
                        "metrics (FID, KID, accuracy, ...) of a checkpoint or of an .npz of samples, as JSON"),
    "classifier": Command("gan_lightning.commands.classifier:classifier_main",
                          "train (once, then cached) the domain classifier the image metrics use"),
    "sweep": Command("gan_lightning.commands.sweep:main",
                     "run an experiment over a grid of overrides and several seeds, offline, one run directory each"),
    "export": Command("gan_lightning.commands.export:export_main",
                      "write a checkpoint's generator alone to a folder (safetensors weights, config.json, model card) "
                      "that Generator.from_pretrained and the Hugging Face Hub read"),
    "report": Command("gan_lightning.commands.report:main",
                      "compare runs from their run directories: tables of final metrics and config, seed groups, curves"),
}


def usage() -> str:
    """The command table, as ``--help`` prints it."""
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items())
    return (f"usage: python -m gan_lightning COMMAND [options]\n\ncommands:\n{rows}\n\n"
            "python -m gan_lightning COMMAND --help lists a command's options.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m gan_lightning``: runs the command named by the first argument; its exit code, or 2 after
    printing ``error: ...`` for a user's mistake."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[name].run(rest)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
