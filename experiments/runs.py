"""``python -m experiments.runs``: the runs under ``lightning_logs/`` as a table, to compare them.

For every ``<experiment>/version_<n>`` directory it reads the TensorBoard event files and shows
when the run started, how long it trained, the epochs trained, the best ``val/loss`` and the
main metric (accuracy for classification, R² for regression) at its best epoch and on the test
split when the run was tested, and what stopped a run early and after which epoch
(``EarlyStopping@7``). Then come the settings, from each run's ``config.yaml``, that differ
between the listed runs of one experiment: a GRU run and an LSTM run of ``recurrent`` show a
``network.cell`` column. A long value is shortened (``[30: width, heigh…]``); the run's
``config.yaml`` holds it whole.
"""

import ast
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.errors import OneLineParser, UserError, exit_status, reader_gone
from experiments.runpath import RunPath, all_runs
from experiments.settings import HParam, flat_settings
from experiments.tables import table

MAIN_METRICS = ("acc", "r2")
# What the report writes into the hyperparameters tab about an early stop.
STOPPED_BY, STOPPED_AT = "stopped_by", "stopped_early_after_epoch"
Scalars = dict[str, list[tuple[int, float]]]
WIDEST = 20  # characters of a setting's value in the table; the table fits 100-120 columns


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
    started: float | None = None  # seconds since the epoch, when the run's first process began
    seconds: float | None = None  # time spent training, over all its processes


def timing(events: Any, directory: Path) -> tuple[float | None, float | None]:
    """When the run started, and how long its processes wrote, from its event files: each
    process (the first, and each resume) writes a file named for the time it opened it, and
    its last event is when it last wrote. The time between a stop and a resume is not counted."""
    opened = sorted(event_file_order(path)[0] for path in directory.glob("events.out.tfevents.*"))
    opened = [moment for moment in opened if moment > 0]
    if not opened:
        return None, None
    last: dict[int, float] = {}  # by the time its process opened its file: its last event
    for tag in events.Tags().get("scalars", []):
        for event in events.Scalars(tag):
            began = max((m for m in opened if m <= event.wall_time + 1), default=opened[0])
            last[began] = max(last.get(began, 0.0), event.wall_time)
    seconds = sum(max(0.0, end - began) for began, end in last.items())
    return float(opened[0]), seconds if last else None


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
    started, seconds = timing(events, directory)
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
        started=started,
        seconds=seconds,
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


def brief(value: HParam) -> str:
    """A setting's value in at most :data:`WIDEST` characters: a long list by its length and
    first items (``[30: width, heigh…]``), other long text cut with an ellipsis."""
    text = str(value)
    if len(text) <= WIDEST:
        return text
    try:
        items = ast.literal_eval(text) if text.startswith("[") else None
    except (ValueError, SyntaxError):
        items = None
    if isinstance(items, list):
        shown = f"[{len(items)}: {', '.join(str(item) for item in items)}"
        return shown[: WIDEST - 2] + "…]"
    return text[: WIDEST - 1] + "…"


def started_text(moment: float | None) -> str:
    """``12-06 16:22`` this year, ``2025-12-06`` for an earlier one: a narrow column."""
    if moment is None:
        return "-"
    local = time.localtime(moment)
    this_year = local.tm_year == time.localtime().tm_year
    return time.strftime("%m-%d %H:%M" if this_year else "%Y-%m-%d", local)


def duration_text(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_table(runs: Sequence[Run]) -> str:
    """The runs as aligned text columns, then a column per setting that differs."""

    def cell(value: float | int | None, digits: int = 4) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.{digits}f}"

    header = ["experiment", "version", "started", "took", "epochs", "best val/loss", "metric"]
    header += ["val at best", "test"]
    header.append("stopped")
    settings = differing(runs)
    header += settings
    rows = [
        [
            run.experiment,
            run.version,
            started_text(run.started),
            duration_text(run.seconds),
            cell(run.epochs),
            cell(run.best_val_loss),
            run.metric or "-",
            cell(run.best_epoch_metric),
            cell(run.test_metric),
            run.stopped or "-",
            *(brief(run.settings.get(name, "-")) for name in settings),
        ]
        for run in runs
    ]
    return table([header, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    # TensorBoard warns of "out of order" steps in every resumed run: there, the resumed run's
    # event file hides what the interrupted one logged past its checkpoint, on purpose.
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    parser = OneLineParser(prog="python -m experiments.runs", description=__doc__)
    parser.add_argument("--root", default="lightning_logs", help="the log directory to list")
    parser.add_argument("experiments", nargs="*", help="only these experiments")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        return exit_status(UserError(f"--root {root}: no such log directory"))
    listed = [
        run for run in all_runs(root) if not args.experiments or run.experiment in args.experiments
    ]
    text = format_table([read_run(run.directory) for run in listed]) if listed else None
    try:
        print(text or f"No runs under {root}.", flush=True)
    except BrokenPipeError:
        return reader_gone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
