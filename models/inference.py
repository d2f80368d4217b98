"""A trained run in use: raw inputs in, answers in the user's terms out.

A run on a file of your own standardises the inputs, and may scale the regression targets,
with statistics fitted on its training split; they are kept in the checkpoint, with the data's
state (``datamodules.FileData.state_dict``). :class:`RawInputModel` puts that preprocessing
before the network and the output mapping (class probabilities, or values in the target's
units) after it, as one ``nn.Module``: the :class:`Predictor` answers with it, and
``python -m experiments export`` writes it out, so both answer as ``predict`` does.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.loading import load_checkpoint_and_task
from models.tasks import ClassificationTask, Task


class InputError(ValueError):
    """Inputs that do not fit the run: other columns, or another shape."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What a run did to its inputs and targets, and how its answers read.

    Attributes:
        input_shape: One sample's shape, as the network takes it.
        features: The input columns in order (a CSV run), or ``None``.
        classes: The class labels in index order (a classification), or ``None``.
        mean: Per-feature mean subtracted from the inputs, or ``None``.
        std: Per-feature standard deviation the inputs are divided by, or ``None``.
        target_mean: Mean of the scaled regression targets, or ``None``.
        target_std: Standard deviation of the scaled regression targets, or ``None``.
    """

    input_shape: tuple[int, ...]
    features: list[str] | None = None
    classes: list[Any] | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    target_mean: torch.Tensor | None = None
    target_std: torch.Tensor | None = None

    @classmethod
    def of_checkpoint(cls, checkpoint: dict[str, Any], task: Task) -> "Preprocessing":
        """The preprocessing a run's checkpoint records, for its ``task``."""
        state = data_state(checkpoint)
        network = checkpoint.get("hyper_parameters", {}).get("network") or {}
        shape = state.get("input_shape") or (network.get("init_args") or {}).get("input_shape")
        if shape is None:
            raise InputError("the checkpoint records no input shape for its network")
        classes = state.get("classes")
        if classes is None and isinstance(task, ClassificationTask):
            classes = list(range(task.num_classes))
        return cls(
            input_shape=tuple(shape),
            features=state.get("features") if state.get("named_features") else None,
            classes=classes,
            mean=state.get("mean"),
            std=state.get("std"),
            target_mean=state.get("target_mean"),
            target_std=state.get("target_std"),
        )


def data_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The state a file datamodule saved in the checkpoint (under its class's name), or ``{}``
    for generated data, which needs no preprocessing."""
    for value in checkpoint.values():
        if isinstance(value, dict) and "features" in value and "classes" in value:
            return value
    return {}


class RawInputModel(nn.Module):
    """The network between the run's preprocessing and its output mapping.

    Takes float32 inputs ``[N, *input_shape]`` as the data file holds them; returns class
    probabilities ``[N, classes]`` for a classification, values ``[N, outputs]`` in the
    target's own units for a regression.
    """

    def __init__(self, network: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.network = network
        self.classify = preprocessing.classes is not None
        self.standardize = preprocessing.mean is not None and preprocessing.std is not None
        self.unscale = preprocessing.target_mean is not None
        for name in ("mean", "std", "target_mean", "target_std"):
            value = getattr(preprocessing, name)
            if value is not None:
                self.register_buffer(name, value.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            x = (x - self.mean) / self.std
        outputs = self.network(x)
        if self.classify:
            return outputs.softmax(dim=1)
        if self.unscale:
            return outputs * self.target_std + self.target_mean
        return outputs


class Predictor:
    """A trained run's network that takes raw inputs and answers in the user's terms.

    Calling it gives the answers as a tensor (class probabilities, or values in the target's
    units); :meth:`predict` names them as ``predict`` does (``class`` labels, ``probability``
    and ``probabilities``, or ``prediction``).

    Attributes:
        task: The task as trained (its network takes standardised inputs).
        network: The plain ``nn.Module``.
        preprocessing: What the run did to its inputs and targets.
        model: The network with the preprocessing and output mapping, as exported.
    """

    def __init__(self, task: Task, preprocessing: Preprocessing) -> None:
        self.task = task.eval()
        self.network = task.network
        self.preprocessing = preprocessing
        self.model = RawInputModel(task.network, preprocessing).eval()

    @property
    def classes(self) -> list[Any] | None:
        """The class labels in index order; ``None`` for a regression."""
        return self.preprocessing.classes

    def inputs(self, raw: Any) -> torch.Tensor:
        """``raw`` as the float32 batch the model takes: a table (a pandas DataFrame or a dict
        of columns) with the run's feature columns, or an array ``[N, *input_shape]``."""
        features = self.preprocessing.features
        shape = self.preprocessing.input_shape
        if isinstance(raw, dict) or hasattr(raw, "columns"):
            if features is None:
                raise InputError(
                    "this run was not trained on named columns: give an array of shape "
                    f"[N, {', '.join(map(str, shape))}]"
                )
            raw = table_columns(raw, features)
        x = torch.from_numpy(np.array(raw, dtype=np.float32))
        if features is not None and x.dim() == 2 and x.shape[1] == len(features):
            x = x.reshape(len(x), *shape)  # rows of the feature columns, in their order
        if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
            wanted = f"[N, {', '.join(map(str, shape))}]"
            if features is not None and len(shape) > 1:
                wanted += f" or [N, {len(features)}]"
            raise InputError(f"inputs of shape {list(x.shape)}: this run takes {wanted}")
        return x

    def __call__(self, raw: Any) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.inputs(raw))

    def predict(self, raw: Any) -> dict[str, Any]:
        """The answers by name: ``class`` (labels), ``probability`` and ``probabilities`` for
        a classification, ``prediction`` for a regression."""
        answers = self(raw)
        if self.classes is None:
            return {"prediction": answers}
        probability, index = answers.max(dim=1)
        labels = [self.classes[i] for i in index.tolist()]
        return {"class": labels, "probability": probability, "probabilities": answers}


def table_columns(table: Any, features: Sequence[str]) -> np.ndarray:
    """The feature columns of a DataFrame or dict of columns, in the run's order, as float32."""
    import pandas as pd

    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    frame.columns = [str(name) for name in frame.columns]
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise InputError(
            f"the inputs lack the feature columns {missing} that the run was trained on; they "
            f"have {', '.join(frame.columns) or 'none'}"
        )
    values = frame[list(features)].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().to_numpy().nonzero()
    if len(bad[0]):
        row, column = int(bad[0][0]), features[int(bad[1][0])]
        given = frame[column].iloc[row]
        if pd.isna(given):  # NaN or None: as the CSV reader says it
            raise InputError(f"row {row}, column {column!r}: a missing value")
        raise InputError(f"row {row}, column {column!r}: {str(given)!r} is not a number")
    return values.to_numpy(dtype=np.float32)


def load_predictor(path: str | Path, map_location: Any = "cpu") -> Predictor:
    """A :class:`Predictor` for the checkpoint at ``path``, read with ``weights_only=True``
    (a file holding pickled code is refused, and nothing in it runs)."""
    checkpoint, task = load_checkpoint_and_task(path, map_location)
    return Predictor(task, Preprocessing.of_checkpoint(checkpoint, task))
