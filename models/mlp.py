"""Multilayer perceptrons: the two-layer nets of sources 000 and 001 and the stack of source 003."""

import math
from collections.abc import Sequence
from typing import Literal

from torch import nn

from models import checks

Activation = Literal["relu", "sigmoid", "tanh", "gelu"]
Norm = Literal["none", "batch", "layer"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def activation_layer(name: str) -> nn.Module:
    """The activation module called ``name``."""
    return ACTIVATIONS[checks.one_of("activation", name, ACTIVATIONS)]()


def hidden_block(
    in_features: int, out_features: int, activation: str, norm: str, dropout: float
) -> list[nn.Module]:
    """Linear layer, optional normalisation, activation and optional dropout, in that order."""
    checks.one_of("norm", norm, ["batch", "layer", "none"])
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    if norm == "batch":
        layers.append(nn.BatchNorm1d(out_features))
    elif norm == "layer":
        layers.append(nn.LayerNorm(out_features))
    layers.append(activation_layer(activation))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class MLP(nn.Sequential):
    """Flatten, then ``Linear`` + activation per hidden size, then a linear output layer.

    Built as an ``nn.Sequential``, as source 003 builds its 784 -> 128 -> 64 -> 10 classifier.

    Args:
        input_shape: Shape of one sample (flattened by the network); linked from the datamodule.
        num_outputs: Logits or predicted values per sample; linked from the datamodule.
        hidden_sizes: Width of each hidden layer, input side first.
        activation: Non-linearity after each hidden layer.
        norm: Normalisation after each hidden linear layer: batch norm, layer norm or none.
        dropout: Dropout probability after each hidden activation (0 disables it).
        output_activation: Non-linearity after the output layer, e.g. ``relu`` for the
            ``Linear`` + ReLU network of source 002; ``none`` leaves the outputs linear.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden_sizes: Sequence[int] = (50,),
        activation: Activation = "relu",
        norm: Norm = "none",
        dropout: float = 0.0,
        output_activation: Activation | Literal["none"] = "none",
    ) -> None:
        in_features = math.prod(checks.shape("input_shape", input_shape))
        for size in hidden_sizes:
            checks.at_least("hidden_sizes entry", size)
        checks.probability("dropout", dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden_sizes:
            layers += hidden_block(in_features, width, activation, norm, dropout)
            in_features = width
        layers.append(nn.Linear(in_features, checks.at_least("num_outputs", num_outputs)))
        if output_activation != "none":
            layers.append(activation_layer(output_activation))
        super().__init__(*layers)
