"""Hook calls that do nothing, skipped; the hook name the Trainer records, set directly.

* :func:`skip_unused_batch_hooks`: the Trainer calls every callback on every hook, whether the
  callback overrides it or not: six hooks per training step (batch start and end, before and
  after backward, before the optimiser step and before ``zero_grad``), two per evaluation step.
  Measured on a bare Trainer with the ``mlp_classification`` workload, seven such callbacks
  cost about 0.1 ms of a 1.5 ms step. Lightning skips a hook whose attribute is not callable
  (the ``callable(fn)`` tests in ``_call_callback_hooks`` and ``_call_lightning_module_hook``
  of ``lightning.pytorch.trainer.call``), so a per-batch hook inherited unchanged from the base
  class is set to ``None`` on the instance. The LightningModule gets the same for its six
  training hooks (its evaluation batch hooks stay: before an evaluation loop Lightning reads
  their signatures, which a ``None`` has not). A ``ModelCheckpoint`` saving by epoch acts on no
  batch: its batch-end hook, which checks the step and time rules on every step, is skipped too.
* :func:`direct_hook_names`: around every hook call the Trainer sets the module's
  ``_current_fx_name``, some forty times a training step. ``nn.Module.__setattr__`` first checks
  whether the value is a parameter, buffer or submodule, about a tenth of a small network's
  step in all; this attribute is only ever a string or ``None``, so it is set directly.
"""

from collections.abc import Iterable
from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from experiments.fastpath.undo import Undo

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


def skip_unused_batch_hooks(callbacks: Iterable[Callback], module: LightningModule) -> Undo:
    """Make the Trainer pass over empty per-batch hooks (see the module doc)."""
    skipped: list[tuple[Any, str]] = []
    for callback in callbacks:
        hooks = unused_hooks(callback, Callback, BATCH_HOOKS)
        if isinstance(callback, ModelCheckpoint) and not (
            callback._every_n_train_steps >= 1 or callback._train_time_interval is not None
        ):
            hooks.append("on_train_batch_end")
        skipped += [(callback, hook) for hook in hooks]
    skipped += [(module, hook) for hook in unused_hooks(module, LightningModule, TRAINING_HOOKS)]
    for owner, hook in skipped:
        vars(owner)[hook] = None  # an instance attribute, past nn.Module's __setattr__

    def undo() -> None:
        for owner, hook in skipped:
            vars(owner).pop(hook, None)

    return undo


def direct_hook_names() -> Undo:
    """``LightningModule`` sets ``_current_fx_name`` without ``nn.Module``'s checks."""
    own = LightningModule.__dict__.get("__setattr__")

    def __setattr__(self: LightningModule, name: str, value: Any) -> None:  # noqa: N807
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            (own or nn.Module.__setattr__)(self, name, value)

    LightningModule.__setattr__ = __setattr__

    def undo() -> None:
        if own is None:
            del LightningModule.__setattr__
        else:
            LightningModule.__setattr__ = own

    return undo
