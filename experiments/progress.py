"""A progress bar that costs nothing next to a training step.

Lightning's ``TQDMProgressBar`` redraws the bar and its metrics after every batch (it forces a
tqdm refresh, bypassing tqdm's own limit of ten redraws a second). For the small networks a
redraw costs more than the step it reports. :class:`ProgressBar` restores tqdm's limit: a bar
is redrawn when ``min_interval`` seconds have passed since its last redraw and at its last batch,
so what the terminal shows is the same, only redrawn less often.
"""

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` redrawn at most every ``min_interval`` seconds.

    Args:
        min_interval: Least time between two redraws of a bar, in seconds.
        refresh_rate: As for ``TQDMProgressBar``: redraw at most every this many batches.
        process_position: As for ``TQDMProgressBar``.
        leave: As for ``TQDMProgressBar``.
    """

    def __init__(
        self,
        min_interval: float = 0.1,
        refresh_rate: int = 1,
        process_position: int = 0,
        leave: bool = False,
    ) -> None:
        super().__init__(refresh_rate, process_position, leave)
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval!r}")
        self.min_interval = min_interval
        self._drawn: dict[str, float] = {}

    def _due(self, bar: str, done: int, total: float) -> bool:
        now = time.monotonic()
        if done >= total or now - self._drawn.get(bar, -float("inf")) >= self.min_interval:
            self._drawn[bar] = now
            return True
        return False

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._drawn.pop("train", None)
        super().on_train_epoch_start(trainer, *args)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._due("train", batch_idx + 1, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        total = self.total_val_batches_current_dataloader
        if self._due("val", batch_idx + 1, total):
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due("test", batch_idx + 1, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due("predict", batch_idx + 1, self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )
