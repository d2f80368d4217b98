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
from typing import Any, NoReturn

import yaml
from jsonargparse import get_loader, set_loader
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


def located(path: str, error: yaml.MarkedYAMLError) -> str:
    """``path:line:column: problem`` for a YAML syntax error, with where its construct began."""
    mark = error.problem_mark
    text = f"{path}:{mark.line + 1}:{mark.column + 1}: {error.problem}"
    if error.context and error.context_mark is not None:
        start = error.context_mark
        text += f" ({error.context} that starts at {start.line + 1}:{start.column + 1})"
    return text


_load_yaml = get_loader("yaml")


def load_yaml_naming_the_file(value: str, path: str = "") -> Any:
    """jsonargparse's YAML loader, whose syntax errors name the file, line and column.

    jsonargparse reads a config file into a string and hands the loader only that string and the
    file's base name, while it runs in the file's directory; PyYAML then reports a mistake as
    'in "<unicode string>", line 3, column 6', with neither the file nor, once jsonargparse has
    wrapped it, a readable reason. Registered through jsonargparse's public ``set_loader``.
    """
    try:
        return _load_yaml(value)
    except yaml.MarkedYAMLError as error:
        if not path or error.problem_mark is None:
            raise
        raise yaml.YAMLError(located(os.path.abspath(path), error)) from error


set_loader("yaml", load_yaml_naming_the_file, (yaml.YAMLError,))


def condense(message: str, options: list[str] | None = None) -> str:
    """One line out of a jsonargparse error message."""
    message = message.strip().removeprefix("Problems parsing config: ")
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
