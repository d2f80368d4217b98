"""A run's directory: claimed atomically when the run starts, trained by one process at a time.

Runs live in ``<root>/lightning_logs/<experiment>/version_<n>/`` (the layout is
:mod:`experiments.runpath`'s).

Lightning's ``TensorBoardLogger`` names a new run ``max(version_N) + 1`` from a listing and
creates the folder later, so runs started together share a directory (Lightning issue #12679,
closed as won't fix). Here a new run claims ``version_<n>`` with an exclusive ``mkdir``, which
exactly one process wins, on a local disk and on NFS alike; a loser lists again and tries the
next number.

While a process trains a run it holds an exclusive ``flock`` on the run's ``run.lock`` file, and
writes its host and pid into the file for others to read. A second writer is refused at once.
The kernel drops the lock when the process ends, however it ends (SIGKILL, an OOM kill, a power
cut on a local disk), so nothing is left to clean up by hand. On NFS the client turns ``flock``
into a lock held by the server (NFSv4, or v3 with its lock manager): it holds across machines,
and the server frees it when the holder's lease runs out. A mount with ``nolock`` or
``local_lock=all`` keeps locks on each machine, and two machines could then both train a run.
"""

import fcntl
import os
import socket
import time
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from experiments.atomic import write_atomically
from experiments.errors import UserError
from experiments.runpath import RunPath, version_numbers

RUN_LOGGER = "experiments.rundir.RunLogger"


def claim_version(experiment_dir: Path) -> int:
    """Create the next ``version_<n>`` directory in ``experiment_dir`` and return ``n``.

    ``mkdir`` fails for every process but one when several try the same name, so each caller
    gets a directory of its own; a loser lists again and goes on from the new highest number.
    """
    experiment_dir.mkdir(parents=True, exist_ok=True)
    while True:
        taken = version_numbers(experiment_dir)
        number = max(taken) + 1 if taken else 0
        try:
            RunPath.of(experiment_dir, number).directory.mkdir()
        except FileExistsError:
            continue
        return number


class RunBusyError(UserError):
    """Another process trains the run."""


class RunLock:
    """The exclusive right to train the run in ``run``; refused with a one-line error if held.

    Args:
        run: The run directory (``.../version_<n>``); it must exist.
    """

    def __init__(self, run: Path) -> None:
        self.run = run
        handle = os.open(RunPath(run).lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 200).decode(errors="replace").split()
            os.close(handle)
            who = f"process {holder[1]} on {holder[0]}" if len(holder) == 2 else "another process"
            raise RunBusyError(
                f"{run} is being trained by {who}: one process at a time trains a run; wait for "
                "it to end (or stop it), then resume"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._handle: int | None = handle

    @classmethod
    def attempt(cls, run: Path) -> "RunLock | None":
        """The lock of ``run`` if no other process holds it, else ``None``."""
        try:
            return cls(run)
        except RunBusyError:
            return None

    def release(self) -> None:
        """Let another process train the run (the kernel also does this when the process ends)."""
        if self._handle is not None:
            os.close(self._handle)  # closing the file drops its flock
            self._handle = None


def lock_run(trainer: Trainer) -> RunLock | None:
    """In the first process, claim the run (a new one now, by asking for its directory) and
    the right to train it; the other data-parallel processes write nothing of their own."""
    logger = trainer.logger
    if trainer.is_global_zero and isinstance(logger, RunLogger):
        return RunLock(Path(logger.log_dir))
    return None


class RunLogger(TensorBoardLogger):
    """The TensorBoard logger of a run: claims a new run's directory, flushes when due.

    A new run's ``version_<n>`` is claimed with :func:`claim_version` when the run directory is
    first asked for, by the first process only. After every batch of values it logs, Lightning
    asks the logger to ``save()``, which for TensorBoard flushes the event file: with a
    ``flush_interval`` that happens only when so many seconds have passed since the last flush
    (and when the run ends), so TensorBoard still shows the curves live, that much late.

    Args:
        version: The run's version: given for a run that exists, ``None`` for a new one.
        flush_interval: Least time between two flushes of the event file, in seconds.
        **kwargs: As for ``TensorBoardLogger``.
    """

    def __init__(
        self, *args, version: int | str | None = None, flush_interval: float = 0.0, **kwargs
    ) -> None:
        super().__init__(*args, version=version, **kwargs)
        self._run_version = version
        self.flush_interval = flush_interval
        self._flushed = -float("inf")

    @property
    def version(self) -> int | str:
        """The run's version: given (a run that exists), or claimed on first use (a new run)."""
        if self._run_version is None:
            experiment_dir = Path(self.root_dir)
            if rank_zero_only.rank == 0:
                self._run_version = claim_version(experiment_dir)
            else:
                # Other data-parallel processes never create a run: wherever they need the run
                # directory, Lightning broadcasts the first process's (trainer.log_dir, the
                # checkpoint directory). This is only a stand-in.
                return max(version_numbers(experiment_dir), default=0)
        return self._run_version

    @rank_zero_only
    def save(self) -> None:
        now = time.monotonic()
        if now - self._flushed >= self.flush_interval:
            self._flushed = now
            super().save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._flushed = -float("inf")  # the last save is never skipped
        super().finalize(status)


class StepPointEveryEpoch(Callback):
    """Where the user set no ``log_every_n_steps``, lowers Lightning's default of 50 to the
    number of training batches of an epoch where that is smaller, so that the curves of a small
    data set still get a point per epoch at the step level; a value the user set is kept."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        batches = trainer.num_training_batches
        if batches != float("inf") and 0 < batches < trainer.log_every_n_steps:
            trainer.log_every_n_steps = int(batches)


def log_with_run_logger(trainer: Namespace, save_dir: Path, experiment: str, **run: int) -> None:
    """Make the Trainer's logger in ``trainer`` (its config) a :class:`RunLogger` of the
    experiment's runs under ``save_dir`` (the run's ``version`` and ``purge_step`` given in
    ``run``), unless the user chose a logger of their own or none."""
    ours = isinstance(trainer.logger, Namespace) and trainer.logger.class_path == RUN_LOGGER
    if trainer.logger is None or trainer.logger is True or ours:
        logger_args = {"save_dir": str(save_dir), "name": experiment, "default_hp_metric": False}
        trainer.logger = Namespace(class_path=RUN_LOGGER, init_args=Namespace(**logger_args, **run))


# The Trainer's limits that a resumed fit may raise: the run is then trained that far.
LIMITS = ("max_epochs", "max_steps")


class KeepExistingConfig(SaveConfigCallback):
    """Saves ``config.yaml`` into a new run; a resumed or evaluated run keeps the one it has,
    but for the limits (:data:`LIMITS`) of a fit that trains the run further."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir  # a broadcast from the first process: every process asks
        exists = trainer.is_global_zero and (Path(log_dir) / self.config_filename).is_file()
        if trainer.strategy.broadcast(exists):
            self.already_saved = True
            if stage == "fit" and trainer.is_global_zero:
                self.raise_limits(Path(log_dir) / self.config_filename)
            return
        # What the data found in its file (the classes of a classification, the feature
        # columns) is part of the run's config: later commands read it from there.
        saved = self.config = self.config.clone()  # what is saved, not what the CLI runs on
        recorded = getattr(trainer.datamodule, "recorded_arguments", dict)()
        for key, value in recorded.items():
            saved[f"data.init_args.{key}"] = value
        # The config is what the run is, not where it was written or what it started from:
        # the CLI fills the logger in for every command, and the checkpoint comes from the
        # command line ("--config <run>/config.yaml" then works for any command).
        logger = saved.get("trainer.logger")
        if isinstance(logger, Namespace) and logger.get("class_path") == RUN_LOGGER:
            saved["trainer.logger"] = None
        if "ckpt_path" in saved:
            saved["ckpt_path"] = None
        if trainer.is_global_zero:
            # As SaveConfigCallback.setup writes it (skip_none=False), but without checking the
            # config against the parser again: it was checked when parsed, and a check costs
            # as much as the dump itself (0.14 s, a tenth of a small run's in-process fit).
            text = self.parser.dump(saved, skip_none=False, skip_validation=True)
            Path(log_dir).mkdir(parents=True, exist_ok=True)  # no event written yet
            write_atomically(Path(log_dir) / self.config_filename, text)
            self.save_config(trainer, pl_module, stage)
        self.already_saved = trainer.strategy.broadcast(True)

    def raise_limits(self, path: Path) -> None:
        """Write this fit's limits into the run's ``config.yaml`` where they differ, so that
        the config says how far the run was trained (for the runs table, TensorBoard's
        hyperparameters, and ``--config <run>/config.yaml``)."""
        saved = yaml.safe_load(path.read_text())
        trainer = saved.get("trainer") if isinstance(saved, dict) else None
        if not isinstance(trainer, dict):
            return
        given = {key: self.config.get(f"trainer.{key}") for key in LIMITS}
        changed = {key: value for key, value in given.items() if trainer.get(key) != value}
        if changed:
            trainer.update(changed)
            write_atomically(path, yaml.safe_dump(saved, sort_keys=False))
