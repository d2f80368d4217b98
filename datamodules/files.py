"""The user's own data: a CSV table (:class:`CsvData`) or NumPy arrays in an ``.npz`` file
(:class:`ArrayData`), split, batched, resumed and sharded as the synthetic data are.

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

import difflib
import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.base import SplitDataModule, TensorBatches, whole_batch

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


class FileData(SplitDataModule):
    """What :class:`CsvData` and :class:`ArrayData` share: classes, standardisation, predict.

    Args:
        kind: ``regression`` (numeric targets) or ``classification`` (labels).
        classes: The labels in class-index order; ``null``: the sorted labels of the file. Kept
            in the run's ``config.yaml``.
        standardize: Shift and scale each input feature by its mean and standard deviation on
            the training split.
        predict_path: A file of new samples (without targets) for ``predict``; ``null``:
            ``predict`` uses the test split.
        **kwargs: The split and batching: ``val_fraction``, ``test_fraction``, ``batch_size``,
            ``seed``.
    """

    def __init__(
        self,
        kind: Kind = "regression",
        classes: list[Label] | None = None,
        standardize: bool = True,
        predict_path: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in ("regression", "classification"):
            raise ValueError(f"kind must be one of ['classification', 'regression'], got {kind!r}")
        self.kind = kind
        self.given_classes = classes
        self.standardize = standardize
        self.predict_path = predict_path
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        # The files are read when a shape fact is first asked for, as the CLI links them into
        # the network: an error raised there reaches the CLI as it is, while one raised here
        # would come wrapped in jsonargparse's account of every type it tried.
        self.contents: tuple | None = None

    def read_files(self) -> None:
        """Read the data file (and the predict file) once, checking both."""
        if self.contents is not None:
            return
        x, labels = self.read()
        if self.kind == "classification":
            classes, y = self.encode(labels, self.given_classes)
        else:
            classes, y = None, labels
        predict_x, predict_rows = None, []
        self.contents = (x, y, classes, predict_x, predict_rows)
        try:
            self.check_split_sizes()
        except ValueError as error:
            self.contents = None
            raise DataFileError(f"{self.source}: {error}") from None
        if self.predict_path is not None:
            try:
                predict_x, predict_rows = self.read_predict(self.predict_path)
            except DataFileError:
                self.contents = None
                raise
            self.contents = (x, y, classes, predict_x, predict_rows)

    @property
    def x(self) -> torch.Tensor:
        self.read_files()
        return self.contents[0]

    @property
    def y(self) -> torch.Tensor:
        self.read_files()
        return self.contents[1]

    @property
    def classes(self) -> list[Label] | None:
        self.read_files()
        return self.contents[2]

    @property
    def predict_x(self) -> torch.Tensor | None:
        self.read_files()
        return self.contents[3]

    @property
    def predict_rows(self) -> list[int]:
        self.read_files()
        return self.contents[4]

    # What subclasses provide ----------------------------------------------------------------

    @property
    def source(self) -> str:
        """The data file, as the user named it (each subclass keeps it as ``path``)."""
        return self.path

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

    # Labels ---------------------------------------------------------------------------------

    def encode(
        self, labels: np.ndarray, classes: list[Label] | None
    ) -> tuple[list[Label], torch.Tensor]:
        """The classes and each sample's class index."""
        found = sorted({plain(label) for label in labels.tolist()}, key=sort_key)
        if classes is None:
            if len(found) < 2:
                raise DataFileError(
                    f"{self.source}: a classification needs at least 2 classes; the target "
                    f"has only {found!r}"
                )
            classes = found
        classes = [plain(label) for label in classes]
        position = {label: index for index, label in enumerate(classes)}
        unknown = [label for label in found if label not in position]
        if unknown:
            raise DataFileError(
                f"{self.source}: label {unknown[0]!r} is not one of the classes {classes}"
            )
        return classes, torch.tensor([position[plain(label)] for label in labels.tolist()])

    # Shape facts -----------------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.classes is not None else self.y.shape[1]

    @property
    def num_classes(self) -> int:
        if self.classes is None:
            # No class count for a regression: the CLI then links none into the task.
            raise AttributeError("a regression has no classes")
        return len(self.classes)

    # Data ------------------------------------------------------------------------------------

    def load(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y

    def prepare(self, splits: dict[str, TensorBatches]) -> dict[str, TensorBatches]:
        if not self.standardize:
            return dict(splits)
        if self.mean is None or self.std is None:
            train = splits["train"].tensors[0]
            self.mean = train.mean(dim=0)
            # A feature that never varies in training is left as it is, only shifted.
            self.std = torch.where(train.std(dim=0) > 0, train.std(dim=0), torch.ones(()))
        return {
            name: TensorBatches(self.scaled(split.tensors[0]), *split.tensors[1:])
            for name, split in splits.items()
        }

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        if not self.standardize or self.mean is None or self.std is None:
            return x
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_x is None:
            return super().predict_dataloader()
        data = TensorBatches(self.scaled(self.predict_x))
        return DataLoader(data, batch_size=self.batch_size or len(data), collate_fn=whole_batch)

    def predict_index(self) -> tuple[str, list[int]] | None:
        """The predictions' first column: the samples' numbers in the predict file."""
        if self.predict_x is None:
            return None
        return self.index_name, self.predict_rows

    # Kept with the run -----------------------------------------------------------------------

    def recorded_arguments(self) -> dict[str, Any]:
        """Arguments found in the file, to write into the run's ``config.yaml``."""
        recorded: dict[str, Any] = {}
        if self.classes is not None:
            recorded["classes"] = list(self.classes)
        return recorded

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"features": self.feature_names(), "classes": self.classes}
        if self.mean is not None and self.std is not None:
            state |= {"mean": self.mean.cpu(), "std": self.std.cpu()}
        return state

    def mismatch(self, state: dict[str, Any]) -> str | None:
        """How a checkpoint's data state differs from this data, or ``None``."""
        if state.get("features") != self.feature_names():
            return (
                f"trained on the features {state.get('features')}, but {self.source} has "
                f"{self.feature_names()}"
            )
        if state.get("classes") != self.classes:
            trained = state.get("classes")
            return f"trained on the classes {trained}, but {self.source} has {self.classes}"
        return None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        reason = self.mismatch(state_dict)
        if reason is not None:
            raise DataFileError(f"the checkpoint was {reason}")
        if "mean" in state_dict and "std" in state_dict:
            # The statistics the run was trained with, whatever the file holds now.
            self.mean, self.std = state_dict["mean"], state_dict["std"]
            if self.raw_splits:
                self.splits = {}
                self.setup("fit")


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


class CsvData(FileData):
    """A CSV table: some columns are the features, one or more the target.

    Args:
        path: The CSV file (compressed ones too, e.g. ``.csv.gz``), or ``package:path`` for a
            file an installed package ships, e.g. ``sklearn:datasets/data/iris.csv``.
        target: The target column, or a list of columns for a regression with several outputs.
        features: The input columns; ``null`` means every other column. Kept in the run's
            ``config.yaml``.
        columns: Names for the file's columns, for a file whose first line does not name them
            (that line is then skipped, unless ``header`` is false). A ``predict_path`` file
            with a header row names its own columns.
        header: Whether the file's first line is a header row.
        sample_shape: The shape of each row's features, e.g. ``[1, 8, 8]`` for rows of 64
            pixels; ``null`` keeps them a vector.
        **kwargs: ``kind``, ``classes``, ``standardize``, ``predict_path`` (a CSV file with the
            feature columns), and the split and batching, as for :class:`FileData`.
    """

    index_name = "line"  # predictions name each row by its line in the predict file

    def __init__(
        self,
        path: str,
        target: str | list[str],
        features: list[str] | None = None,
        columns: list[str] | None = None,
        header: bool = True,
        sample_shape: list[int] | None = None,
        **kwargs,
    ) -> None:
        self.path = path
        self.targets = [target] if isinstance(target, str) else list(target)
        self.features = features
        self.columns = columns
        self.header = header
        self.sample_shape = sample_shape
        if not self.targets:
            raise ValueError("target must name at least one column, got []")
        super().__init__(**kwargs)
        if len(self.targets) > 1 and self.kind == "classification":
            raise ValueError(f"a classification has one target column, got {self.targets}")

    def table(self, path: str, names: list[str] | None) -> "Any":
        """The file as a pandas DataFrame, refusing one that is missing, empty or ragged;
        ``names`` name its columns instead of its first line."""
        import pandas as pd

        file = existing(path)
        try:
            frame = pd.read_csv(
                file,
                header=0 if self.header else None,
                names=names,
                skip_blank_lines=False,  # rows keep their line numbers
            )
        except pd.errors.EmptyDataError:
            raise DataFileError(f"{path}: the file is empty") from None
        except pd.errors.ParserError as error:
            raise DataFileError(f"{path}: {ragged(error)}") from None
        except ValueError as error:  # pandas: names that do not fit the rows
            raise DataFileError(f"{path}: {str(error).strip().splitlines()[0]}") from None
        if frame.empty:
            raise DataFileError(f"{path}: the file has no rows of data")
        frame.columns = [str(name) for name in frame.columns]
        return frame

    def first_line(self) -> int:
        """The line number of the first row of data."""
        return 2 if self.header else 1

    def pick(self, frame: "Any", names: Sequence[str], path: str, what: str) -> None:
        for name in names:
            if name not in frame.columns:
                raise DataFileError(
                    f"{path}: no {what} column {name!r}{did_you_mean(name, frame.columns)}; its "
                    f"columns are {', '.join(frame.columns)}"
                )

    def numbers(self, frame: "Any", names: Sequence[str], path: str) -> np.ndarray:
        """``frame[names]`` as float32, refusing a missing value or a value that is no number."""
        import pandas as pd

        for name in names:
            column = frame[name]
            values = pd.to_numeric(column, errors="coerce")
            bad = values.isna().to_numpy().nonzero()[0]
            if len(bad):
                row = int(bad[0])
                line = row + self.first_line()
                if pd.isna(column.iloc[row]):
                    raise DataFileError(f"{path}: line {line}, column {name!r}: a missing value")
                raise DataFileError(
                    f"{path}: line {line}, column {name!r}: {column.iloc[row]!r} is not a number"
                )
            frame[name] = values
        return frame[list(names)].to_numpy(dtype=np.float32)

    def shaped(self, x: np.ndarray, path: str) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        if self.sample_shape is None:
            return tensor
        if int(np.prod(self.sample_shape)) != tensor.shape[1]:
            raise DataFileError(
                f"{path}: sample_shape {self.sample_shape} holds {int(np.prod(self.sample_shape))} "
                f"values, but there are {tensor.shape[1]} feature columns"
            )
        return tensor.reshape(len(tensor), *self.sample_shape)

    def read(self) -> tuple[torch.Tensor, np.ndarray | torch.Tensor]:
        frame = self.table(self.path, self.columns)
        self.pick(frame, self.targets, self.path, "target")
        if self.features is None:
            self.features = [name for name in frame.columns if name not in self.targets]
        self.pick(frame, self.features, self.path, "feature")
        if not self.features:
            raise DataFileError(f"{self.path}: no feature columns besides the target")
        x = self.shaped(self.numbers(frame, self.features, self.path), self.path)
        if self.kind == "classification":
            (name,) = self.targets
            labels = frame[name]
            missing = labels.isna().to_numpy().nonzero()[0]
            if len(missing):
                line = int(missing[0]) + self.first_line()
                raise DataFileError(f"{self.path}: line {line}, column {name!r}: a missing value")
            return x, labels.to_numpy()
        try:
            y = self.numbers(frame, self.targets, self.path)
        except DataFileError as error:
            raise DataFileError(f"{error} (the target of a regression must be numeric)") from None
        return x, torch.from_numpy(y)

    def read_predict(self, path: str) -> tuple[torch.Tensor, list[int]]:
        # A file of new rows names its columns in its header (``columns`` describes the
        # training file); without a header it has the training file's columns, or those less
        # the targets.
        names = None
        if not self.header and self.columns is not None:
            names = self.columns
        frame = self.table(path, names)
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise DataFileError(
                f"{path}: it lacks the feature columns {missing} of the training data "
                f"{self.path}; its columns are {', '.join(frame.columns)}"
            )
        x = self.shaped(self.numbers(frame, self.features, path), path)
        return x, list(range(self.first_line(), self.first_line() + len(frame)))

    def feature_names(self) -> list[str]:
        return list(self.features)

    def recorded_arguments(self) -> dict[str, Any]:
        return {"features": list(self.features), **super().recorded_arguments()}


def ragged(error: Exception) -> str:
    """pandas' message for a row of another length than the header, as one line."""
    import re

    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if found:
        expected, line, saw = found.groups()
        return f"line {line} has {saw} values, where the rows before have {expected}"
    return str(error).strip().splitlines()[-1]


class ArrayData(FileData):
    """NumPy arrays in an ``.npz`` file: inputs of any shape per sample, and their targets.

    Samples may be feature vectors (``[N, F]``, for the MLPs), images (``[N, C, H, W]``, for
    the CNN) or sequences (``[N, T, F]``, for the recurrent network).

    Args:
        path: The ``.npz`` file (``numpy.savez``), or ``package:path`` for one a package ships.
        x_key: The name of the inputs' array.
        y_key: The name of the targets' array: labels for a classification, numbers (``[N]``
            or ``[N, outputs]``) for a regression.
        **kwargs: ``kind``, ``classes``, ``standardize``, ``predict_path`` (an ``.npz`` file
            with an ``x_key`` array), and the split and batching, as for :class:`FileData`.
    """

    def __init__(self, path: str, x_key: str = "x", y_key: str = "y", **kwargs) -> None:
        self.path, self.x_key, self.y_key = path, x_key, y_key
        super().__init__(**kwargs)

    def arrays(self, path: str, keys: Sequence[str]) -> list[np.ndarray]:
        file = existing(path)
        try:
            archive = np.load(file, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DataFileError(f"{path}: not an .npz file of arrays ({error})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataFileError(f"{path}: a single array, not an .npz file of named arrays")
        with archive:
            for key in keys:
                if key not in archive.files:
                    raise DataFileError(
                        f"{path}: no array {key!r}{did_you_mean(key, archive.files)}; it holds "
                        f"{', '.join(archive.files) or 'none'}"
                    )
            return [archive[key] for key in keys]

    def inputs(self, x: np.ndarray, path: str) -> torch.Tensor:
        if x.ndim < 2 or len(x) == 0:
            raise DataFileError(
                f"{path}: {self.x_key!r} must hold one sample per row, got shape {list(x.shape)}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise DataFileError(f"{path}: {self.x_key!r} holds {x.dtype}, not numbers")
        missing = np.argwhere(~np.isfinite(x.astype(np.float64)))
        if len(missing):
            where = ", ".join(map(str, missing[0]))
            raise DataFileError(
                f"{path}: {self.x_key!r}[{where}] is {x[tuple(missing[0])]}: a missing or "
                "infinite value"
            )
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def read(self) -> tuple[torch.Tensor, np.ndarray | torch.Tensor]:
        x, y = self.arrays(self.path, [self.x_key, self.y_key])
        if len(x) != len(y):
            raise DataFileError(
                f"{self.path}: {self.x_key!r} has {len(x)} samples but {self.y_key!r} has {len(y)}"
            )
        inputs = self.inputs(x, self.path)
        if self.kind == "classification":
            if y.ndim != 1:
                raise DataFileError(
                    f"{self.path}: {self.y_key!r} must hold one label per sample, got shape "
                    f"{list(y.shape)}"
                )
            return inputs, y
        if not np.issubdtype(y.dtype, np.number):
            raise DataFileError(
                f"{self.path}: {self.y_key!r} holds {y.dtype}: the target of a regression must "
                "be numeric"
            )
        targets = y.reshape(len(y), -1).astype(np.float32)
        if not np.isfinite(targets).all():
            raise DataFileError(f"{self.path}: {self.y_key!r} has a missing or infinite value")
        return inputs, torch.from_numpy(targets)

    def read_predict(self, path: str) -> tuple[torch.Tensor, list[int]]:
        (x,) = self.arrays(path, [self.x_key])
        inputs = self.inputs(x, path)
        if tuple(inputs.shape[1:]) != self.input_shape:
            raise DataFileError(
                f"{path}: its samples have shape {list(inputs.shape[1:])}, but the training data "
                f"{self.path} has {list(self.input_shape)}"
            )
        return inputs, list(range(len(inputs)))

    def feature_names(self) -> list[str]:
        return [f"{self.x_key}{list(self.input_shape)}"]
