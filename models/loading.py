"""Loading a trained task from its checkpoint, in Python, ready to predict."""

import importlib
import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch import LightningModule


class CheckpointError(ValueError):
    """A file that is not a complete, safe checkpoint; the message names it and why."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def read_checkpoint(path: Path, file: IO[bytes]) -> dict[str, Any]:
    """The checkpoint in ``file`` (opened from ``path``), read with ``weights_only=True``.

    A file holding pickled code is refused before any of it runs; a file that is not a
    checkpoint, or a damaged one, raises :class:`CheckpointError` saying so in one line.
    """
    magic = file.read(4)
    # torch.save writes a zip archive; files from torch < 1.6 start with a pickle protocol byte
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":
        raise CheckpointError(f"{path}: not a checkpoint file (not in PyTorch's format)")
    file.seek(0)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(
                f"{path}: not a readable checkpoint ({first_line(error)})"
            ) from error
        raise CheckpointError(
            f"{path}: refused: it holds pickled code or objects, not only tensors and plain "
            "values; nothing in it was run"
        ) from error
    except Exception as error:  # torch reports damaged files with many exception types
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or damaged ({first_line(error)})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (it has no state_dict)")
    return checkpoint


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


def load_checkpoint_and_task(
    path: str | Path, map_location: Any = "cpu"
) -> tuple[dict[str, Any], LightningModule]:
    """The checkpoint at ``path`` (read once, with ``weights_only=True``) and its task, in
    evaluation mode; raises :class:`CheckpointError` for a file that is no safe checkpoint."""
    path = Path(path)
    data = path.read_bytes()
    checkpoint = read_checkpoint(path, io.BytesIO(data))
    check_importable(checkpoint.get("hyper_parameters", {}), path)
    task = LightningModule.load_from_checkpoint(
        io.BytesIO(data), map_location=map_location, weights_only=True
    )
    return checkpoint, task.eval()


def load_task(path: str | Path, map_location: Any = "cpu") -> LightningModule:
    """The task saved in the checkpoint at ``path``, with its network, in evaluation mode.

    The checkpoint is read with ``weights_only=True`` (tensors and plain values only). The
    task is returned in evaluation mode, as predictions need: a loaded module is in training
    mode, where dropout and batch norm would act. It takes inputs as the network was trained
    on them (standardised, for a run on a file of your own): :func:`models.load_predictor`
    takes raw inputs.
    """
    return load_checkpoint_and_task(path, map_location)[1]
