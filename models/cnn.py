"""The convolutional classifier of source 001, example 3, with the layer options of source 003."""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from models import checks

POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class CNN(nn.Module):
    """Blocks of 3x3 convolution (same padding) + ReLU + 2x2 pooling, then a two-layer head.

    The head's input size follows from ``input_shape``: each block keeps the image size through
    its convolution and halves it (rounding down) through its pooling.

    Args:
        input_shape: ``[channels, height, width]`` of one image; linked from the datamodule.
        num_outputs: Number of classes; linked from the datamodule.
        channels: Output channels of each convolution block.
        hidden_size: Units of the hidden fully connected layer.
        pool: ``max`` or ``avg`` pooling in each block.
        batch_norm: Batch normalisation after each convolution.
        global_pool: Adaptive average pooling to 1x1 before the head, which then sees one
            value per channel whatever the image size.
        dropout: Dropout probability before the output layer (0 disables it).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (16, 32),
        hidden_size: int = 128,
        pool: Literal["max", "avg"] = "max",
        batch_norm: bool = False,
        global_pool: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_channels, height, width = checks.shape("input_shape", input_shape, ndim=3)
        if not channels:
            raise ValueError("channels must list at least one convolution block, got []")
        checks.one_of("pool", pool, POOLS)
        checks.probability("dropout", dropout)
        smallest = 2 ** len(channels)
        if height < smallest or width < smallest:
            raise ValueError(
                f"input_shape {list(input_shape)} is too small for {len(channels)} pooling blocks: "
                f"height and width must be at least {smallest}"
            )
        layers: list[nn.Module] = []
        for out_channels in channels:
            checks.at_least("channels entry", out_channels)
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers += [nn.ReLU(), POOLS[pool](kernel_size=2, stride=2)]
            in_channels, height, width = out_channels, height // 2, width // 2
        if global_pool:
            layers.append(nn.AdaptiveAvgPool2d(1))
            height = width = 1
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [
            nn.Linear(in_channels * height * width, checks.at_least("hidden_size", hidden_size)),
            nn.ReLU(),
        ]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden_size, checks.at_least("num_outputs", num_outputs)))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
