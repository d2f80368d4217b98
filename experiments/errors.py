"""Errors that are the user's to fix: reported as one line, without a traceback."""

USAGE = 2  # as the argument parser exits for a malformed command line


class UserError(Exception):
    """A mistake in the command, the config, a file or the environment, explained in one line."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
