"""Ctrl-C and SIGTERM stop ``fit`` at the end of the current epoch, with a checkpoint.

Lightning 2.6 exits with status 0 on SIGTERM and, on Ctrl-C, stops mid-epoch without saving.
Here the first signal lets the running epoch finish (a few seconds for these networks), so the
checkpoint written at its end resumes exactly; the program then exits with 130 (SIGINT) or
143 (SIGTERM). A second signal stops at once, keeping the previous epoch's checkpoint: the CLI
then names that checkpoint and exits with the same status (Lightning's own handling of the
interrupt would exit with 1).
"""

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

SIGNALS = (signal.SIGINT, signal.SIGTERM)
SignalHandler = Callable[[int, FrameType | None], Any]


class StopOnSignal(Callback):
    """Turns SIGINT and SIGTERM during ``fit`` into a stop at the next epoch end.

    Args:
        pass_on: Also told of each signal, first: the handler of a caller that runs the CLI
            in-process (a sweep's worker, which then takes no further trial).
    """

    def __init__(self, pass_on: SignalHandler | None = None) -> None:
        self.pass_on = pass_on
        self.received: int | None = None
        self.forced: int | None = None  # a second signal, which stopped training at once
        self._previous: dict[int, Any] = {}
        self._trainer: pl.Trainer | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installs its own SIGTERM handler after on_fit_start (it would stop mid-epoch
        # and exit 0); replacing it here, for the duration of training, makes SIGTERM save,
        # stop cleanly and exit 143. Lightning restores the original handlers at teardown.
        if threading.current_thread() is not threading.main_thread():
            return
        self._trainer = trainer
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pass_on is not None:
            self.pass_on(signum, frame)
        if self.received is not None:
            self.forced = signum
            self._restore()
            raise KeyboardInterrupt
        self.received = signum
        if self._trainer is not None and self._trainer.is_global_zero:
            name = signal.Signals(signum).name
            print(
                f"\n{name} received: stopping after epoch {self._trainer.current_epoch} "
                "with a checkpoint (send it again to stop at once).",
                file=sys.stderr,
                flush=True,
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            # A signal may reach only some of the data-parallel processes (a SIGTERM to one
            # pid): all stop after the same epoch, or the rest would wait for them forever.
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
