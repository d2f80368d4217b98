"""What a run prints while it trains, for a person reading a terminal or a log file.

* :class:`EpochLines` replaces the progress bar where the output is not a terminal (a log file,
  a scheduler's job, CI): one plain line per epoch instead of a bar redrawn after every batch,
  which fills a log with hundreds of lines of carriage returns.
* :class:`Summary` is Lightning's model summary without its FLOPs column and total, which are
  all zeros unless a model sets ``example_input_array`` (none here does).
"""

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from experiments.tables import summary_table

# Lightning's own logger for its summary: it prints at INFO level, and users who quiet
# Lightning's logging quiet this too.
log = logging.getLogger("lightning.pytorch.callbacks.model_summary")


class QuietAboutSummary(logging.Filter):
    """Drops Lightning's note that the Trainer "already" has a summary when it is this one.

    Lightning adds its own summary only where the callbacks hold none, and says so at INFO
    level when they do (``_configure_model_summary_callback``): a line about a choice the
    user never made.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{__name__}.Summary" not in str(record.msg)


# Every rank_zero_info of Lightning goes through this logger.
RANK_ZERO_LOG = logging.getLogger("lightning.pytorch.utilities.rank_zero")
RANK_ZERO_LOG.addFilter(QuietAboutSummary())


def is_terminal(*streams: TextIO) -> bool:
    """Whether every stream is a terminal (a redirected or closed one is not)."""
    try:
        return all(stream.isatty() for stream in streams)
    except (AttributeError, ValueError):
        return False


def output_is_terminal() -> bool:
    """Whether a progress bar would be seen on a terminal: stdout and stderr (where tqdm draws)."""
    return is_terminal(sys.stdout, sys.stderr)


def format_value(value: Any) -> str:
    """A metric as a short number: four significant digits."""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


class EpochLines(ProgressBar):
    """Progress as one line per training epoch: epoch, step, the bar's metrics, seconds.

    The metrics are those a progress bar shows (logged with ``prog_bar=True``), at the epoch's
    level: a metric logged per step and per epoch shows its epoch value under its own name.
    A line is written once the epoch's metrics are final, which is after its last hook, so it
    is printed when the next epoch starts or training ends. Validation, test and predict print
    no lines: their metrics come in the run's summary.

    Args:
        stream: Where the lines go; standard output if not given.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self._enabled = True
        self._started = 0.0
        self._seconds: float | None = None  # the pending line's epoch took this long
        self._shown = True  # whether the pending line is to be written
        self._last_epoch_first: LastEpochFirst | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning says "`Trainer.fit` stopped: `max_epochs=N` reached." once the last epoch
        # is over, before any hook that comes after it: the epoch's line goes first.
        self._last_epoch_first = LastEpochFirst(lambda: self._write_last(trainer, pl_module))
        RANK_ZERO_LOG.addFilter(self._last_epoch_first)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_pending(trainer, pl_module)
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The epoch's metrics are reduced after the last on_train_epoch_end hook: wait for them.
        self._seconds = time.monotonic() - self._started
        self._shown = self.shown(trainer.current_epoch, trainer.max_epochs)

    @staticmethod
    def shown(epoch: int, max_epochs: int | None) -> bool:
        """Whether an epoch gets a line: every one of a run up to 100 epochs; of a longer run,
        the first, every ``max_epochs / 100``-th (rounded up) and the last, about 100 lines.
        The last epoch trained always gets one, also when a signal or a callback stops the run
        early."""
        if not max_epochs or max_epochs <= 100:
            return True
        every = -(-max_epochs // 100)
        return epoch == 0 or (epoch + 1) % every == 0 or epoch + 1 == max_epochs

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_last(trainer, pl_module)
        self.teardown(trainer, pl_module, "fit")

    def _write_last(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._shown = True
        self._write_pending(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._last_epoch_first is not None:
            RANK_ZERO_LOG.removeFilter(self._last_epoch_first)
            self._last_epoch_first = None

    def _write_pending(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds, self._seconds = self._seconds, None
        if seconds is None or not self._shown or not self._enabled:
            return
        line = self.line(trainer, pl_module, seconds)
        self.print(line, file=self.stream or sys.stdout, flush=True)

    def line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, seconds: float) -> str:
        """The line for the epoch just finished: ``trainer.current_epoch`` is already past it."""
        # Numbered from 0, as Lightning numbers them in checkpoint names and in its bar.
        parts = [f"epoch {trainer.current_epoch - 1}", f"step {trainer.global_step}"]
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for name, value in sorted(metrics.items()):
            if name.endswith("_step") and f"{name[:-5]}_epoch" in metrics:
                continue  # one batch's value, beside the epoch's
            parts.append(f"{name.removesuffix('_epoch')} {format_value(value)}")
        parts.append(f"{seconds:.2f} s")
        return "  ".join(parts)


class LastEpochFirst(logging.Filter):
    """Calls ``before`` when Lightning logs that ``fit`` stopped, and lets the record through."""

    def __init__(self, before: Callable[[], None]) -> None:
        super().__init__()
        self.before = before

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("`Trainer.fit` stopped"):
            self.before()
        return True


class Summary(ModelSummary):
    """Lightning's model summary, printed without an all-zero FLOPs column and total."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        counted = bool(total_flops)
        columns = [(name, values) for name, values in summary_data if counted or name != "FLOPs"]
        frozen = total_parameters - trainable_parameters
        totals = [
            (get_human_readable_count(trainable_parameters), "Trainable params"),
            (get_human_readable_count(frozen), "Non-trainable params"),
            (f"{model_size:,.3f}", "Total estimated model params size (MB)"),
            (
                f"{total_training_modes.get('train', 0)} / {total_training_modes.get('eval', 0)}",
                "Modules in train / eval mode",
            ),
        ]
        if counted:
            totals.append((get_human_readable_count(total_flops), "Total FLOPs"))
        lines = [f"{value:<10}{label}" for value, label in totals]
        log.info("\n%s\n%s", summary_table(columns), "\n".join(lines))
