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

Each patch, what it replaces and what it saves, per training step of ``mlp_classification``
at 5000 samples (about 0.9 ms with the fast path; each gain measured by switching that patch
alone off):

| patch | replaces | gain | upstream |
|---|---|---|---|
| ``results.RepeatedLog`` | ``LightningModule.log``'s checks, metadata and signature lookup on a repeated call | {log} | |
| ``results.short_result_moves`` | ``_ResultMetric.to``'s walk through a result already on the device | {moves} | #20388, PR #21769 |
| ``results.remembered_hook_signatures`` | the loops' ``inspect.getfullargspec`` of the step method before every step | {signatures} | |
| ``hooks.direct_hook_names`` | ``nn.Module.__setattr__`` for the hook name set around every hook call | {names} | |
| ``hooks.skip_unused_batch_hooks`` | calls of callbacks' and the module's empty per-batch hooks | {hooks} | |
| ``profiler.no_profiler`` | the default profiler's context manager around every hook call | {profiler} | |
| ``progress.throttled_bar`` | a progress-bar redraw (forced, twice) after every batch | {bar} | |
| ``checkpoint.link_last_to_best`` | a second serialisation of the same state as ``last.ckpt`` | 2.5 ms an epoch end | |
| ``RunLogger.flush_interval`` (public) | a flush of the event file after every logged batch of values | {flush} | |
"""

import sys
from collections.abc import Callable

import lightning
import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from experiments.checkpoint import SafeCheckpointIO
from experiments.fastpath import checkpoint, hooks, profiler, progress, results
from experiments.rundir import RunLogger

VERIFIED = ("2.6.6",)  # Lightning versions every patch was read against and tested on
FLUSH_INTERVAL = 1.0  # seconds between two flushes of TensorBoard's event file

Undo = Callable[[], None]


def verified() -> bool:
    """Whether the installed Lightning is one the fast path was verified on."""
    return lightning.__version__ in VERIFIED


def install(trainer: pl.Trainer, module: pl.LightningModule) -> Undo:
    """Install every patch for ``trainer`` training ``module``; return what removes them.

    On a Lightning version not in :data:`VERIFIED` nothing is installed, and the first
    process says so on stderr.
    """
    if not verified():
        if trainer.is_global_zero:
            print(
                f"fast path off: Lightning {lightning.__version__} is not a version it was "
                f"verified on ({', '.join(VERIFIED)}); training runs on plain Lightning",
                file=sys.stderr,
                flush=True,
            )
        return lambda: None
    undo = [
        results.short_result_moves(),
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
