"""What a run's Trainer is made of besides the user's own Trainer arguments.

* The user's callbacks come first, as given; then the project's: the random state kept in
  checkpoints, the stop at an epoch's end on Ctrl-C or SIGTERM, the check for a diverging loss,
  unless the user set ``log_every_n_steps``, a logging interval no longer than an epoch, and,
  after a user's ``LearningRateFinder``, the rate it found put to use (experiments/lrfind.py);
  then the command line's groups: ``--checkpoint.*`` (unless the user turned checkpointing
  off), ``--figures.*``, and ``--predictions.*`` for ``predict`` only, where it acts; then,
  unless the user chose their own or turned them off, the model summary without its empty
  FLOPs column, and one line per epoch in place of the progress bar where the output is not
  a terminal (experiments/terminal.py).
* The crash-safe checkpoint writer joins the user's plugins.
"""

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback, LearningRateFinder, ModelSummary, ProgressBar

from experiments.checkpoint import RandomState, SafeCheckpointIO
from experiments.interrupt import StopOnSignal
from experiments.lrfind import UseFoundRate
from experiments.rundir import StepPointEveryEpoch
from experiments.sanity import FiniteLoss
from experiments.terminal import EpochLines, Summary, output_is_terminal

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
    if trainer_config.get("log_every_n_steps") is None:
        chosen.append(StepPointEveryEpoch())
    for name, callback in groups.items():
        if GROUPS[name] is not None and subcommand not in GROUPS[name]:
            continue
        if name == "checkpoint" and trainer_config.get("enable_checkpointing") is False:
            continue  # the Trainer refuses to start with a checkpoint callback and this setting
        chosen.append(callback)
    users = as_list(trainer_config.get("callbacks"))
    if subcommand == "fit" and any(isinstance(c, LearningRateFinder) for c in users):
        chosen.append(UseFoundRate())  # after the finder: the rate it found into the optimizer
    # Lightning adds its own summary and bar only where the callbacks hold none: these take
    # their places, and a user's own summary or bar is left to act alone.
    bare = bool(trainer_config.get("barebones"))  # Lightning refuses both there
    if (
        not bare
        and trainer_config.get("enable_model_summary") is not False
        and not any(isinstance(c, ModelSummary) for c in users)
    ):
        chosen.append(Summary())
    if (
        not bare
        and trainer_config.get("enable_progress_bar") is not False
        and not any(isinstance(c, ProgressBar) for c in users)
        and not output_is_terminal()
    ):
        chosen.append(EpochLines())
    return [*users, *chosen]


def plugins(trainer_config: dict[str, Any], writer: SafeCheckpointIO) -> list[Any]:
    """The user's Trainer plugins and the crash-safe checkpoint writer."""
    return [*as_list(trainer_config.get("plugins")), writer]
