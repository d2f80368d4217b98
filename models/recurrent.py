"""Recurrent classifiers over sequences: ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (source 003)."""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from models import checks

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """A stack of recurrent layers read at the last time step by a linear layer.

    Args:
        input_shape: ``[sequence_length, features]`` of one sample; linked from the datamodule.
        num_outputs: Logits per sample; linked from the datamodule.
        cell: Recurrent layer type: ``rnn`` (tanh), ``lstm`` or ``gru``.
        hidden_size: Features of the hidden state.
        num_layers: Stacked recurrent layers.
        dropout: Dropout between stacked layers (needs ``num_layers`` > 1 to matter).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        hidden_size: int = 20,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _, features = checks.shape("input_shape", input_shape, ndim=2)
        checks.one_of("cell", cell, CELLS)
        checks.probability("dropout", dropout)
        self.rnn = CELLS[cell](
            features,
            checks.at_least("hidden_size", hidden_size),
            num_layers=checks.at_least("num_layers", num_layers),
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(hidden_size, checks.at_least("num_outputs", num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(x)
        return self.head(outputs[:, -1])
