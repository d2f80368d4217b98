"""Checkpoints that are complete, safe to load and reproducible to resume from.

Closes these Lightning 2.6 gaps:

* ``save_last=True`` writes ``last.ckpt`` only when a top-k checkpoint was written in the same
  step, so with a monitored metric ``last.ckpt`` lags behind the run (:class:`RunCheckpoint`);
* its file writer swallows a ``PermissionError`` (the save is silently skipped) and does not
  fsync, so a crash can leave a torn file (:class:`SafeCheckpointIO`);
* checkpoints store no random number generator state (:class:`RandomState`).
"""

import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from experiments.errors import UserError


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the newest weights.

    ``last.ckpt`` is written every ``every_n_epochs`` epochs, when the run stops and after its
    last epoch, whether or not the monitored metric improved.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

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


class SafeCheckpointIO(CheckpointIO):
    """Writes checkpoints atomically and reads them with ``weights_only=True`` only.

    A checkpoint is written to a temporary file in the target directory, flushed and fsynced,
    then renamed over the target, and the directory is fsynced: at any moment the target is the
    previous complete file or the new complete one. A failed write raises instead of passing.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        target = Path(path)
        partial = None
        try:
            # Serialised in memory first: torch's writer turns a failing write into an opaque
            # RuntimeError, a plain file write reports the system's reason (disk full, ...).
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(handle, "wb") as file:
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
            partial = None
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            raise UserError(
                f"could not save checkpoint {target}: {error.strerror or error}; training stopped",
                exit_code=1,
            ) from error
        finally:
            if partial is not None:
                Path(partial).unlink(missing_ok=True)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # Never weights_only=False: a checkpoint may come from anywhere.
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)


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
