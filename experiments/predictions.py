"""``predict`` writes its predictions as CSV into the run's directory."""

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from experiments.atomic import write_atomically


class PredictionWriter(BasePredictionWriter):
    """Writes one CSV row per predicted sample: its index, the prediction and the target.

    Classification rows hold the predicted class and its probability; regression rows the
    predicted value (one column per output). The file is written whole to a temporary name
    and then renamed, so an interrupted ``predict`` never leaves a half-written file.

    Args:
        filename: Name of the CSV file inside the run directory.
    """

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.filename = filename
        self.path: Path | None = None

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        index, columns = local_rows(predictions, batch_indices)
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            # Each process predicted its own shard (Lightning's sampler for predict repeats no
            # sample): gather the shards, then put the rows back in dataset order.
            shards: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(shards, (index, columns))
            shards = [shard for shard in shards if shard[0]]
            index = [i for shard_index, _ in shards for i in shard_index]
            columns = {
                name: torch.cat([shard_columns[name] for _, shard_columns in shards])
                for name in (shards[0][1] if shards else {})
            }
            order = sorted(range(len(index)), key=index.__getitem__)
            index = [index[i] for i in order]
            columns = {name: values[order] for name, values in columns.items()}
        # Every process asks: Lightning broadcasts the run directory from the first one.
        directory = Path(trainer.log_dir or ".")
        if not trainer.is_global_zero or not index:
            return
        index_name, numbers = "index", index
        described = getattr(trainer.datamodule, "predict_index", lambda: None)()
        if described is not None:  # the samples' own numbers in the predict file
            index_name, own = described
            numbers = [own[i] for i in index]
        classes = getattr(trainer.datamodule, "classes", None)
        header, rows = table(columns, numbers, index_name, classes)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.filename
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        write_atomically(self.path, text.getvalue())


def local_rows(
    predictions: Sequence[Any], batch_indices: Sequence[Any]
) -> tuple[list[int], dict[str, torch.Tensor]]:
    """This process's sample indices and prediction columns, from what Lightning collected."""
    if not predictions:
        return [], {}
    # One dataloader: Lightning hands over a list of batches and a list of their indices.
    batches = predictions[0] if isinstance(predictions[0], list) else predictions
    indices = (
        batch_indices[0]
        if batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], list)
        else batch_indices
    )
    columns = {name: torch.cat([b[name] for b in batches]).cpu() for name in batches[0]}
    size = len(next(iter(columns.values())))
    index = [int(i) for batch in indices for i in batch] if indices else list(range(size))
    return index, columns


def table(
    columns: dict[str, torch.Tensor],
    index: Sequence[int],
    index_name: str = "index",
    classes: Sequence[Any] | None = None,
) -> tuple[list[str], list[list]]:
    """CSV header and rows: the samples' numbers first, then the named values.

    A classification's ``class`` (and ``target``) are the classes' labels where the data has
    them (``classes``), else their indices; ``probabilities`` become one ``probability_<class>``
    column per class. Other multi-valued columns are split as ``name_<k>``.
    """
    classification = "class" in columns
    header, cells = [index_name], [list(index)]
    for name, tensor in columns.items():
        values = tensor.reshape(len(tensor), -1) if tensor.dim() > 1 else tensor.unsqueeze(1)
        width = values.shape[1]
        if name == "probabilities":
            labels = classes if classes is not None else range(width)
            header += [f"probability_{label}" for label in labels]
        else:
            header += [name] if width == 1 else [f"{name}_{k}" for k in range(width)]
        for k in range(width):
            column = values[:, k].tolist()
            if classification and name in ("class", "target") and classes is not None:
                column = [classes[int(c)] for c in column]
            elif not values.is_floating_point():
                column = [int(c) for c in column]
            cells.append(column)
    return header, [list(row) for row in zip(*cells, strict=True)]
