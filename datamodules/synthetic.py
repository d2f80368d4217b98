"""The base of the datamodules that draw their samples from a seed."""

import torch

from datamodules.base import SplitDataModule
from models import checks


class SyntheticDataModule(SplitDataModule):
    """Draws ``num_samples`` ``(x, y)`` pairs from a generator seeded with ``seed``.

    Subclasses implement :meth:`generate`; the same seed gives the same samples, split and
    training order on every machine.

    Args:
        num_samples: Samples generated in total, before the split.
        **kwargs: The split and batching: ``val_fraction``, ``test_fraction``, ``batch_size``,
            ``seed``.
    """

    def __init__(self, num_samples: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        self._num_samples = checks.at_least("num_samples", num_samples)
        self.check_split_sizes()

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``num_samples`` inputs and targets drawn from ``generator``."""
        raise NotImplementedError

    def load(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.generate(generator)
