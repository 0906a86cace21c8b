import sys

from gan_lightning.cli import main

sys.exit(main())
