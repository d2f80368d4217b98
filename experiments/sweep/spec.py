"""The sweep file: which experiment, scored by which metric, searched over which of its keys.

```yaml
config: experiments/two_layer_relu.yaml    # the base experiment
metric: val/r2                             # a trial's score: its best value over the epochs
direction: maximize                        # or minimize
trials: 24
sampler: tpe                               # tpe, random or grid
pruner: median                             # median, none, or median with options:
# pruner: {median: {n_startup_trials: 5, n_warmup_steps: 10}}
args: [--trainer.max_epochs, "60"]         # optional: CLI arguments of every trial
space:                                     # the CLI's own dotted keys
  model.init_args.network.init_args.activation: [relu, sigmoid, tanh]        # choices
  model.init_args.optimizer.init_args.lr: {low: 1.0e-4, high: 0.3, log: true} # a float range
  data.init_args.batch_size: {low: 16, high: 128, step: 16}                   # an int range
```

:func:`load` reads and checks the file's own form; whether the experiment has the keys and
takes the values is checked against the CLI itself (:mod:`experiments.sweep.checks`).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from experiments.errors import UserError
from experiments.parser import located

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
# Optuna's MedianPruner options. Its defaults prune from a trial's first epoch, so that a slow
# starter (a deeper network, a small learning rate) was pruned before it showed what it learns;
# here no trial is pruned in its first four epochs. Lower bounds as Optuna's own checks.
MEDIAN = {"n_startup_trials": 5, "n_warmup_steps": 4, "interval_steps": 1, "n_min_trials": 1}
LEAST = {"n_startup_trials": 0, "n_warmup_steps": 0, "interval_steps": 1, "n_min_trials": 1}
DIRECTIONS = ("minimize", "maximize")
REQUIRED = ("config", "metric", "direction", "space")
OPTIONAL = {"trials": 20, "sampler": "tpe", "pruner": "median", "args": [], "population": "auto"}
REPO = Path(__file__).resolve().parents[2]
Scalar = None | bool | int | float | str


def cli_value(value: Any) -> str:
    """A value as the CLI reads it: lists and mappings as JSON, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class Dimension:
    """One key of the search space: choices, or a range of ints or floats."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        """A range of integers: both bounds (and the step, if any) are ints."""
        numbers = [self.low, self.high, *([] if self.step is None else [self.step])]
        return all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)

    def encoded(self) -> list[Scalar]:
        """The choices as Optuna stores them: lists and mappings as their JSON text."""
        return [c if isinstance(c, Scalar) else json.dumps(c) for c in self.choices or ()]

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of this key."""
        if self.choices is not None:
            return CategoricalDistribution(self.encoded())
        if self.is_int:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step or 1)
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def decode(self, stored: Any) -> Any:
        """The value a trial's parameter stands for (Optuna stores lists as JSON text)."""
        if self.choices is None:
            return stored
        return dict(zip(self.encoded(), self.choices, strict=True))[stored]

    def grid(self) -> list[Scalar]:
        """Every value of the key, for the grid sampler (refused for a range of floats)."""
        if self.choices is not None:
            return self.encoded()
        if not self.is_int:
            raise UserError(
                f"space: {self.key}: the grid sampler needs choices or an int range, got a "
                f"float range {{low: {self.low}, high: {self.high}}}; list the values instead"
            )
        return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))

    def samples(self) -> list[Any]:
        """The values to try against the CLI: every choice, or both ends of the range."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def describe(self) -> Any:
        """The dimension as plain values, to compare with a study made earlier."""
        if self.choices is not None:
            return list(self.choices)
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


def dimension(key: str, value: Any) -> Dimension:
    """A space entry as a :class:`Dimension`, refusing a malformed one in one line."""
    where = f"space: {key}"
    if isinstance(value, list):
        if not value:
            raise UserError(f"{where}: the list of choices is empty")
        return Dimension(key, choices=tuple(value))
    if not isinstance(value, dict) or not {"low", "high"} <= value.keys():
        raise UserError(
            f"{where}: expected a list of choices or {{low, high, log?, step?}}, got {value!r}"
        )
    unknown = value.keys() - {"low", "high", "log", "step"}
    if unknown:
        raise UserError(
            f"{where}: unknown range field {sorted(unknown)[0]!r} (low, high, log, step)"
        )
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    for name, number in (("low", low), ("high", high), ("step", step)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
            raise UserError(f"{where}: {name} must be a number, got {number!r}")
    if not isinstance(log, bool):
        raise UserError(f"{where}: log must be true or false, got {log!r}")
    if not math.isfinite(low) or not math.isfinite(high) or low >= high:
        raise UserError(f"{where}: low must be below high, got low {low} and high {high}")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0, got low {low}")
    if step is not None and (step <= 0 or log):
        reason = "cannot go with log: true" if log else f"must be > 0, got {step}"
        raise UserError(f"{where}: step {reason}")
    return Dimension(key, low=low, high=high, log=log, step=step)


@dataclass(frozen=True)
class Sweep:
    """A sweep file, read and checked for form."""

    name: str
    path: Path
    config: Path
    metric: str
    direction: str
    trials: int
    sampler: str
    pruner: str
    args: tuple[str, ...]
    space: dict[str, Dimension] = field(default_factory=dict)
    population: int | str = "auto"  # trials trained at once as one batched network, or auto
    pruner_options: dict[str, int] = field(default_factory=dict)  # MedianPruner's, for median

    def definition(self) -> dict[str, Any]:
        """What makes a study this sweep's: the space, the metric and the direction."""
        space = {key: dim.describe() for key, dim in sorted(self.space.items())}
        return {"space": space, "metric": self.metric, "direction": self.direction}

    def trial_args(self, params: dict[str, Any]) -> list[str]:
        """The CLI arguments of a trial with ``params`` (already decoded)."""
        pairs = [(f"--{key}", cli_value(value)) for key, value in params.items()]
        return ["--config", str(self.config), *self.args, *(a for pair in pairs for a in pair)]


def population_size(value: Any, where: str) -> int | str:
    """A population size as given: an int of at least 1, or ``auto``."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where} must be an integer of at least 1 or auto, got {value!r}")
    return value


def pruning(value: Any, sweep_file: Path) -> tuple[str, dict[str, int]]:
    """The ``pruner`` entry as the pruner's name and its options: ``median``, ``none``, or
    ``{median: {option: value, ...}}`` over :data:`MEDIAN`."""
    if not isinstance(value, dict):
        if value not in PRUNERS:
            raise UserError(
                f"{sweep_file}: pruner must be one of {', '.join(PRUNERS)}, got {value!r}"
            )
        return value, dict(MEDIAN) if value == "median" else {}
    if list(value) != ["median"] or not isinstance(value["median"], dict | None):
        raise UserError(
            f"{sweep_file}: pruner must be median, none or {{median: {{option: value, ...}}}}, "
            f"got {value!r}"
        )
    options = value["median"] or {}
    unknown = sorted(options.keys() - MEDIAN.keys(), key=str)
    if unknown:
        raise UserError(
            f"{sweep_file}: pruner: median: unknown option {unknown[0]!r} ({', '.join(MEDIAN)})"
        )
    for name, number in options.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < LEAST[name]:
            raise UserError(
                f"{sweep_file}: pruner: median: {name} must be a whole number of at least "
                f"{LEAST[name]}, got {number!r}"
            )
    return "median", {**MEDIAN, **options}


def resolve_config(value: Any, sweep_file: Path) -> Path:
    """The base experiment's file: absolute, or relative to where the command runs or to the
    repository root."""
    if not isinstance(value, str) or not value:
        raise UserError(f"{sweep_file}: config must name the base experiment's YAML, got {value!r}")
    path = Path(value)
    for candidate in (path, Path.cwd() / path, REPO / path):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"{sweep_file}: config {value}: no such file")


def load(path: Path, trials: int | None = None) -> Sweep:
    """Read the sweep file at ``path``; ``trials`` overrides its ``trials``."""
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as error:
        raise UserError(located(str(path.resolve()), error)) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a sweep file is a mapping of {', '.join(REQUIRED)}, ...")
    missing = [key for key in REQUIRED if key not in raw]
    unknown = sorted(raw.keys() - {*REQUIRED, *OPTIONAL})
    if missing or unknown:
        what = f"missing {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        raise UserError(f"{path}: {what} (keys: {', '.join([*REQUIRED, *OPTIONAL])})")
    settings = {**OPTIONAL, **raw}
    for key, allowed in (("direction", DIRECTIONS), ("sampler", SAMPLERS)):
        if settings[key] not in allowed:
            raise UserError(
                f"{path}: {key} must be one of {', '.join(allowed)}, got {settings[key]!r}"
            )
    count = settings["trials"] if trials is None else trials
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise UserError(f"{path}: trials must be a positive integer, got {count!r}")
    args = settings["args"]
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise UserError(f"{path}: args must be a list of command-line arguments, got {args!r}")
    space = settings["space"]
    if not isinstance(space, dict) or not space:
        raise UserError(f"{path}: space must map CLI keys to choices or ranges, got {space!r}")
    population = population_size(settings["population"], f"{path}: population")
    pruner, pruner_options = pruning(settings["pruner"], path)
    metric = settings["metric"]
    if not isinstance(metric, str):
        raise UserError(f"{path}: metric must name a logged scalar, got {metric!r}")
    sweep = Sweep(
        name=path.stem,
        path=path.resolve(),
        config=resolve_config(settings["config"], path),
        metric=metric,
        direction=settings["direction"],
        trials=count,
        sampler=settings["sampler"],
        pruner=pruner,
        pruner_options=pruner_options,
        args=tuple(str(a) for a in args),
        population=population,
        space={
            str(key).removeprefix("--"): dimension(str(key).removeprefix("--"), value)
            for key, value in space.items()
        },
    )
    if sweep.sampler == "grid":
        for dim in sweep.space.values():
            dim.grid()  # a float range is refused here
    return sweep
