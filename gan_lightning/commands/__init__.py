"""The command line, one module per command: ``python -m gan_lightning COMMAND``."""
