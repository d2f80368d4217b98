"""Regression data: targets from a known function of the inputs, plus Gaussian noise."""

from collections.abc import Sequence

import torch

from datamodules.base import SyntheticDataModule


class LinearRegressionData(SyntheticDataModule):
    """``y = x @ weights + bias + noise_std * N(0, 1)`` with ``x ~ N(0, I)``, as in source 001.

    The number of input features is the number of weights.

    Args:
        weights: One true weight per input feature.
        bias: The true intercept.
        noise_std: Standard deviation of the Gaussian noise added to the targets.
        num_samples: Samples generated in total, before the split.
        val_fraction: Fraction of the samples held out for validation.
        test_fraction: Fraction of the samples held out for testing.
        batch_size: Samples per batch; ``null`` means the whole split in one batch.
        seed: Seeds data generation, the split and the training order.
    """

    def __init__(
        self,
        weights: Sequence[float] = (2.0,),
        bias: float = 1.0,
        noise_std: float = 1.0,
        num_samples: int = 100,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, val_fraction, test_fraction, batch_size, seed)
        if not weights:
            raise ValueError(f"weights must list one weight per feature, got {weights!r}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.weights = tuple(float(w) for w in weights)
        self.bias = bias
        self.noise_std = noise_std

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.weights),)

    @property
    def num_outputs(self) -> int:
        return 1

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(self.num_samples, len(self.weights), generator=generator)
        noise = torch.randn(self.num_samples, 1, generator=generator)
        y = x @ torch.tensor(self.weights).unsqueeze(1) + self.bias + self.noise_std * noise
        return x, y
