"""The two-layer network of source 004, written with raw tensors instead of ``nn.Linear``."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from models import checks


class ScratchTwoLayer(nn.Module):
    """``relu(x @ W1 + b1) @ W2 + b2`` from four tensors registered as parameters.

    As in the source, the weights start from a standard normal draw and the biases at zero.

    Args:
        input_shape: Shape of one sample (flattened); linked from the datamodule.
        num_outputs: Logits per sample; linked from the datamodule.
        hidden_size: Width of the hidden layer.
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int, hidden_size: int = 8) -> None:
        super().__init__()
        in_features = math.prod(checks.shape("input_shape", input_shape))
        hidden = checks.at_least("hidden_size", hidden_size)
        outputs = checks.at_least("num_outputs", num_outputs)
        self.W1 = nn.Parameter(torch.randn(in_features, hidden))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.W2 = nn.Parameter(torch.randn(hidden, outputs))
        self.b2 = nn.Parameter(torch.zeros(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.clamp(x.flatten(1) @ self.W1 + self.b1, min=0.0)
        return hidden @ self.W2 + self.b2
