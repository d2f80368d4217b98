"""The CLI's argument parser, whose errors are one line: the key, the value and what is allowed.

jsonargparse explains a rejected value as a tree of nested attempts ("Problem with given
class_path ...", "Parser key ...", "Errors: - Expected a <class 'NoneType'> ..."). The parser
below keeps the path of keys and the most specific reason, and prints that as one line;
``EXPERIMENTS_TRACEBACK=1`` prints jsonargparse's full message instead.
"""

import difflib
import os
import re
import sys
from typing import NoReturn

from lightning.pytorch.cli import LightningArgumentParser

NOISE = (
    "Problem with given class_path",
    "Parser key",
    "Given value",
    "Subtypes:",
    "Errors:",
    "Does not validate against any of the types",
    "Expected a <class 'NoneType'>",
    "Expected a <class 'dict'>",
)


def condense(message: str, options: list[str] | None = None) -> str:
    """One line out of a jsonargparse error message."""
    lines = [line.strip().lstrip("- ").strip() for line in message.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return message.strip()
    unknown = re.match(r"Unrecognized arguments: (\S+)", lines[0])
    if unknown:
        option = unknown.group(1).split("=")[0]
        close = difflib.get_close_matches(option, options or [], n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else " (see --help for the options)"
        return f"unknown option {option}{hint}"
    keys = re.findall(r'Parser key "([^"]+)"', message)
    given = re.search(r"Given value: (.+)", message)
    reasons = [line for line in lines[1:] if not line.startswith(NOISE)] or lines[:1]
    reason = re.sub(r'^Parser key "[^"]+": ', "", reasons[-1])
    reason = re.sub(r"<class '([\w.]+)'>", r"\1", reason)
    reason = re.sub(r"typing\.Literal\[(.+?)\]", r"one of \1", reason)
    reason = re.sub(r"^Expected a (one of|int|float|bool|str)\b", r"expected \1", reason)
    class_paths = re.findall(r"Problem with given class_path '([^']+)'", message)
    about_class = not reason.startswith("expected") and "Import path" not in reason
    if class_paths and about_class and class_paths[-1] not in reason:
        reason = f"class_path '{class_paths[-1]}': {reason}"
    where = ".".join(dict.fromkeys(keys))
    text = f"{where}: {reason}" if where and not reason.startswith(where) else reason
    shown = given.group(1) if given else ""
    if shown and "Namespace(" not in shown and "NestedArg(" not in shown and shown not in text:
        text += f" (given: {shown})"
    return text


class ExperimentParser(LightningArgumentParser):
    """``LightningArgumentParser`` that reports a rejected command line in one line."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("EXPERIMENTS_TRACEBACK"):
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        options = [o for action in parser._actions for o in action.option_strings]
        sys.stderr.write(f"error: {condense(message, options)}\n")
        self.exit(2)
