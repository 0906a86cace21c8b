"""Errors a user can fix: the CLI prints them as one line naming the field or file and the fix."""


class UserError(ValueError):
    """A bad config value, path, checkpoint or label; the message names it and says how to fix it."""


class DataNotFound(UserError, FileNotFoundError):
    """A data path or file that is not there."""
