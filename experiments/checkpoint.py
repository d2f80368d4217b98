"""Checkpoints that are complete, safe to load and reproducible to resume from.

Closes these Lightning 2.6 gaps:

* ``save_last=True`` writes ``last.ckpt`` only when a top-k checkpoint was written in the same
  step, so with a monitored metric ``last.ckpt`` lags behind the run (:class:`RunCheckpoint`);
* its file writer swallows a ``PermissionError`` (the save is silently skipped) and does not
  fsync, so a crash can leave a torn file; and it writes on the training thread
  (:class:`SafeCheckpointIO`);
* checkpoints store no random number generator state (:class:`RandomState`);
* a run resumed through its directory spelled otherwise (an absolute path after a relative
  one) forgets its best checkpoint and writes ``last-v1.ckpt`` (:class:`RunCheckpoint`).
"""

import io
import os
import random
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from experiments.atomic import partial_name, publish, write_atomically
from experiments.errors import UserError


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the newest weights.

    ``last.ckpt`` is written every ``every_n_epochs`` epochs, when the run stops and after its
    last epoch, whether or not the monitored metric improved. Lightning 2.6 writes it only in a
    step where a top-k checkpoint was written too, so with a monitored metric that stopped
    improving ``last.ckpt`` lags behind the run, and a resume would repeat epochs.

    No public hook tells a checkpoint callback to save its last file alone: the rule below
    reads ``ModelCheckpoint``'s own private decisions (whether to save at the training epoch's
    end, whether saving is skipped, the step last saved) so as to agree with them, and
    ``tests/test_checkpoint.py`` checks that they still exist as used here.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning reloads the best and top-k bookkeeping only when the saved dirpath is the
        # same string as now: a run trained as lightning_logs/... and continued through
        # /home/you/.../lightning_logs/... would forget its best checkpoint (the next epoch
        # becomes "best" however bad) and save a second last-v1.ckpt. It is the same directory
        # when the files it names are there: the paths are then spelled as now.
        saved = state_dict.get("dirpath")
        if saved and self.dirpath and saved != self.dirpath:
            state_dict = respelled(state_dict, saved, self.dirpath)
        super().load_state_dict(state_dict)

    def _save_last_if_behind(self, trainer: pl.Trainer) -> None:
        epoch = trainer.current_epoch + 1
        due = (
            epoch % max(self._every_n_epochs, 1) == 0
            or trainer.should_stop  # stopping (Ctrl-C, SIGTERM, early stop): save the newest
            or epoch >= (trainer.max_epochs or 0)
        )
        if (
            self.save_last
            and due
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_global_step_saved != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def respelled(state: dict[str, Any], saved: str, now: str) -> dict[str, Any]:
    """``ModelCheckpoint``'s saved state with its directory ``saved`` spelled as ``now``, if the
    two are one directory: the same run directory by name, holding the files the state names.
    Otherwise (a run moved elsewhere, another run) the state as it was."""
    old, new = Path(saved), Path(now)
    if old.parts[-2:] != new.parts[-2:]:  # version_<n>/checkpoints
        return state
    paths = [state.get("best_model_path"), state.get("last_model_path")]
    named = [Path(p) for p in [*paths, *state.get("best_k_models", {})] if p]
    if not named or any(p.parent != old or not (new / p.name).is_file() for p in named):
        return state

    def moved(path: Any) -> Any:
        return str(new / Path(path).name) if path and Path(path).parent == old else path

    state = dict(state, dirpath=now)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = moved(state[key])
    if "best_k_models" in state:
        state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
    return state


class SafeCheckpointIO(CheckpointIO):
    """Writes checkpoints atomically, off the training thread, and reads them with weights_only.

    A checkpoint is serialised in memory on the training thread (a consistent snapshot, in a
    millisecond or so for these networks). A single background thread then writes it to a
    temporary file in the target directory, fsyncs it, renames it over the target and fsyncs the
    directory: at any moment the target is the previous complete file or the new complete one.
    The disk work (about 10 ms a checkpoint here, more than a small network's epoch costs) no
    longer stalls training. Removals of old checkpoints queue behind the writes, so a new best
    checkpoint is on disk before the previous one goes. A failed write stops the run with the
    system's reason at the next save, load or the end of the run; reads wait for pending writes.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._preloaded: tuple[Path, dict[str, Any]] | None = None

    def preload(self, path: str | Path, checkpoint: dict[str, Any]) -> None:
        """Serve the next load of ``path`` from ``checkpoint``, already read and checked.

        The CLI reads the ``--ckpt_path`` file to check it before training; Lightning would read
        it again, and a run that is still training may have replaced that file in between.
        """
        self._preloaded = (Path(path).absolute(), checkpoint)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        self._raise_failures()
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self._submit(self._write, buffer, Path(path))

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        self.wait()
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is not None and preloaded[0] == Path(path).absolute():
            return preloaded[1]
        # Never weights_only=False: a checkpoint may come from anywhere.
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)

    def remove_checkpoint(self, path: str | Path) -> None:
        self._raise_failures()
        self._submit(Path(path).unlink, missing_ok=True)

    def copy_checkpoint(self, source: str | Path, path: str | Path) -> None:
        """Make ``path`` hold the checkpoint saved to ``source``, once that is written.

        ``path`` becomes a hard link to ``source``'s file (a copy where the file system has no
        hard links), atomically as a save is: removing or replacing ``source`` later leaves it
        intact.
        """
        self._raise_failures()
        self._submit(self._link, Path(source), Path(path))

    def teardown(self) -> None:
        self.wait()

    def wait(self) -> None:
        """Block until every queued write and removal is done; raise the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()  # wait, without raising yet: the rest must finish too
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for future in pending:
            if future.exception() is not None:
                self._fail(future.exception())

    def _submit(self, task: Any, *args: Any, **kwargs: Any) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending = [
            future for future in self._pending if not future.done() or future.exception()
        ]
        self._pending.append(self._executor.submit(task, *args, **kwargs))

    def _raise_failures(self) -> None:
        if any(future.done() and future.exception() for future in self._pending):
            self.wait()

    @staticmethod
    def _fail(error: BaseException) -> None:
        if isinstance(error, _WriteError):
            target, cause = error.args
            raise UserError(
                f"could not save checkpoint {target}: {cause.strerror or cause}; training stopped",
                exit_code=1,
            ) from cause
        raise error

    @staticmethod
    def _write(buffer: io.BytesIO, target: Path) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, buffer.getbuffer())
        except OSError as error:
            raise _WriteError(target, error) from error

    @staticmethod
    def _link(source: Path, target: Path) -> None:
        partial = partial_name(target)
        try:
            try:
                os.link(source, partial)
            except OSError:  # no hard links here (or across devices): copy the bytes instead
                shutil.copyfile(source, partial)
                with open(partial, "rb+") as file:
                    os.fsync(file.fileno())
            publish(partial, target)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise _WriteError(target, error) from error


class _WriteError(Exception):
    """A background checkpoint write failed: ``args`` are the target and the OSError."""


class RandomState(Callback):
    """Saves the global random number generators in the checkpoint and restores them on resume.

    Anything random during training (dropout, for one) then continues on resume exactly as in
    an uninterrupted run. Stored as tensors and plain values, so it loads with weights_only.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            # As a tensor: 625 separate ints would each be pickled, at every checkpoint.
            "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal.tolist()), gauss))
        kind, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
