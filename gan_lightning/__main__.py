"""``python -m gan_lightning COMMAND [options]``: the command table of ``gan_lightning.commands``."""
import sys

from gan_lightning.commands import main

sys.exit(main())
