"""The TensorBoard logger of a run: claims its run directory, flushes at most once a second.

A new run's ``version_<n>`` is claimed with an exclusive ``mkdir`` (:mod:`experiments.rundir`)
when the run directory is first asked for, by the first process only; Lightning's logger picks
the number from a listing and creates the folder later, so runs started together collided.

After every batch of values it logs, Lightning asks the logger to ``save()``, which for
TensorBoard flushes the event file and checks for its hparams file: several times an epoch,
costing the small networks a noticeable share of their training time. :class:`RunLogger`
flushes when a second has passed since its last flush, and when the run ends, so TensorBoard
still shows the curves live, at most a second late.
"""

import time
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from experiments.rundir import claim_version, version_numbers


class RunLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose ``save`` (a flush) runs at most every ``flush_interval`` s.

    Args:
        flush_interval: Least time between two flushes of the event file, in seconds.
        **kwargs: As for ``TensorBoardLogger``.
    """

    def __init__(
        self, *args, version: int | str | None = None, flush_interval: float = 1.0, **kwargs
    ) -> None:
        super().__init__(*args, version=version, **kwargs)
        self._run_version = version
        self.flush_interval = flush_interval
        self._flushed = -float("inf")

    @property
    def version(self) -> int | str:
        """The run's version: given (a resumed run), or claimed on first use (a new run)."""
        if self._run_version is None:
            experiment_dir = Path(self.root_dir)
            if rank_zero_only.rank == 0:
                self._run_version = claim_version(experiment_dir)
            else:
                # Other data-parallel processes never create a run: wherever they need the run
                # directory, Lightning broadcasts the first process's (trainer.log_dir, the
                # checkpoint directory). This is only a stand-in.
                taken = version_numbers(experiment_dir)
                return max(taken, default=0)
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
