"""What a run does not print: Lightning's advertisements, messages about settings the project makes on purpose,
and deprecations a user cannot act on. Each filter names the exact message, so a genuine warning of the same
module still shows. ``quiet_console()`` installs them; the CLI calls it, and so does the ``gan_ddp`` strategy
in processes it starts (spawn/fork do not inherit warning filters)."""

from __future__ import annotations

import logging
import warnings


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
