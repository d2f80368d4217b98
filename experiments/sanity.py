"""Checks of a run's set-up that no single constructor can make, run before anything is written."""

import math
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback

from experiments.errors import UserError
from experiments.parser import network_refusal


def check_config(config: Namespace, linked: dict[str, str]) -> None:
    """Checks of the parsed config that no constructor makes, before anything is built."""
    trainer = config.trainer
    if trainer.max_epochs is not None and trainer.max_epochs != -1 and trainer.max_epochs <= 0:
        raise UserError(f"trainer.max_epochs must be a positive integer, got {trainer.max_epochs}")
    threads = config.get("threads")
    if isinstance(threads, int) and threads < 1:
        raise UserError(f"--threads must be a positive integer or auto, got {threads}")
    if config.get("weights_only") is False:
        raise UserError(
            "--weights_only false: checkpoints are only read with weights_only=True here "
            "(tensors and plain values), so a file holding pickled code is never run"
        )
    check_network_contract(config)
    check_linked_overrides(config, linked)


def check_network_contract(config: Namespace) -> None:
    """Refuse a network that cannot take the data's shapes, even one that would build without
    them (defaults for ``in_features`` and ``num_classes`` would train the wrong sizes)."""
    network = config.get("model.init_args.network")
    class_path = network.get("class_path") if isinstance(network, Namespace) else None
    refusal = network_refusal(class_path) if isinstance(class_path, str) else None
    if refusal is not None:
        raise UserError(refusal)


def check_linked_overrides(config: Namespace, linked: dict[str, str]) -> None:
    """Refuse a value given for an argument that the CLI links from the data."""
    for source, target in linked.items():
        value = config.get(target)
        if value is not None:
            raise UserError(
                f"{target} is linked from the data ({source}), so it cannot be set to {value!r}; "
                "change the data's own arguments (data.init_args.*) instead"
            )


def check_writable(root: Path) -> None:
    """Refuse a log directory that cannot be created or written, without creating anything."""
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write runs to {root}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write runs to {root}: {existing} is not writable")


def check_run(task: pl.LightningModule, data: Any, processes: int) -> None:
    """Checks of the built task and data: the network's outputs and the splits' sizes."""
    check_output_shape(task, data)
    for split, size in data.split_sizes().items():
        if size < processes:
            raise UserError(
                f"the {split} split has {size} samples, fewer than the {processes} "
                "data-parallel processes: use more samples or fewer devices"
            )


def check_output_shape(task: pl.LightningModule, data: Any) -> None:
    """Run the network on a dummy batch of the data's shape and check what the task needs."""
    input_shape = tuple(getattr(data, "input_shape", ()))
    if not input_shape:
        return
    network = getattr(task, "network", task)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            outputs = network(torch.zeros(2, *input_shape))
    except RuntimeError as error:
        raise UserError(
            f"the network {type(network).__name__} cannot take the data's samples of shape "
            f"{list(input_shape)}: {str(error).splitlines()[0]}"
        ) from error
    finally:
        network.train(was_training)
    expected = getattr(task, "num_classes", None) or getattr(data, "num_outputs", None)
    if expected is not None and tuple(outputs.shape) != (2, expected):
        needs = f"{expected} logits" if hasattr(task, "num_classes") else f"{expected} values"
        raise UserError(
            f"the network {type(network).__name__} gives outputs of shape "
            f"{list(outputs.shape[1:])} per sample, but {type(task).__name__} on this data "
            f"needs {needs} per sample"
        )


class FiniteLoss(Callback):
    """Stops training when the loss becomes NaN or infinite, saying where and why it may be."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        # Reading a loss on an accelerator waits for the device to finish the step, and with
        # several processes they must agree: there, check every log_every_n_steps steps and at
        # the end of each epoch (before its checkpoint), the same steps on every process.
        if (loss.device.type != "cpu" or trainer.world_size > 1) and not (
            trainer.global_step % max(trainer.log_every_n_steps, 1) == 0
            or batch_idx + 1 >= trainer.num_training_batches
        ):
            return
        value = loss.detach().float().item()
        finite = math.isfinite(value)
        if trainer.world_size > 1:
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        rates = [
            group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups
        ]
        if math.isfinite(value):  # finite here, not on another data-parallel process
            became = "nan or infinite on another process"
        else:
            became = "nan" if math.isnan(value) else str(value)
        raise UserError(
            f"training loss became {became} at step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}); the learning rate "
            f"{', '.join(f'{r:g}' for r in rates)} is probably too high: lower it "
            "(--model.init_args.optimizer.init_args.lr) and train again; the last checkpoint "
            "before this step is intact",
            exit_code=1,
        )
