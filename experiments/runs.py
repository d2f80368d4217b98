"""``python -m experiments.runs``: the runs under ``lightning_logs/`` as a table, to compare them.

For every ``<experiment>/version_<n>`` directory it reads the TensorBoard event files and shows
the epochs trained, the best ``val/loss`` and the main metric (accuracy for classification,
R² for regression) at its best epoch and on the test split when the run was tested.
"""

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAIN_METRICS = ("acc", "r2")


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


def read_run(directory: Path) -> Run:
    """Summarise the run in ``directory`` (a ``version_<n>`` folder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags().get("scalars", []))

    def values(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in events.Scalars(tag)] if tag in tags else []

    metric = next((m for m in MAIN_METRICS if f"val/{m}" in tags or f"test/{m}" in tags), "")
    trained = values("train/loss_epoch")  # one point per training epoch
    val_loss = values("val/loss")
    best_step, best_loss = min(val_loss, key=lambda sv: sv[1]) if val_loss else (None, None)
    at_best = dict(values(f"val/{metric}")).get(best_step) if metric else None
    test = values(f"test/{metric}") if metric else []
    return Run(
        experiment=directory.parent.name,
        version=directory.name.removeprefix("version_"),
        epochs=len(trained) or None,
        best_val_loss=best_loss,
        metric=metric,
        best_epoch_metric=at_best,
        test_metric=test[-1][1] if test else None,
    )


def find_runs(root: Path) -> list[Path]:
    """Every ``<experiment>/version_<n>`` directory under ``root``, in a stable order."""

    def order(path: Path) -> tuple[str, int]:
        number = path.name.removeprefix("version_")
        return path.parent.name, int(number) if number.isdigit() else -1

    return sorted((p for p in root.glob("*/version_*") if p.is_dir()), key=order)


def format_table(runs: Sequence[Run]) -> str:
    """The runs as aligned text columns."""

    def cell(value: float | int | None, digits: int = 4) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.{digits}f}"

    header = ["experiment", "version", "epochs", "best val/loss", "metric", "val at best", "test"]
    rows = [
        [
            run.experiment,
            run.version,
            cell(run.epochs),
            cell(run.best_val_loss),
            run.metric or "-",
            cell(run.best_epoch_metric),
            cell(run.test_metric),
        ]
        for run in runs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.runs", description=__doc__)
    parser.add_argument("--root", default="lightning_logs", help="the log directory to list")
    parser.add_argument("experiments", nargs="*", help="only these experiments")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: no log directory at {root}", file=sys.stderr)
        return 1
    directories = [
        d for d in find_runs(root) if not args.experiments or d.parent.name in args.experiments
    ]
    if not directories:
        print(f"No runs under {root}.")
        return 0
    print(format_table([read_run(d) for d in directories]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
