"""NumPy arrays of the user's own data in an ``.npz`` file (:class:`ArrayData`)."""

from collections.abc import Sequence

import numpy as np
import torch

from datamodules.file_data import DataFileError, FileData, did_you_mean, existing


class ArrayData(FileData):
    """NumPy arrays in an ``.npz`` file: inputs of any shape per sample, and their targets.

    Samples may be feature vectors (``[N, F]``, for the MLPs), images (``[N, C, H, W]``, for
    the CNN) or sequences (``[N, T, F]``, for the recurrent network).

    Args:
        path: The ``.npz`` file (``numpy.savez``), or ``package:path`` for one a package ships.
        x_key: The name of the inputs' array.
        y_key: The name of the targets' array: labels for a classification, numbers (``[N]``
            or ``[N, outputs]``) for a regression.
        **kwargs: ``kind``, ``classes``, ``standardize``, ``standardize_target``,
            ``predict_path`` (an ``.npz`` file with an ``x_key`` array), and the split and
            batching, as for :class:`FileData`.
    """

    def __init__(self, path: str, x_key: str = "x", y_key: str = "y", **kwargs) -> None:
        super().__init__(path, **kwargs)
        self.x_key, self.y_key = x_key, y_key

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
