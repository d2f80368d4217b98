"""The CLI's argument parser, whose errors are one line: the key, the value and what is allowed.

jsonargparse explains a rejected value as a tree of nested attempts ("Problem with given
class_path ...", "Parser key ...", "Errors: - Expected a <class 'NoneType'> ..."). The parser
below keeps the path of keys and the most specific reason, and prints that as one line;
``EXPERIMENTS_TRACEBACK=1`` prints jsonargparse's full message instead.
"""

import contextlib
import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonargparse import ArgumentParser, get_loader, set_loader
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from datamodules import DataFileError
from experiments.errors import TRACEBACK, UserError, first_line

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
    # jsonargparse wrote "Unrecognized" up to 4.46 and "unrecognized" (argparse's word) since.
    unknown = re.match(r"[Uu]nrecognized arguments: (\S+)", lines[0])
    if unknown:
        option = unknown.group(1).split("=")[0]
        close = difflib.get_close_matches(option, options or [], n=1, cutoff=0.75)
        close = close or task_argument_path(option)
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
    if where == "threads" and given:  # jsonargparse names only the Literal of int | "auto"
        return f"--threads must be a positive integer or auto, got {given.group(1).strip()!r}"
    known = known_cause(where, message, class_paths[-1] if class_paths else None, reason)
    if known is not None:
        return known
    text = f"{where}: {reason}" if where and not reason.startswith(where) else reason
    shown = given.group(1) if given else ""
    if shown and "Namespace(" not in shown and "NestedArg(" not in shown and shown not in text:
        text += f" (given: {shown})"
    return text


def task_argument_path(option: str) -> list[str]:
    """The full option for one that starts at a task's argument, as jsonargparse's help of a
    class once printed them: ``--network.hidden_sizes`` is
    ``--model.init_args.network.init_args.hidden_sizes``."""
    from models import Task

    first, _, rest = option.removeprefix("--").partition(".")
    if first not in inspect.signature(Task.__init__).parameters or first == "self":
        return []
    inner = f".init_args.{rest.removeprefix('init_args.')}" if rest else ""
    return [f"--model.init_args.{first}{inner}"]


def load_class(class_path: str) -> type | None:
    """The class a ``class_path`` names, or ``None`` if it does not import."""
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if inspect.isclass(found) else None


def network_refusal(class_path: str) -> str | None:
    """The line that refuses the network ``class_path`` names for breaking the contract every
    network here keeps (:func:`models.checks.network_contract`), or ``None``."""
    from models.checks import network_contract

    found = load_class(class_path)
    broken = network_contract(found) if found is not None else None
    return f"model.network: {broken}" if broken else None


NETWORK_CLASS = re.compile(
    r"""network=Namespace\(class_path='([\w.]+)'|Parser key "network":\s+Problem with given """
    r"""class_path '([\w.]+)'"""
)


def known_cause(where: str, message: str, class_path: str | None, reason: str) -> str | None:
    """The real cause behind two of jsonargparse's vaguer refusals of a class, or ``None``.

    * A user's network whose constructor lacks ``input_shape`` or ``num_outputs`` is refused
      for a missing argument of its own (``in_features``): the line states the contract.
    * A callback given without a required argument is refused as "a dict with parameters
      accepted by the base class": the line names the callback and the argument.
    """
    network = NETWORK_CLASS.search(message) if where.startswith("model") else None
    refusal = network_refusal(network.group(1) or network.group(2)) if network else None
    if refusal is not None:
        return refusal
    found = load_class(class_path) if class_path else None
    if found is None:
        return None
    if where.startswith("trainer.callbacks") and "accepted by the base class" in reason:
        try:
            parameters = inspect.signature(found).parameters.values()
        except (TypeError, ValueError):
            return None
        required = [
            p.name
            for p in parameters
            if p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        if required:
            names = " and ".join(required)
            has = "has" if len(required) == 1 else "have"
            return (
                f"{where}: {found.__name__} needs {names}, which {has} no default: give it after "
                f"the callback, e.g. --trainer.callbacks+={found.__name__} "
                f"--trainer.callbacks.{required[0]} VALUE"
            )
    return None


def command_line_pairs(argv: Sequence[str]) -> list[tuple[str, str]]:
    """The ``--key value`` and ``--key=value`` pairs of a command line, keys without dashes."""
    pairs = []
    for index, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            key, value = arg[2:], argv[index + 1]
        else:
            continue
        pairs.append((key.removesuffix("+"), value))
    return pairs


def configured_tree(argv: Sequence[str], default_configs: Sequence[str]) -> dict[str, Any]:
    """The nested config the command line builds on: its config files, then its class_paths."""
    files = [value for key, value in command_line_pairs(argv) if key == "config"]
    tree: dict[str, Any] = {}
    for path in files or default_configs:
        with contextlib.suppress(OSError, yaml.YAMLError):
            loaded = yaml.safe_load(Path(path).read_text())
            if isinstance(loaded, dict):
                merge(tree, loaded)
    for key, value in command_line_pairs(argv):
        if key.endswith(".class_path"):
            merge(tree, nest(key.split("."), value))
    return tree


def nest(keys: list[str], value: Any) -> dict[str, Any]:
    """``{k1: {k2: ... value}}``."""
    for key in reversed(keys):
        value = {key: value}
    return value


def merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Merge ``other`` into ``into``, nested mappings key by key."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The arguments ``cls`` takes by name, following ``**kwargs`` to the parent classes."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                found.setdefault(parameter.name, parameter)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    found.pop("self", None)
    return found


def type_name(annotation: Any) -> str:
    """An annotation as a reader writes it: ``float``, ``int | None``, ``list[int]``."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    text = re.sub(r"\b(typing|collections\.abc|builtins)\.", "", str(annotation))
    return re.sub(r"^Literal\[(.*)\]$", r"one of \1", text)


def nested_mistake(argv: Sequence[str], default_configs: Sequence[str] = ()) -> str | None:
    """The first ``--a.init_args.b.init_args.name value`` whose class has no argument ``name``,
    or whose value that argument's type refuses, in one line; ``None`` if there is none.

    jsonargparse explains these from the outermost class inwards ("Expected a dot import path
    string", "Option 'x' is not accepted") without naming the key, the class's arguments or
    the type; here each nested argument is checked against its own class's signature.
    """
    tree = configured_tree(argv, default_configs)
    for key, value in command_line_pairs(argv):
        parts = key.split(".")
        if "init_args" not in parts[:-1] or parts[-2] != "init_args":
            continue
        owner = parts[:-2]
        node = tree
        for part in owner:
            node = node.get(part) if isinstance(node, dict) else None
        class_path = node.get("class_path") if isinstance(node, dict) else None
        if not isinstance(class_path, str):
            continue
        module, _, attribute = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError):  # jsonargparse's to explain
            continue
        if not isinstance(cls, type):
            continue
        parameters = constructor_parameters(cls)
        name = parts[-1]
        if name not in parameters:
            close = difflib.get_close_matches(name, list(parameters), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            accepted = ", ".join(parameters) or "none"
            return f"{key}: {class_path} has no argument {name!r}{hint}; it takes: {accepted}"
        annotation = parameters[name].annotation
        if annotation is inspect.Parameter.empty:
            continue
        check = ArgumentParser(exit_on_error=False)
        check.add_argument("--value", type=annotation)
        try:
            check.parse_args(["--value", value])
        except Exception:
            return f"{key}: expected {type_name(annotation)}, got {value!r}"
    return None


def explain(argv: Sequence[str], message: str, options: list[str] | None = None) -> str:
    """The one line for the command line ``argv`` that jsonargparse refused with ``message``."""
    return nested_mistake(argv) or condense(message, options)


# The command line the outermost parse reads, for its error reports (jsonargparse parses the
# arguments of nested classes with parsers of this class too).
_argv: list[str] = []
_depth = [0]


PROGRAM = "python -m experiments"  # how a user runs the CLI

CKPT_PATH_HELP = (
    "The checkpoint to continue (fit) or evaluate: 'last' (the newest run's last.ckpt), 'best' "
    "(its best checkpoint by val/loss; not for fit), or a .ckpt file. A checkpoint of a run "
    "builds the run's own model and data from its config.yaml, and writes into that run."
)
WEIGHTS_ONLY_HELP = (
    "Checkpoints are always read with torch.load(weights_only=True) here: only tensors and "
    "plain values; a file holding pickled code is refused. false is not accepted."
)


# A constructor's ValueError (or a task that misses an argument the data cannot link) is a
# mistake in the config, as is a data file that cannot be used or a Trainer argument that
# Lightning refuses.
BUILD_ERRORS = (DataFileError, ValueError, TypeError, MisconfigurationException)


def build_error(error: Exception) -> UserError:
    """The one line for one of :data:`BUILD_ERRORS`, met while building the experiment."""
    if isinstance(error, DataFileError):  # it names the file and what is wrong
        return UserError(str(error))
    if isinstance(error, MisconfigurationException):
        return UserError(f"trainer: {first_line(error)}")
    return UserError(f"cannot build the experiment: {condense(str(error))}")


def help_option(description: str | None, nested_key: str | None) -> str | None:
    """For the parser that prints a class's help (``--<key>.help CLASS``), the key as the
    command line typed it (``model.init_args.network``); ``None`` for any other parser."""
    if not nested_key or not (description or "").startswith(f"Help for --{nested_key}.help="):
        return None
    for arg in reversed(_argv):
        typed = re.fullmatch(r"--([\w.]+)\.help(=.*)?", arg)
        if typed and typed.group(1).split(".")[-1] == nested_key.split(".")[-1]:
            return typed.group(1)
    return None


class ExperimentParser(LightningArgumentParser):
    """``LightningArgumentParser`` that reports a rejected command line in one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # jsonargparse builds the parser of ``--model.init_args.network.help CLASS`` from this
        # class with no ``prog``: argparse would then name the program after sys.argv[0],
        # which under ``python -m experiments`` is "__main__.py".
        if Path(sys.argv[0]).name == "__main__.py" and not args and "prog" not in kwargs:
            kwargs["prog"] = PROGRAM
        super().__init__(*args, **kwargs)

    def add_class_arguments(
        self, theclass: Any, nested_key: str | None = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        # jsonargparse prints the help of ``--model.init_args.network.help CLASS`` with a parser
        # of its own, whose keys start at the option's last part (``--network.hidden_sizes``,
        # _ActionHelpClassPath.print_help): nothing a user can type. Its keys start here where
        # the option does, as typed, so that the help names what the command line takes.
        typed = help_option(self.description, nested_key)
        if typed is not None:
            self.description = self.description.replace(f"--{nested_key}.help", f"--{typed}.help")
            nested_key = f"{typed}.init_args"
        return super().add_class_arguments(theclass, nested_key, *args, **kwargs)

    def add_method_arguments(self, *args: Any, **kwargs: Any) -> list[str]:
        # The Trainer's own help for these two speaks of Lightning's registry and of unsafe
        # loading; here they mean what the project does with them.
        added = super().add_method_arguments(*args, **kwargs)
        for action in self._actions:
            if action.dest == "ckpt_path":
                action.help = CKPT_PATH_HELP
            elif action.dest == "weights_only":
                action.help, action.default = WEIGHTS_ONLY_HELP, True
            elif action.dest == "verbose":
                # The project prints the metrics once, in the run's summary.
                action.help = "Also print Lightning's own table of the metrics."
                action.default = False
        return added

    def parse_args(self, args: Sequence[str] | None = None, *more: Any, **kwargs: Any) -> Any:
        if _depth[0] == 0:
            _argv[:] = list(sys.argv[1:] if args is None else args)
        _depth[0] += 1
        try:
            return super().parse_args(args, *more, **kwargs)
        finally:
            _depth[0] -= 1

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get(TRACEBACK):
            super().error(message, ex)
        sys.stderr.write(f"error: {self.explain(message, ex)}\n")
        self.exit(2)

    def explain(self, message: str, ex: Exception | None = None) -> str:
        """The one line for a rejected command line."""
        parser = getattr(ex, "subcommand_parser", None) or self
        nested = nested_mistake(_argv, getattr(parser, "default_config_files", None) or ())
        if nested is not None:
            return nested
        options = [o for action in parser._actions for o in action.option_strings]
        return condense(message, options)
