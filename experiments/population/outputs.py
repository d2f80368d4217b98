"""What each member of a population leaves in its run directory, as a single run would.

* Its TensorBoard scalars, with a single run's tags at a single run's steps, in an event file
  of its own. The values are held and written once per epoch, all in one write, without the
  writer thread that TensorBoard's ``SummaryWriter`` starts for every file.
* Its checkpoints in the single-run format: the task's ``network.*`` weights, the optimizer's
  and the learning-rate scheduler's states as ``torch.optim`` holds them for one network, the
  Lightning loops and the hyperparameters, the data's state, and the state of the run's own
  callbacks (its checkpoint callback's best and last files, its random state), so that
  ``test --ckpt_path best`` evaluates it and ``fit --ckpt_path`` continues it alone, in its
  own run directory.
"""

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

from experiments.atomic import partial_name
from experiments.population.optim import member_scheduler_state

# Distinguishes the event files that one process opens in the same second.
_opened = 0


class MemberLog:
    """A member's event file: scalars held until :meth:`flush`, then written at once.

    Args:
        run: The member's run directory.
        purge_step: Where a run that had written before continues: TensorBoard hides what
            it wrote from this step on (as a resumed single run's logger does).
    """

    def __init__(self, run: Path, purge_step: int | None = None) -> None:
        global _opened
        _opened += 1
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = run / f"{name}.{_opened}"
        self.pending: list[Event] = [Event(wall_time=time.time(), file_version="brain.Event:2")]
        if purge_step is not None:
            start = SessionLog(status=SessionLog.START)
            self.pending.append(Event(wall_time=time.time(), step=purge_step, session_log=start))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Hold ``values`` (tag: number) at ``step``."""
        summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items()])
        self.pending.append(Event(wall_time=time.time(), step=step, summary=summary))

    def summary(self, step: int, summary: Any) -> None:
        """Hold a ready-made summary (the hyperparameters tab's)."""
        self.pending.append(Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        """Write what is held, in one append."""
        if not self.pending:
            return
        with self.path.open("ab") as file:
            writer = RecordWriter(file)
            for event in self.pending:
                writer.write(event.SerializeToString())
            writer.flush()
        self.pending = []


def hyperparameters(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The task's hyperparameters as a single run's checkpoint holds them."""
    model = resolved["model"]
    return {"_class_path": model["class_path"], **dict(model.get("init_args") or {})} | {
        "_instantiator": "lightning.pytorch.cli.instantiate_module"
    }


@dataclass(frozen=True)
class EpochPoint:
    """Where training stood at an epoch's end, as a single run's ``last.ckpt`` records it.

    A single run's checkpoint callback saves in ``on_train_epoch_end``, before Lightning counts
    the epoch as completed; a member's files are written later (after ``fit``, when it is
    pruned, when the run stops), so the point is taken at the epoch's end and kept.
    """

    epoch: int
    global_step: int
    loops: dict[str, Any]

    @classmethod
    def of(cls, trainer: pl.Trainer) -> "EpochPoint":
        """The Trainer's point now (called at an epoch's end)."""
        loops = {
            "fit_loop": trainer.fit_loop.state_dict(),
            "validate_loop": trainer.validate_loop.state_dict(),
            "test_loop": trainer.test_loop.state_dict(),
            "predict_loop": trainer.predict_loop.state_dict(),
        }
        return cls(trainer.current_epoch, trainer.global_step, loops)

    @classmethod
    def saved(cls, checkpoint: Mapping[str, Any]) -> "EpochPoint":
        """The point of a checkpoint written at an epoch's end (the population's own)."""
        return cls(checkpoint["epoch"], checkpoint["global_step"], checkpoint["loops"])


@dataclass(frozen=True)
class BestFile:
    """A member's best checkpoint: its file, the monitored value there, where it was."""

    path: Path
    score: float
    epoch: int


def checkpoint_callback_state(
    callback: ModelCheckpoint, directory: Path, best: BestFile | None, last: Path | None
) -> dict[str, Any]:
    """What ``callback`` (the run's, as its config builds it) holds in a single run's checkpoint
    whose best file is ``best`` and whose last save was ``last`` (``None``: none yet).

    As Lightning's ``ModelCheckpoint`` keeps it with one best file (``save_top_k: 1``, the
    project's policy): the score it last saved for is the best one.
    """
    score = None if best is None else torch.tensor(best.score, dtype=torch.float32)
    path = "" if best is None else str(best.path)
    return {
        "monitor": callback.monitor,
        "best_model_score": score,
        "best_model_path": path,
        "current_score": score,
        "dirpath": str(directory),
        "best_k_models": {} if best is None else {path: score},
        "kth_best_model_path": path,
        "kth_value": score if score is not None else callback.kth_value,
        "last_model_path": "" if last is None else str(last),
    }


def member_checkpoint(
    point: EpochPoint,
    weights: dict[str, torch.Tensor],
    trainer: pl.Trainer,
    member: int,
    resolved: Mapping[str, Any],
    callbacks: dict[str, Any],
    datamodule: Any = None,
) -> dict[str, Any]:
    """Member ``member``'s checkpoint in the single-run format, at ``point``: its optimizer's
    and scheduler's states as they are now for that member alone, the state of the run's
    callbacks (``callbacks``, by state key) and of its data."""
    schedulers = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
    checkpoint = {
        "epoch": point.epoch,
        "global_step": point.global_step,
        "pytorch-lightning_version": pl.__version__,
        "state_dict": weights,
        "loops": point.loops,
        "callbacks": callbacks,
        "optimizer_states": [trainer.optimizers[0].member_state_dict(member)],
        "lr_schedulers": [member_scheduler_state(state, member) for state in schedulers],
        # The task saves its hyperparameters without naming them, so Lightning writes None.
        "hparams_name": None,
        "hyper_parameters": hyperparameters(resolved),
    }
    state = datamodule.state_dict() if datamodule is not None else None
    if state:  # as Lightning keeps a datamodule's state: under its class's name, if any
        checkpoint[type(datamodule).__qualname__] = state
    return checkpoint


def write_text(path: Path, text: str) -> None:
    """Write a small text file whole or not at all, as :func:`save` writes a checkpoint."""
    partial = partial_name(path)
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def save(checkpoint: dict[str, Any], path: Path) -> None:
    """Write a checkpoint whole or not at all: written beside, then renamed over ``path``.

    Not flushed to the disk one by one (a population writes many small files an epoch): a
    power cut may lose the newest, never leave a torn one in its place on a journaling file
    system; the population's own checkpoint, which resumes it, is flushed.
    """
    partial = partial_name(path)
    try:
        torch.save(checkpoint, partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
