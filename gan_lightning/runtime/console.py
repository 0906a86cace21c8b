"""What a run does not print: Lightning's advertisements, messages about settings the project makes on purpose,
and deprecations a user cannot act on. Each filter names the exact message, so a genuine warning of the same
module still shows. ``quiet_console()`` installs them; the CLI calls it, and so does the ``gan_ddp`` strategy
in processes it starts (spawn/fork do not inherit warning filters).

What it does print while working: ``progress(...)``, one tqdm bar on stderr per long step (sampling, feature
extraction, metric evaluation, classifier training), drawn only when stderr is a terminal and ``--quiet``
(``set_quiet``) was not given."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Iterator


class _DropMessages(logging.Filter):
    """Drops the records of one logger whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


QUIET_WARNINGS = [
    # Lightning asks manual-optimization modules to keep pre-step weights for ModelCheckpoint(every_n_train_steps),
    # with a code example. A GAN checkpoint holds the weights after the step's G update, as intended.
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps, but no pre-optimization state",
     UserWarning, ""),
    # torch deprecates a class that Lightning's own pytree helper uses; nothing a user can change.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
]
QUIET_LOGS = {
    # Lightning's advertisements ("💡 Tip: ... try installing litlogger / litmodels").
    "lightning.pytorch.utilities.rank_zero": ("💡 Tip:",),
    "lightning.fabric.utilities.rank_zero": ("💡 Tip:",),
    # "Seed set to N", printed before any error: the seed is in config.yaml and in the default run directory's name.
    "lightning.fabric.utilities.seed": ("Seed set to ",),
}


def quiet_console() -> None:
    """Installs the warning and logging filters above (once per process)."""
    for message, category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, prefixes in QUIET_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(*prefixes))


# ---------------------------------------------------------------------------------------------- progress bars
_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress bar anywhere in this process, terminal or not."""
    global _quiet
    _quiet = bool(quiet)


@contextmanager
def quiet_if(quiet: bool) -> Iterator[None]:
    """``set_quiet(quiet)`` for the duration of one command, then the setting as it was (a command run in-process,
    e.g. ``main([...])`` from a script, leaves the next one unaffected)."""
    before = _quiet
    set_quiet(quiet)
    try:
        yield
    finally:
        set_quiet(before)


def progress_shown(enabled: bool = True) -> bool:
    """Whether a bar would be drawn: ``enabled`` by the caller, not ``--quiet``, and stderr a terminal (a log
    file or a pipe gets no bar, so that it holds no carriage-return litter)."""
    if not enabled or _quiet:
        return False
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _screen() -> tuple[int, int]:
    """The bar's (columns, rows): ``$COLUMNS`` / ``$LINES``, else the size of the terminal on stderr, else 100 x 24.
    A pseudo-terminal that was never given a size reports 0 x 0, in which tqdm would draw nothing."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        columns, rows = size.columns, size.lines
    except (AttributeError, OSError, ValueError):  # no file descriptor (an in-memory stream), or not a terminal
        columns, rows = 0, 0
    env_columns, env_rows = os.environ.get("COLUMNS", ""), os.environ.get("LINES", "")
    columns = int(env_columns) if env_columns.isdigit() and int(env_columns) > 0 else columns
    rows = int(env_rows) if env_rows.isdigit() and int(env_rows) > 0 else rows
    return (columns if columns > 0 else 100), (rows if rows > 0 else 24)


class _NoBar:
    """What ``progress`` gives when no bar is drawn: the same calls, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass


@contextmanager
def progress(total: int, desc: str, unit: str = "img", enabled: bool = True, leave: bool = True) -> Iterator[Any]:
    """A tqdm bar on stderr for ``total`` units of work, or a no-op one (see ``progress_shown``); used by every
    long step of the commands and the metric callbacks. ``leave=False`` erases the bar when done (used inside
    ``fit``, under Lightning's own bar)."""
    if not progress_shown(enabled):
        yield _NoBar()
        return
    from tqdm import tqdm

    columns, rows = _screen()
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=leave, ncols=columns, nrows=rows,
               mininterval=0.25, unit_scale=False)
    try:
        yield bar
    finally:
        bar.close()
