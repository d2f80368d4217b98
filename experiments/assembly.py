"""What a run's Trainer is made of besides the user's own Trainer arguments.

* The user's callbacks come first, as given; then the project's: the random state kept in
  checkpoints, the stop at an epoch's end on Ctrl-C or SIGTERM, the check for a diverging loss;
  then the command line's groups: ``--checkpoint.*`` (unless the user turned checkpointing
  off), ``--figures.*``, and ``--predictions.*`` for ``predict`` only, where it acts.
* The crash-safe checkpoint writer joins the user's plugins.
"""

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback

from experiments.checkpoint import RandomState, SafeCheckpointIO
from experiments.interrupt import StopOnSignal
from experiments.sanity import FiniteLoss

# The command line's callback groups, and the subcommands each one joins (None: all of them).
GROUPS: dict[str, Sequence[str] | None] = {
    "checkpoint": None,
    "figures": None,
    "predictions": ("predict",),
}


def as_list(value: Any) -> list:
    """A Trainer argument that may be one object, a list of them, or nothing, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def callbacks(
    subcommand: str,
    trainer_config: dict[str, Any],
    groups: dict[str, Callback],
    stop_on_signal: StopOnSignal,
) -> list[Callback]:
    """The callbacks of the run's Trainer, in the order the module doc gives."""
    chosen = [RandomState(), stop_on_signal, FiniteLoss()]
    for name, callback in groups.items():
        if GROUPS[name] is not None and subcommand not in GROUPS[name]:
            continue
        if name == "checkpoint" and trainer_config.get("enable_checkpointing") is False:
            continue  # the Trainer refuses to start with a checkpoint callback and this setting
        chosen.append(callback)
    return [*as_list(trainer_config.get("callbacks")), *chosen]


def plugins(trainer_config: dict[str, Any], writer: SafeCheckpointIO) -> list[Any]:
    """The user's Trainer plugins and the crash-safe checkpoint writer."""
    return [*as_list(trainer_config.get("plugins")), writer]
