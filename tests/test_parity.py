"""The Lightning runs reproduce the source documents' own plain-PyTorch training loops exactly.

Each test builds the experiment through the CLI, keeps the network's initial weights, trains
with the YAML defaults, then runs the document's loop (written out below as the document
writes it) from those weights on the same training tensors, and compares the per-epoch training
loss that TensorBoard recorded with the loop's, epoch by epoch.
"""

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn, optim

from experiments.cli import ExperimentCLI
from tests.conftest import QUIET, config

pytestmark = pytest.mark.slow


def train_through_the_cli(name: str, tmp_path) -> tuple[ExperimentCLI, dict, list[float]]:
    cli = ExperimentCLI(
        args=["--config", config(name), "--trainer.default_root_dir", str(tmp_path), *QUIET],
        run=False,
    )
    initial = {k: v.clone() for k, v in cli.model.network.state_dict().items()}
    cli.trainer.fit(cli.model, cli.datamodule)
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    losses = [event.value for event in events.Scalars("train/loss_epoch")]
    assert len(losses) == cli.trainer.max_epochs
    return cli, initial, losses


def test_linear_regression_equals_the_source_loop(tmp_path):
    cli, initial, logged = train_through_the_cli("linear_regression", tmp_path)
    X, y = cli.datamodule.splits["train"].tensors

    # Source 001, example 1, from its initial weights.
    class LinearRegression(nn.Module):
        def __init__(self, input_dim, output_dim):
            super().__init__()
            self.linear = nn.Linear(input_dim, output_dim)

        def forward(self, x):
            return self.linear(x)

    model = LinearRegression(1, 1)
    model.linear.load_state_dict({k.removeprefix("linear."): v for k, v in initial.items()})
    criterion = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _epoch in range(len(logged)):
        outputs = model(X)
        loss = criterion(outputs, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert logged == pytest.approx(losses, abs=1e-6)
    assert torch.allclose(model.linear.weight, cli.model.network.linear.weight, atol=1e-6)


def test_scratch_two_layer_equals_the_source_loop(tmp_path):
    cli, initial, logged = train_through_the_cli("scratch_two_layer", tmp_path)
    X_data, y_data = cli.datamodule.splits["train"].tensors
    assert len(X_data) == 80  # the source's N

    # Source 004, its training loop, from the same initial tensors.
    W1, b1, W2, b2 = (initial[k].clone().requires_grad_(True) for k in ("W1", "b1", "W2", "b2"))

    def relu(x):
        return torch.clamp(x, min=0.0)

    def forward(X):
        z1 = X @ W1 + b1
        h = relu(z1)
        return h @ W2 + b2

    lr = 0.07
    losses = []
    for _epoch in range(len(logged)):
        logits = forward(X_data)
        loss = F.cross_entropy(logits, y_data)
        loss.backward()
        with torch.no_grad():
            W1 -= lr * W1.grad
            b1 -= lr * b1.grad
            W2 -= lr * W2.grad
            b2 -= lr * b2.grad
        for param in [W1, b1, W2, b2]:
            param.grad.zero_()
        losses.append(loss.item())

    assert len(logged) == 120
    assert logged == pytest.approx(losses, abs=1e-6)
    assert torch.allclose(W2, cli.model.network.W2, atol=1e-5)
