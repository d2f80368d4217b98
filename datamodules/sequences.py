"""Sequence data for recurrent networks: a task that needs memory."""

import torch

from datamodules.base import SyntheticDataModule, check_count, check_noise


class RecallSequenceData(SyntheticDataModule):
    """Recall the first symbol: the label is shown once, at step 0, then only noise follows.

    Each sample is a ``[sequence_length, num_features]`` sequence of Gaussian noise; step 0
    also carries a one-hot code of the label in its first ``num_classes`` features. A network
    read at the last step must carry the symbol through ``sequence_length - 1`` steps of noise.

    Args:
        sequence_length: Time steps per sample.
        num_features: Features per time step (at least ``num_classes``).
        num_classes: Number of symbols to recall.
        noise_std: Standard deviation of the noise on every step (the cue has amplitude 1).
        num_samples: Samples generated in total, before the split.
        val_fraction: Fraction of the samples held out for validation.
        test_fraction: Fraction of the samples held out for testing.
        batch_size: Samples per batch; ``null`` means the whole split in one batch.
        seed: Seeds data generation, the split and the training order.
    """

    def __init__(
        self,
        sequence_length: int = 20,
        num_features: int = 10,
        num_classes: int = 4,
        noise_std: float = 0.5,
        num_samples: int = 4000,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, val_fraction, test_fraction, batch_size, seed)
        check_count("sequence_length", sequence_length)
        check_count("num_classes", num_classes, minimum=2)
        if isinstance(num_features, bool) or num_features < num_classes:
            raise ValueError(
                f"num_features must be at least num_classes={num_classes}, got {num_features!r}"
            )
        check_noise(noise_std)
        self.sequence_length = sequence_length
        self.num_features = num_features
        self.num_classes = num_classes
        self.noise_std = noise_std

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.sequence_length, self.num_features)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, self.num_classes, (self.num_samples,), generator=generator)
        shape = (self.num_samples, self.sequence_length, self.num_features)
        x = self.noise_std * torch.randn(shape, generator=generator)
        x[torch.arange(self.num_samples), 0, y] += 1.0
        return x, y
