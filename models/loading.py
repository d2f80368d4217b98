"""Loading a trained task from its checkpoint, in Python, ready to predict."""

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule


def class_paths(value: Any) -> Iterator[str]:
    """Every ``class_path`` in a checkpoint's hyperparameters (the task's, its network's...)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("class_path", "_class_path") and isinstance(inner, str):
                yield inner
            else:
                yield from class_paths(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from class_paths(inner)


def check_importable(hyper_parameters: dict[str, Any], path: Path) -> None:
    """Raise ``ModuleNotFoundError`` naming the module of a class the checkpoint needs and Python
    cannot import here (a network of the user's own), and what to do about it."""
    for class_path in class_paths(hyper_parameters):
        module = class_path.rpartition(".")[0]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"{path} needs {class_path}, but Python cannot import the module {module!r} "
                f"here ({error}): put the folder that holds it on PYTHONPATH (for example "
                f"PYTHONPATH=path/to/folder python ...), or install the package it comes from",
                name=module,
            ) from None


def load_task(path: str | Path, map_location: Any = "cpu") -> LightningModule:
    """The task saved in the checkpoint at ``path``, with its network, in evaluation mode.

    The checkpoint is read with ``weights_only=True`` (tensors and plain values only). The
    task is returned in evaluation mode, as predictions need: a loaded module is in training
    mode, where dropout and batch norm would act.
    """
    path = Path(path)
    header = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    check_importable(header.get("hyper_parameters", {}), path)
    task = LightningModule.load_from_checkpoint(path, map_location=map_location)
    return task.eval()
