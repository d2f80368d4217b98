"""The run's checkpoint policy: the best checkpoint by a monitored metric, and a true last.ckpt."""

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the newest weights.

    In Lightning 2.6 ``save_last=True`` writes ``last.ckpt`` only in a step where a top-k
    checkpoint was written too; with ``monitor`` set, that is only when the metric improved, so
    ``last.ckpt`` silently lags behind the run. Here ``last.ckpt`` is written at every point
    where Lightning would consider saving (each validation, or each training epoch end when
    checkpoints are taken there), whether or not the monitored metric improved.
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
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_global_step_saved != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
