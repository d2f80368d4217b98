"""The datamodule base: tensors in memory, split by fractions, served as whole batches."""

import math
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from models import checks


class TensorBatches(Dataset):
    """In-memory tensors that a DataLoader indexes one whole batch at a time.

    ``TensorDataset`` fetches and collates sample by sample; ``__getitems__`` lets the DataLoader
    hand over the batch's indices at once, so a batch costs one indexing operation per tensor.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches needs tensors of the same, non-zero length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, device=self.tensors[0].device)
        return tuple(t[index] for t in self.tensors)


def whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Collate function for ``TensorBatches``: the batch is already stacked."""
    return batch


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(size)`` drawn from ``seed`` and the epoch alone.

    Lightning calls ``set_epoch`` before every training epoch, so each epoch has its own order,
    and the order of epoch ``e`` is the same whether or not the run was stopped and resumed.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def permutation(self) -> torch.Tensor:
        """The current epoch's order, as a tensor of indices."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())


class InMemoryBatches:
    """Batches sliced out of in-memory tensors, one indexing operation per tensor and batch.

    This is what the datamodules hand Lightning for training, validation and testing. Lightning
    accepts any iterable with a length as a dataloader and, before every training epoch, calls
    ``set_epoch`` on its ``sampler`` (here an :class:`EpochShuffle`, or ``None`` for a pass in
    order). A DataLoader would cost a sampler step per sample and a collate call per batch.

    Under data parallelism each rank takes every ``world_size``-th sample from position ``rank``
    (Lightning injects its ``DistributedSampler`` only into DataLoaders, so the sharding is ours):

    * shuffled, the epoch's permutation is first cut to a multiple of ``world_size``, so every
      rank runs the same number of steps (DDP needs that) and no sample is seen twice in an
      epoch; up to ``world_size - 1`` samples sit out an epoch, different ones each epoch;
    * in order, every sample is seen exactly once. Shards may differ by one sample; evaluation
      has no per-batch collective, and the metrics sum their states across ranks, so the result
      equals one process's (``DistributedSampler`` would pad with repeated samples instead).

    Args:
        data: The split's tensors; batches stay on their device.
        batch_size: Samples per batch; ``None`` means the whole shard in one batch.
        sampler: Shuffles per epoch; ``None`` keeps the stored order.
        rank: This process's index among the data-parallel processes.
        world_size: Number of data-parallel processes.
    """

    def __init__(
        self,
        data: TensorBatches,
        batch_size: int | None,
        sampler: EpochShuffle | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.tensors = data.tensors
        # Lightning reads these two DataLoader attributes from any iterable that has a sampler.
        self.sampler = sampler
        self.batch_sampler = None
        self.rank = rank
        self.world_size = world_size
        size = len(data)
        if size < world_size:
            raise ValueError(
                f"{size} samples cannot be shared among {world_size} data-parallel processes: "
                "use more samples or fewer devices"
            )
        if sampler is not None:
            self.shard_size = size // world_size
        else:
            self.shard_size = len(range(rank, size, world_size))
        self.batch_size = batch_size or self.shard_size

    def __len__(self) -> int:
        return math.ceil(self.shard_size / self.batch_size)

    def indices(self) -> torch.Tensor | None:
        """This rank's samples for the coming pass, or ``None`` for all of them in order."""
        if self.sampler is not None:
            order = self.sampler.permutation()
            return order[self.rank : self.shard_size * self.world_size : self.world_size]
        if self.world_size == 1:
            return None
        return torch.arange(self.rank, len(self.tensors[0]), self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        index = self.indices()
        if index is not None:
            index = index.to(self.tensors[0].device)
        for start in range(0, self.shard_size, self.batch_size):
            if index is None:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                part = index[start : start + self.batch_size]
                yield tuple(t[part] for t in self.tensors)


class SplitDataModule(LightningDataModule):
    """``(x, y)`` tensors held in memory, split into train/val/test and served as whole batches.

    Subclasses provide the samples (:meth:`load`), their number (:attr:`num_samples`) and the
    shape facts :attr:`input_shape` and :attr:`num_outputs` (classification data also
    ``num_classes``); the CLI links those facts into the network and the task, so no
    dimension is written twice in a config.

    Args:
        val_fraction: Fraction of the samples held out for validation.
        test_fraction: Fraction of the samples held out for testing.
        batch_size: Samples per batch; ``null`` means the whole split in one batch.
        seed: Seeds the split and the training order (and generated data).
    """

    def __init__(
        self,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        checks.fraction("val_fraction", val_fraction)
        checks.fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 to leave training data, "
                f"got {val_fraction!r} + {test_fraction!r}"
            )
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive integer or null, got {batch_size!r}")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.seed = seed
        self.raw_splits: dict[str, TensorBatches] = {}  # as loaded, on the CPU
        self.splits: dict[str, TensorBatches] = {}  # as served: prepared, on the device

    @property
    def num_samples(self) -> int:
        """Samples in all, before the split."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        """Network outputs per sample: predicted values, or logits for classification."""
        raise NotImplementedError

    def load(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_samples`` inputs and targets; ``generator`` is seeded, for data drawn here."""
        raise NotImplementedError

    def split_sizes(self) -> dict[str, int]:
        """Samples per split; validation and test round to the nearest sample."""
        val = round(self.num_samples * self.val_fraction)
        test = round(self.num_samples * self.test_fraction)
        return {"train": self.num_samples - val - test, "val": val, "test": test}

    def check_split_sizes(self) -> None:
        """Refuse fractions that leave a split without a sample."""
        fractions = {"val": self.val_fraction, "test": self.test_fraction}
        for split, size in self.split_sizes().items():
            if size == 0:
                given = f" with {split}_fraction {fractions[split]}" if split in fractions else ""
                raise ValueError(
                    f"the {split} split of {self.num_samples} samples{given} is empty: "
                    "use more samples or a larger fraction"
                )

    def prepare(self, splits: dict[str, TensorBatches]) -> dict[str, TensorBatches]:
        """The splits as they are served; subclasses may transform them (standardise, say)."""
        return dict(splits)

    def setup(self, stage: str) -> None:
        if not self.raw_splits:
            # One generator for the samples (where they are drawn) and then the split.
            generator = torch.Generator().manual_seed(self.seed)
            x, y = self.load(generator)
            order = torch.randperm(self.num_samples, generator=generator)
            start = 0
            for name, size in self.split_sizes().items():
                index = order[start : start + size]
                self.raw_splits[name] = TensorBatches(x[index], y[index])
                start += size
        if not self.splits:
            self.splits = self.prepare(self.raw_splits)
        # Made on the CPU (the same numbers on every machine), then moved once to the device
        # the trainer runs on, so no batch is copied to it during training.
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is not None and self.splits["train"].tensors[0].device != device:
            for name, split in self.splits.items():
                self.splits[name] = TensorBatches(*(t.to(device) for t in split.tensors))

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # setup() put the tensors on the training device already: skip Lightning's walk through
        # the batch, which costs as much as a small network's forward pass.
        if isinstance(batch, tuple | list) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def loader(self, split: str, shuffle: bool = False) -> InMemoryBatches:
        """Whole batches of ``split``, this process's shard of it under data parallelism."""
        data = self.splits[split]
        rank, world_size = 0, 1
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        sampler = EpochShuffle(len(data), self.seed) if shuffle else None
        return InMemoryBatches(data, self.batch_size, sampler, rank, world_size)

    def train_dataloader(self) -> InMemoryBatches:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> InMemoryBatches:
        return self.loader("val")

    def test_dataloader(self) -> InMemoryBatches:
        return self.loader("test")

    def predict_data(self) -> TensorBatches:
        """The samples ``predict`` runs on: the test split."""
        return self.splits["test"]

    def predict_dataloader(self) -> DataLoader:
        # A DataLoader, so that under data parallelism Lightning shards it without repeats and
        # hands the prediction writer each batch's sample indices.
        data = self.predict_data()
        return DataLoader(data, batch_size=self.batch_size or len(data), collate_fn=whole_batch)
