import sys

from gan_lightning.commands.fit import main

sys.exit(main())
