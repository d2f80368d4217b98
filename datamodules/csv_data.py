"""A CSV table of the user's own data (:class:`CsvData`): some columns are the features, one or
more the target; read with pandas."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from datamodules.file_data import DataFileError, FileData, did_you_mean, existing


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
        **kwargs: ``kind``, ``classes``, ``standardize``, ``standardize_target``,
            ``predict_path`` (a CSV file with the feature columns), and the split and batching,
            as for :class:`FileData`.
    """

    index_name = "line"  # predictions name each row by its line in the predict file
    named_features = True

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
        targets = [target] if isinstance(target, str) else list(target)
        if not targets:
            raise ValueError("target must name at least one column, got []")
        super().__init__(path, **kwargs)
        self.targets = targets
        self.features = features
        self.columns = columns
        self.header = header
        self.sample_shape = sample_shape
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
        if names is None and self.header:
            unnamed(file, frame.columns, path)
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
        # A copy: pandas may hand out a read-only view of its own block (copy-on-write), and
        # torch warns of a tensor over memory it must not write.
        return frame[list(names)].to_numpy(dtype=np.float32, copy=True)

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


def unnamed(file: "Any", columns: Sequence[Any], path: str) -> None:
    """Refuse a header row with a blank name (pandas would call it ``Unnamed: <n>``), so that no
    column trains under a name the user never wrote."""
    import pandas as pd

    names = [str(name) for name in columns]
    if any(name.startswith("Unnamed: ") for name in names):
        # pandas' names cannot tell a blank from a column truly called so: read the row itself.
        (row,) = pd.read_csv(file, header=None, nrows=1, dtype=str).to_numpy().tolist()
        names = ["" if pd.isna(name) else str(name) for name in row]
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise DataFileError(
                f"{path}: line 1: column {position} has no name; name every column in the "
                "header row"
            )


def ragged(error: Exception) -> str:
    """pandas' message for a row of another length than the header, as one line."""
    import re

    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if found:
        expected, line, saw = found.groups()
        return f"line {line} has {saw} values, where the rows before have {expected}"
    return str(error).strip().splitlines()[-1]
