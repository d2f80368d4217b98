"""Image classification data whose class can be seen in the picture."""

import math
from collections.abc import Sequence
from typing import Literal

import torch

from datamodules.synthetic import SyntheticDataModule
from models import checks


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
        **kwargs: ``num_samples``, the split and batching, as for
            :class:`~datamodules.synthetic.SyntheticDataModule`.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        period: float = 8.0,
        noise_std: float = 1.0,
        phase: Literal["random", "fixed"] = "random",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        dims = tuple(image_shape)
        if len(dims) != 3 or any(isinstance(d, bool) or d <= 0 for d in dims):
            raise ValueError(
                f"image_shape must be [channels, height, width], all positive, got {image_shape!r}"
            )
        checks.at_least("num_classes", num_classes, 2)
        if period < 2:
            raise ValueError(f"period must be at least 2 pixels, got {period!r}")
        checks.non_negative("noise_std", noise_std)
        checks.one_of("phase", phase, ["fixed", "random"])
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
