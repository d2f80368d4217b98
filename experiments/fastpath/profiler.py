"""The Trainer's profiler when none is asked for, at no cost per hook.

The Trainer wraps each hook it calls (a few dozen per training step, and one more per callback)
in ``profiler.profile(name)``. Without ``--trainer.profiler`` that is Lightning's
``PassThroughProfiler``, which records nothing but still builds a generator-based context
manager per call: about a tenth of a small network's training step in all. :class:`NoProfiler`
records nothing either and hands back one shared no-op context. ``--trainer.profiler simple``
(or ``advanced``, ``pytorch``) is left as it is.
"""

import contextlib
from contextlib import AbstractContextManager

import lightning.pytorch as pl
from lightning.pytorch.profilers import PassThroughProfiler

from experiments.fastpath.undo import Undo, nothing

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """``PassThroughProfiler`` without the per-call context manager."""

    def profile(self, action_name: str) -> AbstractContextManager:
        return _NOTHING


def no_profiler(trainer: pl.Trainer) -> Undo:
    """Use :class:`NoProfiler` where the trainer has Lightning's do-nothing profiler."""
    profiler = trainer.profiler
    if type(profiler) is not PassThroughProfiler:
        return nothing
    trainer.profiler = NoProfiler()

    def undo() -> None:
        trainer.profiler = profiler

    return undo
