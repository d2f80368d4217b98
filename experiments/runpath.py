"""Where a run's files are: the one place that knows the layout of the log directory.

```
<root>/lightning_logs/                  root: the Trainer's default_root_dir (log_root)
    <experiment>/                       the first config file's name, or --experiment
        version_<n>/                    one run (RunPath)
            config.yaml                 the run's resolved config
            run.lock                    held by the process that trains the run
            checkpoints/last.ckpt       the newest state
            checkpoints/best-*.ckpt     the best by the monitored metric
            events.out.tfevents.*       TensorBoard's
```

Lightning decides ``version_<n>`` and ``checkpoints/``; the project decides the rest. This module
imports nothing heavy: ``python -m experiments.runs`` uses it.
"""

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LOG_DIR_NAME = "lightning_logs"
CONFIG_FILE = "config.yaml"
LOCK_FILE = "run.lock"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST_PREFIX = "best-"
BEST_FILENAME = BEST_PREFIX + "{epoch}-{step}"  # ModelCheckpoint's name for the best checkpoint
VERSION = re.compile(r"version_(\d+)")


def log_root(default_root_dir: str | Path | None) -> Path:
    """``lightning_logs`` in the Trainer's ``default_root_dir``: every experiment's runs."""
    return Path(default_root_dir or ".") / LOG_DIR_NAME


def experiment_name(config_files: Sequence[object] | None, default: str) -> str:
    """The experiment a run belongs to: the stem of the first config file, or ``default``."""
    for path in config_files or ():
        return Path(str(path)).stem
    return default


@dataclass(frozen=True)
class RunPath:
    """A run's directory, ``.../<experiment>/version_<n>``, and where its files are in it.

    Args:
        directory: The run's directory, spelled as it is to be shown.
    """

    directory: Path

    @classmethod
    def of(cls, experiment_dir: Path, version: int) -> "RunPath":
        """The run ``version`` of the experiment in ``experiment_dir``."""
        return cls(experiment_dir / f"version_{version}")

    @classmethod
    def named(cls, directory: Path) -> "RunPath | None":
        """``directory`` as a run if its name is ``version_<n>``, else ``None``."""
        return cls(directory) if VERSION.fullmatch(directory.name) else None

    @classmethod
    def of_config(cls, path: Path) -> "RunPath | None":
        """The run whose ``config.yaml`` ``path`` is, or ``None`` for any other config file."""
        return cls.named(path.parent) if path.name == CONFIG_FILE else None

    @classmethod
    def of_checkpoint(cls, path: Path, resolve: bool = True) -> "RunPath | None":
        """The run whose checkpoints folder holds the file ``path`` (its directory resolved,
        or spelled as ``path`` is), or ``None`` for a file from anywhere else."""
        if path.parent.name != CHECKPOINTS:
            return None
        return cls.named((path.resolve() if resolve else path).parent.parent)

    def __str__(self) -> str:
        return str(self.directory)

    def __fspath__(self) -> str:
        return os.fspath(self.directory)

    @property
    def version(self) -> int:
        match = VERSION.fullmatch(self.directory.name)
        if match is None:
            raise ValueError(f"{self.directory} is not a run's directory (version_<n>)")
        return int(match.group(1))

    @property
    def experiment(self) -> str:
        return self.directory.parent.name

    @property
    def experiment_dir(self) -> Path:
        return self.directory.parent

    @property
    def logs(self) -> Path:
        """The ``lightning_logs`` directory that holds the run's experiment."""
        return self.experiment_dir.parent

    @property
    def root(self) -> Path:
        """The Trainer's ``default_root_dir`` of the run."""
        return self.logs.parent

    @property
    def config(self) -> Path:
        return self.directory / CONFIG_FILE

    @property
    def lock(self) -> Path:
        return self.directory / LOCK_FILE

    @property
    def checkpoints(self) -> Path:
        return self.directory / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    def best(self) -> Path | None:
        """The run's best checkpoint: the newest ``best-*.ckpt`` in its checkpoints folder."""
        found = self.checkpoints.glob(f"{BEST_PREFIX}*.ckpt")
        candidates = sorted(found, key=lambda p: p.stat().st_mtime)
        return candidates[-1] if candidates else None

    def checkpoint(self, which: str) -> Path | None:
        """The run's ``last.ckpt`` or best checkpoint (``which``), if it has one."""
        if which == "best":
            return self.best() or self.checkpoint("last")
        return self.last if self.last.is_file() else None


def runs_of(experiment_dir: Path) -> list[RunPath]:
    """The experiment's runs, newest (highest version) first."""
    try:
        names = os.listdir(experiment_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs = [RunPath(experiment_dir / name) for name in names if VERSION.fullmatch(name)]
    return sorted(runs, key=lambda run: run.version, reverse=True)


def version_numbers(experiment_dir: Path) -> list[int]:
    """The numbers of the ``version_<n>`` entries in ``experiment_dir`` (files too)."""
    return [run.version for run in runs_of(experiment_dir)]


def all_runs(logs: Path) -> list[RunPath]:
    """Every run directory under ``logs``, by experiment and then version."""
    runs = [RunPath.named(path) for path in logs.glob("*/version_*") if path.is_dir()]
    return sorted((run for run in runs if run), key=lambda run: (run.experiment, run.version))
