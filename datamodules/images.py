"""Image classification data whose class can be seen in the picture."""

import math
from collections.abc import Sequence
from typing import Literal

import torch

from datamodules.base import SyntheticDataModule, check_count, check_noise


class StripeImageData(SyntheticDataModule):
    """Images of sinusoidal stripes whose orientation is the class, under Gaussian pixel noise.

    Class ``k`` of ``C`` has stripes at the angle ``k * 180° / C``; every channel shows the
    same stripes. With ``phase: random`` each image shifts its stripes by a random phase, so a
    classifier must recognise the orientation wherever the stripes fall (a convolution's job);
    with ``phase: fixed`` each class is one template under noise.

    Args:
        image_shape: ``[channels, height, width]``.
        num_classes: Number of stripe orientations.
        period: Stripe period in pixels.
        noise_std: Standard deviation of the pixel noise (the stripes have amplitude 1).
        phase: ``random`` or ``fixed`` placement of the stripes.
        num_samples: Samples generated in total, before the split.
        val_fraction: Fraction of the samples held out for validation.
        test_fraction: Fraction of the samples held out for testing.
        batch_size: Samples per batch; ``null`` means the whole split in one batch.
        seed: Seeds data generation, the split and the training order.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        period: float = 8.0,
        noise_std: float = 1.0,
        phase: Literal["random", "fixed"] = "random",
        num_samples: int = 5000,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int | None = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, val_fraction, test_fraction, batch_size, seed)
        dims = tuple(image_shape)
        if len(dims) != 3 or any(isinstance(d, bool) or d <= 0 for d in dims):
            raise ValueError(
                f"image_shape must be [channels, height, width], all positive, got {image_shape!r}"
            )
        check_count("num_classes", num_classes, minimum=2)
        if period < 2:
            raise ValueError(f"period must be at least 2 pixels, got {period!r}")
        check_noise(noise_std)
        if phase not in ("random", "fixed"):
            raise ValueError(f"phase must be one of ['fixed', 'random'], got {phase!r}")
        self.image_shape = dims
        self.num_classes = num_classes
        self.period = period
        self.noise_std = noise_std
        self.phase = phase

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.image_shape

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        channels, height, width = self.image_shape
        y = torch.randint(0, self.num_classes, (self.num_samples,), generator=generator)
        angle = y.float() * math.pi / self.num_classes
        if self.phase == "random":
            shift = torch.rand(self.num_samples, generator=generator) * 2 * math.pi
        else:
            shift = torch.zeros(self.num_samples)
        rows = torch.arange(height, dtype=torch.float32).view(1, height, 1)
        cols = torch.arange(width, dtype=torch.float32).view(1, 1, width)
        along = rows * angle.sin().view(-1, 1, 1) + cols * angle.cos().view(-1, 1, 1)
        stripes = torch.sin(2 * math.pi * along / self.period + shift.view(-1, 1, 1))
        noise = torch.randn(self.num_samples, channels, height, width, generator=generator)
        return stripes.unsqueeze(1) + self.noise_std * noise, y
