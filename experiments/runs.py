"""``python -m experiments.runs``: the runs under ``lightning_logs/`` as a table, to compare them.

For every ``<experiment>/version_<n>`` directory it reads the TensorBoard event files and shows
the epochs trained, the best ``val/loss`` and the main metric (accuracy for classification,
R² for regression) at its best epoch and on the test split when the run was tested, and what
stopped a run early and after which epoch (``EarlyStopping@7``). Then come the settings, from
each run's ``config.yaml``, that differ between the listed runs of one experiment: a GRU run
and an LSTM run of ``recurrent`` show a ``network.cell`` column.
"""

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.runpath import RunPath, all_runs
from experiments.settings import HParam, flat_settings
from experiments.tables import table

MAIN_METRICS = ("acc", "r2")
# What the report writes into the hyperparameters tab about an early stop.
STOPPED_BY, STOPPED_AT = "stopped_by", "stopped_early_after_epoch"
Scalars = dict[str, list[tuple[int, float]]]


def read_scalars(directory: Path) -> Scalars:
    """Every scalar series of a run directory, as TensorBoard reads it, in step order."""
    events = accumulator(directory)
    return {
        tag: sorted((e.step, e.value) for e in events.Scalars(tag))
        for tag in events.Tags().get("scalars", [])
    }


def accumulator(directory: Path) -> Any:
    """TensorBoard's reader of the event files in ``directory``, loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    # TensorBoard warns of every resumed run ("out of order event.step ... TensorFlow
    # restart") while it drops what the interrupted run logged after its checkpoint, which is
    # the reading wanted here; at the end of a fit that warning would only alarm.
    quiet = logging.getLogger("tensorboard")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        events.Reload()
    finally:
        quiet.setLevel(level)
    return events


def session_hparams(directory: Path) -> dict[str, HParam]:
    """The hyperparameters tab's values of a run, as last written (empty if it has none).

    TensorBoard keeps the first ones it reads in a directory; a resumed run writes new ones,
    so the event files are read from the newest back, to the first that holds any.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    for path in sorted(directory.glob("events.out.tfevents.*"), key=event_file_order, reverse=True):
        events = EventAccumulator(str(path), size_guidance={"scalars": 1})
        events.Reload()
        try:
            tags = events.PluginTagToContent(metadata.PLUGIN_NAME)
            content = tags[metadata.SESSION_START_INFO_TAG]
        except KeyError:  # TensorBoard's answer for a file without that plugin's data
            continue
        info = metadata.parse_session_start_info_plugin_data(content)
        return {
            name: getattr(value, value.WhichOneof("kind"))
            for name, value in info.hparams.items()
            if value.WhichOneof("kind")
        }
    return {}


def event_file_order(path: Path) -> tuple[int, int, int]:
    """``events.out.tfevents.<time>.<host>.<pid>.<n>``: written in order of time, then n."""
    parts = path.name.split(".")
    try:
        return int(parts[3]), int(parts[-1]), int(parts[-2])
    except (IndexError, ValueError):
        return 0, 0, 0


def read_settings(directory: Path) -> dict[str, HParam]:
    """The run's settings from its ``config.yaml`` (none if it has no readable one)."""
    try:
        config = yaml.safe_load(RunPath(directory).config.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return flat_settings(config) if isinstance(config, dict) else {}


@dataclass
class Run:
    """One run's figures, read from its event files."""

    experiment: str
    version: str
    epochs: int | None
    best_val_loss: float | None
    metric: str
    best_epoch_metric: float | None
    test_metric: float | None
    stopped: str | None = None
    settings: dict[str, HParam] = field(default_factory=dict)


def read_run(directory: Path) -> Run:
    """Summarise the run in ``directory`` (a ``version_<n>`` folder)."""
    events = accumulator(directory)
    run = RunPath(directory)
    tags = set(events.Tags().get("scalars", []))

    def values(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)] if tag in tags else []

    metric = next((m for m in MAIN_METRICS if f"val/{m}" in tags or f"test/{m}" in tags), "")
    trained = values("train/loss_epoch")  # one point per training epoch
    val_loss = values("val/loss")
    best_step, best_loss = min(val_loss, key=lambda sv: sv[1]) if val_loss else (None, None)
    at_best = dict(values(f"val/{metric}")).get(best_step) if metric else None
    test = values(f"test/{metric}") if metric else []
    hparams = session_hparams(directory)
    stopped = None
    if STOPPED_AT in hparams:
        stopped = f"{hparams.get(STOPPED_BY, 'early')}@{int(hparams[STOPPED_AT])}"
    return Run(
        experiment=run.experiment,
        version=str(run.version),
        epochs=len(trained) or None,
        best_val_loss=best_loss,
        metric=metric,
        best_epoch_metric=at_best,
        test_metric=test[-1][1] if test else None,
        stopped=stopped,
        settings=read_settings(directory),
    )


def differing(runs: Sequence[Run]) -> list[str]:
    """The settings whose values differ between runs of one experiment, in name order.

    A setting that only some runs have, with one value wherever it is, is left out: its
    parent differs and says it all (the ``callbacks`` a run added, the ``network`` class).
    """
    names: set[str] = set()
    for experiment in {run.experiment for run in runs}:
        group = [run.settings for run in runs if run.experiment == experiment]
        for name in set().union(*group):
            values = {str(settings[name]) for settings in group if name in settings}
            everywhere = all(name in settings for settings in group)
            if len(values) > 1 or (not everywhere and "." not in name):
                names.add(name)
    return sorted(names)


def format_table(runs: Sequence[Run]) -> str:
    """The runs as aligned text columns, then a column per setting that differs."""

    def cell(value: float | int | None, digits: int = 4) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.{digits}f}"

    header = ["experiment", "version", "epochs", "best val/loss", "metric", "val at best", "test"]
    header.append("stopped")
    settings = differing(runs)
    header += settings
    rows = [
        [
            run.experiment,
            run.version,
            cell(run.epochs),
            cell(run.best_val_loss),
            run.metric or "-",
            cell(run.best_epoch_metric),
            cell(run.test_metric),
            run.stopped or "-",
            *(str(run.settings.get(name, "-")) for name in settings),
        ]
        for run in runs
    ]
    return table([header, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    # TensorBoard warns of "out of order" steps in every resumed run: there, the resumed run's
    # event file hides what the interrupted one logged past its checkpoint, on purpose.
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m experiments.runs", description=__doc__)
    parser.add_argument("--root", default="lightning_logs", help="the log directory to list")
    parser.add_argument("experiments", nargs="*", help="only these experiments")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: no log directory at {root}", file=sys.stderr)
        return 1
    listed = [
        run for run in all_runs(root) if not args.experiments or run.experiment in args.experiments
    ]
    if not listed:
        print(f"No runs under {root}.")
        return 0
    print(format_table([read_run(run.directory) for run in listed]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
