"""Networks as a user might write them, for the tests of the network contract."""

import math

import torch
from torch import nn


class UsualNames(nn.Module):
    """PyTorch's usual argument names, not this project's ``input_shape`` and ``num_outputs``."""

    def __init__(self, in_features: int, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Defaults(UsualNames):
    """The same with defaults: it would build without the data's sizes."""

    def __init__(self, in_features: int = 3, num_classes: int = 2) -> None:
        super().__init__(in_features, num_classes)


class OneTooMany(nn.Module):
    """Keeps the contract, yet gives one output more than the data asks for."""

    def __init__(self, input_shape: list[int], num_outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_outputs + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
