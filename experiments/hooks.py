"""Callbacks and the LightningModule are called only on the per-batch hooks they implement.

The Trainer calls every callback on every hook, whether the callback overrides it or not: six
hooks per training step (batch start and end, before and after backward, before the optimiser
step and before ``zero_grad``), two per evaluation step. A fit has eight callbacks, of which
three act on a training step, so some forty-five calls a step run ``Callback``'s empty methods,
each wrapped in the profiler's context and named for it. Measured on a bare Trainer with the
``mlp_classification`` workload, seven such callbacks cost about 0.1 ms of a 1.5 ms step. The
LightningModule is called on the same six training hooks; as empty methods of
``LightningModule`` they cost about 18 µs a step.

Lightning skips a hook whose attribute is not callable (the ``callable(fn)`` tests in
``_call_callback_hooks`` and ``_call_lightning_module_hook`` of
``lightning.pytorch.trainer.call``), so a per-batch hook inherited unchanged from the base class
is set to ``None`` on the instance. Hooks that the class (or any class between it and the base)
overrides are untouched, and so are all the once-per-epoch or once-per-run hooks, whose calls
cost nothing that matters.

The LightningModule keeps its evaluation batch hooks: before an evaluation loop runs, Lightning
reads their signatures (to check their ``dataloader_idx`` argument), which a ``None`` has not.
"""

from collections.abc import Iterable

from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Callback

TRAINING_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
BATCH_HOOKS = (
    *TRAINING_HOOKS,
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def unused_hooks(instance: object, base: type, hooks: Iterable[str]) -> list[str]:
    """Those of ``hooks`` that ``instance`` inherits unchanged from ``base``."""
    return [
        hook
        for hook in hooks
        if hook not in vars(instance) and getattr(type(instance), hook) is getattr(base, hook)
    ]


def skip_unused_batch_hooks(callbacks: Iterable[Callback], module: LightningModule) -> None:
    """Make the Trainer pass over empty per-batch hooks (see the module doc)."""
    for callback in callbacks:
        for hook in unused_hooks(callback, Callback, BATCH_HOOKS):
            setattr(callback, hook, None)
    for hook in unused_hooks(module, LightningModule, TRAINING_HOOKS):
        setattr(module, hook, None)
