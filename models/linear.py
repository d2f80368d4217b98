"""Linear regression, source 001 example 1."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from models import checks


class LinearRegression(nn.Module):
    """One ``nn.Linear`` layer from the flattened input to ``num_outputs`` predictions.

    Args:
        input_shape: Shape of one sample; linked from the datamodule.
        num_outputs: Number of predicted values per sample; linked from the datamodule.
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int) -> None:
        super().__init__()
        in_features = math.prod(checks.shape("input_shape", input_shape))
        self.linear = nn.Linear(in_features, checks.at_least("num_outputs", num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
