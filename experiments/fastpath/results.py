"""``self.log`` at a fraction of its cost, with Lightning's own arithmetic.

Two costs of logging a value on every step, each removed without changing a logged number:

* :class:`RepeatedLog`: ``LightningModule.log`` validates its arguments, converts the value,
  builds a ``_Metadata`` and a ``_Sync``, compares them with the stored ones, looks up the
  training step's signature, and moves the stored result to the value's device through a walk
  that rebuilds the result's whole ``__dict__`` (Lightning issue #20388), on every call. A call
  that repeats the arguments of an earlier one for the same stored result needs none of that:
  it goes straight to the result's own update, the very function the full path ends in.
  Anything else (a first call, other arguments, a ``Metric``, several dataloaders) takes the
  full path.
* :func:`remembered_hook_signatures`: the training and evaluation loops inspect the step
  method's signature (``inspect.getfullargspec``) before every step to decide whether to pass
  ``batch_idx``. A function's signature does not change; it is read once.
"""

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loops import evaluation_loop, prediction_loop, training_epoch_loop
from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric
from lightning.pytorch.utilities import signature_utils

from experiments.fastpath.undo import Undo


class RepeatedLog:
    """A model's ``log``, taking a short path for a call that repeats an earlier one.

    The full path is ``LightningModule.log``. After it has stored a result for a name in a
    hook, a later call from the same hook with the same arguments and a one-element tensor of
    the same device is, in that full path, a reset check, a detach and the result's update;
    that is what the short path does, with the same Lightning functions.
    """

    def __init__(self, module: LightningModule) -> None:
        self.module = module
        # (hook, name) -> (the stored result, the arguments it was logged with)
        self.known: dict[tuple[str, str], tuple[_ResultMetric, tuple]] = {}

    def __call__(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        module = self.module
        trainer, fx = module._trainer, module._current_fx_name
        if (
            args  # the short path knows the arguments by name
            or kwargs.get("enable_graph")
            or trainer is None
            or fx is None
            or not isinstance(value, torch.Tensor)
        ):
            return LightningModule.log(module, name, value, *args, **kwargs)
        results = trainer._results
        arguments = kwargs
        known = self.known.get((fx, name))
        result = None if results is None else results.get(f"{fx}.{name}")
        if (
            known is None
            or result is not known[0]
            or known[1] != arguments
            or results.dataloader_idx is not None
            or value.numel() != 1
            or result.value.device != value.device
        ):
            LightningModule.log(module, name, value, *args, **kwargs)
            result = None if trainer._results is None else trainer._results.get(f"{fx}.{name}")
            if isinstance(result, _ResultMetric) and result.is_tensor:
                self.known[(fx, name)] = (result, arguments)
            return None
        connector = trainer._logger_connector
        if connector.should_reset_tensors(fx):
            results.reset(metrics=False, fx=fx)
        value = value.detach().squeeze()
        batch_size = results._extract_batch_size(result, kwargs.get("batch_size"), result.meta)
        results.update_metrics(f"{fx}.{name}", value, batch_size)
        connector._current_fx = fx
        return None


def cheap_logging(module: LightningModule) -> Undo:
    """Give ``module`` the short path of :class:`RepeatedLog`."""
    module.log = RepeatedLog(module)
    return lambda: vars(module).pop("log", None)


def remembered_hook_signatures() -> Undo:
    """The loops read each step method's signature once, not before every step."""
    inspect_every_time = signature_utils.is_param_in_hook_signature
    seen: dict[tuple, bool] = {}

    def is_param_in_hook_signature(
        hook_fx: Callable, param: str, explicit: bool = False, min_args: int | None = None
    ) -> bool:
        key = (getattr(hook_fx, "__func__", hook_fx), param, explicit, min_args)
        if key not in seen:
            seen[key] = inspect_every_time(hook_fx, param, explicit=explicit, min_args=min_args)
        return seen[key]

    loops = (training_epoch_loop, evaluation_loop, prediction_loop)
    for loop in loops:
        loop.is_param_in_hook_signature = is_param_in_hook_signature

    def undo() -> None:
        for loop in loops:
            loop.is_param_in_hook_signature = inspect_every_time

    return undo
