"""The user's own data, whatever its format: what :class:`~datamodules.CsvData` (a CSV table)
and :class:`~datamodules.ArrayData` (NumPy arrays in an ``.npz`` file) share, so that either is
split, batched, resumed and sharded as the synthetic data are.

The file decides the number of samples and the shapes, which the CLI links into the network as
for generated data. In a classification the labels (strings or integers) become class indices
by the sorted list ``classes``; features can be standardised, with statistics fitted on the
training split only. Both are kept with the run: ``classes`` and ``features`` in its
``config.yaml`` (:meth:`FileData.recorded_arguments`), they and the statistics in its
checkpoints (:meth:`FileData.state_dict`), so validation, test and predict use the same, and a
checkpoint of other columns or classes is refused. ``predict_path`` names a file of new samples
(features only) for ``predict``.

The files are read when a shape fact is first asked for (as the CLI links them into the
network, before anything is trained or written); a file that cannot be used is refused in one
line naming it and what is wrong (:class:`DataFileError`).
"""

import dataclasses
import difflib
import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from datamodules.base import SplitDataModule, TensorBatches

Kind = Literal["regression", "classification"]
Label = str | int


class DataFileError(Exception):
    """A data file that cannot be used; the message names the file and what is wrong."""


def resolve(path: str) -> Path:
    """``path`` as a file: a plain path, or ``package:inside/it`` for a file an installed
    package ships (``sklearn:datasets/data/iris.csv``)."""
    package, colon, inside = path.partition(":")
    if colon and package.isidentifier() and not Path(path).exists():
        try:
            return Path(str(importlib.resources.files(package).joinpath(inside)))
        except ModuleNotFoundError:
            hint = (
                " (pip install -e '.[examples]' installs scikit-learn)"
                if package == "sklearn"
                else ""
            )
            raise DataFileError(
                f"{path}: there is no installed package {package!r}{hint}"
            ) from None
    return Path(path)


def existing(path: str) -> Path:
    """``path`` resolved (see :func:`resolve`), refused if it is missing or empty."""
    file = resolve(path)
    if not file.is_file():
        raise DataFileError(f"{path}: no such file")
    if file.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty")
    return file


def did_you_mean(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclasses.dataclass(frozen=True)
class FileContents:
    """What the data file (and the predict file) hold, read and checked once.

    Attributes:
        x: The features, float32 ``[N, ...]``.
        y: The targets: class indices for a classification, float32 ``[N, outputs]`` for a
            regression.
        classes: The labels in class-index order; ``None`` for a regression.
        predict_x: The predict file's features; ``None`` without a ``predict_path``.
        predict_rows: The numbers the predict file's samples have there.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[Label] | None
    predict_x: torch.Tensor | None = None
    predict_rows: list[int] = dataclasses.field(default_factory=list)


class FileData(SplitDataModule):
    """What :class:`CsvData` and :class:`ArrayData` share: classes, standardisation, predict.

    Args:
        path: The data file, as the user named it (see :func:`resolve`).
        kind: ``regression`` (numeric targets) or ``classification`` (labels).
        classes: The labels in class-index order; ``null``: the sorted labels of the file. Kept
            in the run's ``config.yaml``.
        standardize: Shift and scale each input feature by its mean and standard deviation on
            the training split.
        standardize_target: In a regression, train on targets shifted and scaled by their mean
            and standard deviation on the training split; the metrics, predictions and exports
            are in the target's own units. Ignored in a classification.
        predict_path: A file of new samples (without targets) for ``predict``; ``null``:
            ``predict`` uses the test split.
        **kwargs: The split and batching: ``val_fraction``, ``test_fraction``, ``batch_size``,
            ``seed``.
    """

    def __init__(
        self,
        path: str,
        kind: Kind = "regression",
        classes: list[Label] | None = None,
        standardize: bool = True,
        standardize_target: bool = True,
        predict_path: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in ("regression", "classification"):
            raise ValueError(f"kind must be one of ['classification', 'regression'], got {kind!r}")
        self.path = path
        self.kind = kind
        self.given_classes = classes
        self.standardize = standardize
        self.standardize_target = standardize_target
        self.predict_path = predict_path
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.target_mean: torch.Tensor | None = None
        self.target_std: torch.Tensor | None = None
        self.target_scale_restored = False  # from a checkpoint: kept, even as none
        # The files are read when a shape fact is first asked for, as the CLI links them into
        # the network: an error raised there reaches the CLI as it is, while one raised here
        # would come wrapped in jsonargparse's account of every type it tried.
        self._contents: FileContents | None = None

    @property
    def contents(self) -> FileContents:
        """The files' contents, read on first use."""
        if self._contents is None:
            self.read_files()
        return self._contents

    def read_files(self) -> None:
        """Read the data file (and the predict file), checking both."""
        x, labels = self.read()
        if self.kind == "classification":
            classes, y = self.encode(labels, self.given_classes)
        else:
            classes, y = None, labels
        # Kept before the checks, which ask for the number of samples and the input shape;
        # dropped again if a check fails, so that the next question reads the files anew.
        self._contents = FileContents(x, y, classes)
        try:
            self.check_split_sizes()
        except ValueError as error:
            self._contents = None
            raise DataFileError(f"{self.path}: {error}") from None
        if self.predict_path is not None:
            try:
                predict_x, predict_rows = self.read_predict(self.predict_path)
            except DataFileError:
                self._contents = None
                raise
            self._contents = dataclasses.replace(
                self._contents, predict_x=predict_x, predict_rows=predict_rows
            )

    @property
    def classes(self) -> list[Label] | None:
        """The labels in class-index order; ``None`` for a regression."""
        return self.contents.classes

    # What subclasses provide ----------------------------------------------------------------

    def read(self) -> tuple[torch.Tensor, np.ndarray | torch.Tensor]:
        """The features (float32 ``[N, ...]``) and the targets: numbers for a regression,
        labels (a NumPy array) for a classification."""
        raise NotImplementedError

    def read_predict(self, path: str) -> tuple[torch.Tensor, list[int]]:
        """The features of the samples in ``path``, and the numbers the samples have there."""
        raise NotImplementedError

    def feature_names(self) -> list[str]:
        """Names of the input features, to tell checkpoints of other columns apart."""
        raise NotImplementedError

    index_name = "index"  # the name of the predictions' first column
    named_features = False  # whether the features are columns a table names

    # Labels ---------------------------------------------------------------------------------

    def encode(
        self, labels: np.ndarray, classes: list[Label] | None
    ) -> tuple[list[Label], torch.Tensor]:
        """The classes and each sample's class index."""
        found = sorted({plain(label) for label in labels.tolist()}, key=sort_key)
        if classes is None:
            if len(found) < 2:
                raise DataFileError(
                    f"{self.path}: a classification needs at least 2 classes; the target "
                    f"has only {found!r}"
                )
            classes = found
        classes = [plain(label) for label in classes]
        position = {label: index for index, label in enumerate(classes)}
        unknown = [label for label in found if label not in position]
        if unknown:
            raise DataFileError(
                f"{self.path}: label {unknown[0]!r} is not one of the classes {classes}"
            )
        return classes, torch.tensor([position[plain(label)] for label in labels.tolist()])

    # Shape facts -----------------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return len(self.contents.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.contents.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.classes is not None else self.contents.y.shape[1]

    @property
    def num_classes(self) -> int:
        if self.classes is None:
            # No class count for a regression: the CLI then links none into the task.
            raise AttributeError("a regression has no classes")
        return len(self.classes)

    # Data ------------------------------------------------------------------------------------

    def load(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.contents.x, self.contents.y

    def prepare(self, splits: dict[str, TensorBatches]) -> dict[str, TensorBatches]:
        # The targets are served in their own units: the task scales them for its loss
        # (target_scale), so that metrics and predictions need no undoing.
        train_x, train_y = splits["train"].tensors
        fitted = self.target_mean is not None or self.target_scale_restored
        if self.kind == "regression" and self.standardize_target and not fitted:
            self.target_mean, self.target_std = mean_and_spread(train_y)
        if not self.standardize:
            return dict(splits)
        if self.mean is None or self.std is None:
            self.mean, self.std = mean_and_spread(train_x)
        return {
            name: TensorBatches(self.scaled(split.tensors[0]), *split.tensors[1:])
            for name, split in splits.items()
        }

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        if not self.standardize or self.mean is None or self.std is None:
            return x
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @property
    def target_scale(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The regression targets' mean and standard deviation that the loss scales them by;
        ``None`` where the targets are not scaled."""
        if self.target_mean is None or self.target_std is None:
            return None
        return self.target_mean, self.target_std

    def predict_data(self) -> TensorBatches:
        """The predict file's samples, scaled as in training; without one, the test split."""
        if self.contents.predict_x is None:
            return super().predict_data()
        return TensorBatches(self.scaled(self.contents.predict_x))

    def predict_index(self) -> tuple[str, list[int]] | None:
        """The predictions' first column: the samples' numbers in the predict file."""
        if self.contents.predict_x is None:
            return None
        return self.index_name, self.contents.predict_rows

    # Kept with the run -----------------------------------------------------------------------

    def recorded_arguments(self) -> dict[str, Any]:
        """Arguments found in the file, to write into the run's ``config.yaml``."""
        recorded: dict[str, Any] = {}
        if self.classes is not None:
            recorded["classes"] = list(self.classes)
        return recorded

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "features": self.feature_names(),
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "named_features": self.named_features,
        }
        if self.mean is not None and self.std is not None:
            state |= {"mean": self.mean.cpu(), "std": self.std.cpu()}
        if self.target_scale is not None:
            state |= {"target_mean": self.target_mean.cpu(), "target_std": self.target_std.cpu()}
        return state

    def mismatch(self, state: dict[str, Any]) -> str | None:
        """How a checkpoint's data state differs from this data, or ``None``."""
        if state.get("features") != self.feature_names():
            return (
                f"trained on the features {state.get('features')}, but {self.path} has "
                f"{self.feature_names()}"
            )
        if state.get("classes") != self.classes:
            trained = state.get("classes")
            return f"trained on the classes {trained}, but {self.path} has {self.classes}"
        return None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        reason = self.mismatch(state_dict)
        if reason is not None:
            raise DataFileError(f"the checkpoint was {reason}")
        # The statistics the run was trained with, whatever the file holds now; a checkpoint
        # from before targets were scaled has none for them, and its network predicts in the
        # target's units.
        self.target_mean = state_dict.get("target_mean")
        self.target_std = state_dict.get("target_std")
        self.target_scale_restored = True
        if "mean" in state_dict and "std" in state_dict:
            self.mean, self.std = state_dict["mean"], state_dict["std"]
            if self.raw_splits:
                self.splits = {}
                self.setup("fit")


def mean_and_spread(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and standard deviation; 1 where a column never varies, which is then
    only shifted."""
    spread = values.std(dim=0)
    return values.mean(dim=0), torch.where(spread > 0, spread, torch.ones(()))


def plain(label: Any) -> Label:
    """A label as a plain int or str (NumPy scalars become Python ones)."""
    if isinstance(label, bool | np.bool_):
        return int(label)
    if isinstance(label, int | np.integer):
        return int(label)
    if isinstance(label, float | np.floating) and float(label).is_integer():
        return int(label)
    return str(label)


def sort_key(label: Label) -> tuple[int, Any]:
    """Integers in their order, then strings in theirs."""
    return (0, label) if isinstance(label, int) else (1, str(label))
