"""The fast path: Lightning's per-step bookkeeping made cheap, through its private internals.

Lightning's loop costs a small network more than the network itself: it logs through several
layers of checks on every step, calls every callback on every hook whether it acts or not,
and redraws the progress bar after every batch. Everything in this package exists only to
make that cheaper, and changes no number a run computes: ``--fast_path false`` installs none of
it, and training gives the same weights and logged values bit for bit, only more slowly.

The patches reach into Lightning's private API, so they are installed only on the Lightning
versions they were verified on (:data:`VERIFIED`); on any other version the fast path stays
off and says so in one line. :func:`install` is the one entry point; it returns the function
that takes every patch away again.

Each patch, what it replaces, and what it saves per training step of ``mlp_classification``
at 1000 and 5000 samples: the fast path whole against the fast path without that patch
(``python -m benchmarks.fastpath --rounds 5 --epochs 8``, the median of 5 rounds of the
fastest epoch after the first, on this project's 2-core CPU machine, where runs differ by about
0.03 ms a step from noise). Whole, the fast path trains at 0.98 and 0.80 ms a step, plain
Lightning at 1.95 and 1.63.

| patch                                | replaces, on every step            | ms: 1000 | 5000 |
|--------------------------------------|------------------------------------|----------|------|
| ``results.cheap_logging``            | ``self.log``'s checks and walk [1] | 0.07     | 0.35 |
| ``results.remembered_hook_signatures`` | ``getfullargspec`` of the step   | 0.05     | 0.05 |
| ``hooks.direct_hook_names``          | ``nn.Module.__setattr__`` [2]      | 0.04     | 0.09 |
| ``hooks.skip_unused_batch_hooks``    | calls of empty per-batch hooks     | 0.08     | 0.08 |
| ``profiler.no_profiler``             | a context manager per hook call    | 0.06     | 0.06 |
| ``progress.throttled_bar``           | two forced bar redraws             | 0.16     | 0.22 |
| ``checkpoint.link_last_to_best`` [3] | a second ``last.ckpt`` write       | 0.06     | 0.05 |
| ``RunLogger.flush_interval`` [3]     | an event-file flush per log        | 0.03     | 0.04 |

[1] The walk that moves a logged result to the device it is on already is Lightning issue
#20388 (pull request #21769, not released). [2] For the hook name the Trainer sets around every
hook call. [3] Once per epoch, not per step; the flush interval is the logger's public argument,
set here so that plain Lightning flushes as it always does.
"""

import lightning
import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from experiments.checkpoint import SafeCheckpointIO
from experiments.fastpath import checkpoint, hooks, profiler, progress, results
from experiments.fastpath.undo import Undo, nothing
from experiments.rundir import RunLogger

VERIFIED = ("2.6.6",)  # Lightning versions every patch was read against and tested on
FLUSH_INTERVAL = 1.0  # seconds between two flushes of TensorBoard's event file


def verified() -> bool:
    """Whether the installed Lightning is one the fast path was verified on."""
    return lightning.__version__ in VERIFIED


def install(trainer: pl.Trainer, module: pl.LightningModule) -> Undo:
    """Install every patch for ``trainer`` training ``module``; return what removes them.

    On a Lightning version not in :data:`VERIFIED` nothing is installed, and the first
    process says so, among Lightning's own lines about the run.
    """
    if not verified():
        rank_zero_info(
            f"fast path off: Lightning {lightning.__version__} is not a version it was "
            f"verified on ({', '.join(VERIFIED)}); training runs on plain Lightning"
        )
        return nothing
    undo = [
        results.remembered_hook_signatures(),
        results.cheap_logging(module),
        hooks.direct_hook_names(),
        hooks.skip_unused_batch_hooks(trainer.callbacks, module),
        profiler.no_profiler(trainer),
        progress.throttled_bar(trainer),
    ]
    writer = trainer.strategy.checkpoint_io
    for callback in trainer.checkpoint_callbacks:
        if isinstance(writer, SafeCheckpointIO) and isinstance(callback, ModelCheckpoint):
            undo.append(checkpoint.link_last_to_best(callback, writer))
    for logger in trainer.loggers:
        if isinstance(logger, RunLogger):
            logger.flush_interval = FLUSH_INTERVAL

    def remove() -> None:
        for step in reversed(undo):
            step()

    return remove
