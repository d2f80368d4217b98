"""The TensorBoard logger of a run, flushing its event file at most once a second.

After every batch of values it logs, Lightning asks the logger to ``save()``, which for
TensorBoard flushes the event file and checks for its hparams file: several times an epoch,
costing the small networks a noticeable share of their training time. :class:`RunLogger`
flushes when a second has passed since its last flush, and when the run ends, so TensorBoard
still shows the curves live, at most a second late.
"""

import time

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class RunLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose ``save`` (a flush) runs at most every ``flush_interval`` s.

    Args:
        flush_interval: Least time between two flushes of the event file, in seconds.
        **kwargs: As for ``TensorBoardLogger``.
    """

    def __init__(self, *args, flush_interval: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flush_interval = flush_interval
        self._flushed = -float("inf")

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
