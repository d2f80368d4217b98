"""Sequence data for recurrent networks: a task that needs memory."""

import torch

from datamodules.synthetic import SyntheticDataModule
from models import checks


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
        **kwargs: ``num_samples``, the split and batching, as for
            :class:`~datamodules.synthetic.SyntheticDataModule`.
    """

    def __init__(
        self,
        sequence_length: int = 20,
        num_features: int = 10,
        num_classes: int = 4,
        noise_std: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        checks.at_least("sequence_length", sequence_length)
        checks.at_least("num_classes", num_classes, 2)
        if isinstance(num_features, bool) or num_features < num_classes:
            raise ValueError(
                f"num_features must be at least num_classes={num_classes}, got {num_features!r}"
            )
        checks.non_negative("noise_std", noise_std)
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
