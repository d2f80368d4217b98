"""The datamodule base: seeded synthetic tensors, split by fractions, served as whole batches."""

from collections.abc import Iterator

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer of at least ``minimum``, else raise naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


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

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class SyntheticDataModule(LightningDataModule):
    """Generates ``(x, y)`` tensors from a seeded generator and splits them train/val/test.

    Subclasses implement :meth:`generate` and the shape facts :attr:`input_shape` and
    :attr:`num_outputs` (classification datamodules also ``num_classes``); the CLI links those
    facts into the network and the task, so no dimension is written twice in a config.

    Args:
        num_samples: Samples generated in total, before the split.
        val_fraction: Fraction of the samples held out for validation.
        test_fraction: Fraction of the samples held out for testing.
        batch_size: Samples per batch; ``null`` means the whole split in one batch.
        seed: Seeds data generation, the split and the training order.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_count("num_samples", num_samples)
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {fraction!r}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 to leave training data, "
                f"got {val_fraction!r} + {test_fraction!r}"
            )
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive integer or null, got {batch_size!r}")
        self.num_samples = num_samples
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.seed = seed
        for split, size in self.split_sizes().items():
            if size == 0:
                fraction = {"train": None, "val": val_fraction, "test": test_fraction}[split]
                given = f" with {split}_fraction {fraction}" if fraction is not None else ""
                raise ValueError(
                    f"the {split} split of {num_samples} samples{given} is empty: "
                    "use more samples or a larger fraction"
                )
        self.splits: dict[str, TensorBatches] = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        raise NotImplementedError

    @property
    def num_outputs(self) -> int:
        """Network outputs per sample: predicted values, or logits for classification."""
        raise NotImplementedError

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``num_samples`` inputs and targets drawn from ``generator``."""
        raise NotImplementedError

    def split_sizes(self) -> dict[str, int]:
        """Samples per split; validation and test round to the nearest sample."""
        val = round(self.num_samples * self.val_fraction)
        test = round(self.num_samples * self.test_fraction)
        return {"train": self.num_samples - val - test, "val": val, "test": test}

    def setup(self, stage: str) -> None:
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        x, y = self.generate(generator)
        order = torch.randperm(self.num_samples, generator=generator)
        start = 0
        for name, size in self.split_sizes().items():
            index = order[start : start + size]
            self.splits[name] = TensorBatches(x[index], y[index])
            start += size

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """A DataLoader over ``split`` that indexes whole batches."""
        data = self.splits[split]
        return DataLoader(
            data,
            batch_size=self.batch_size or len(data),
            sampler=EpochShuffle(len(data), self.seed) if shuffle else None,
            collate_fn=whole_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")
