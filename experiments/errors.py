"""Errors that are the user's to fix: reported as one line, without a traceback."""

import argparse
import os
import signal
import sys
from typing import NoReturn

USAGE = 2  # as the argument parser exits for a malformed command line
TRACEBACK = "EXPERIMENTS_TRACEBACK"  # set, a command shows the traceback instead of one line


class UserError(Exception):
    """A mistake in the command, the config, a file or the environment, explained in one line."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class OneLineParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose mistakes are reported as one line, as every other error of
    the commands (argparse prints its usage block first; ``--help`` still shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"error: {message} (see --help)\n")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for one-line reports."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def exit_status(error: UserError) -> int:
    """Print ``error`` as its one line on stderr and return the program's exit status; with
    ``EXPERIMENTS_TRACEBACK=1``, raise it instead, traceback and all."""
    if os.environ.get(TRACEBACK):
        raise error
    print(f"error: {error}", file=sys.stderr, flush=True)
    return error.exit_code


def reader_gone() -> int:
    """The exit status of a command whose reader went away (``| head``): it ends quietly, as a
    shell tool does. Python would report the broken pipe again when it flushes stdout at exit,
    so stdout is pointed at /dev/null."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE
