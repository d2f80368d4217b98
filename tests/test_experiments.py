"""The experiments (one YAML each): every one reaches the result the README states with its
defaults, and the Lightning runs reproduce the source documents' own plain-PyTorch loops.

The parity tests build the experiment through the CLI, keep the network's initial weights, train
with the YAML defaults, then run the document's loop (written out below as the document writes
it) from those weights on the same training tensors, and compare the per-epoch training loss
that TensorBoard recorded with the loop's, epoch by epoch.
"""

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn, optim

from experiments.cli import ExperimentCLI, main
from tests.conftest import QUIET, config, curves

pytestmark = pytest.mark.slow


def fit_and_test(run_cli, name: str, *overrides: str) -> dict[str, float]:
    """Train as a user does; the final value of every curve, test metrics included."""
    cli = run_cli("fit", "--config", config(name), *overrides)
    # Ran every epoch it states, unless its YAML stops it early (iris: EarlyStopping; testing
    # the best checkpoint restores the callback's state of then, so it cannot tell when).
    stops_early = any(isinstance(c, EarlyStopping) for c in cli.trainer.callbacks)
    assert stops_early or cli.trainer.current_epoch == cli.trainer.max_epochs
    return {tag: points[-1][1] for tag, points in curves(cli.trainer.log_dir).items()}


@pytest.mark.parametrize(
    ("name", "at_least"),
    [
        ("mlp_classification", {"val/acc": 0.9}),
        ("simple_net", {"test/r2": 0.95}),
        ("sequential_mlp", {"test/acc": 0.9}),
        pytest.param("cnn", {"test/acc": 0.9}, marks=pytest.mark.slow(seconds=24)),
        ("scratch_two_layer", {"train/acc": 0.95, "test/acc": 0.9}),
        ("recurrent", {"test/acc": 0.9}),
        ("iris", {"test/acc": 0.95}),
        ("digits", {"test/acc": 0.95}),
        ("wine_flavanoids", {"test/r2": 0.75}),
    ],
    ids=lambda value: value if isinstance(value, str) else "-".join(value),
)
def test_experiment_reaches_its_stated_result(run_cli, name, at_least):
    results = fit_and_test(run_cli, name)
    for metric, bound in at_least.items():
        assert results[metric] >= bound - 1e-6, metric  # metrics are float32


def test_relu_beats_sigmoid_on_data_from_a_relu_teacher(run_cli):
    relu = fit_and_test(run_cli, "two_layer_relu")["test/r2"]
    sigmoid = fit_and_test(run_cli, "two_layer_sigmoid")["test/r2"]
    assert relu >= 0.93
    assert sigmoid >= 0.8  # it learns too, more slowly: sigmoid units saturate under plain SGD
    assert relu - sigmoid >= 0.05


def test_a_plain_rnn_solves_the_memory_task_too(run_cli):
    results = fit_and_test(run_cli, "recurrent", "--model.init_args.network.init_args.cell", "rnn")
    assert results["test/acc"] >= 0.9  # chance is 0.25


def test_random_labels_of_the_source_stay_at_chance(run_cli):
    results = fit_and_test(
        run_cli,
        "mlp_classification",
        "--data.init_args.rule",
        "random",
        "--trainer.max_epochs",
        "30",
    )
    assert 0.35 <= results["test/acc"] <= 0.65
    assert results["train/loss_epoch"] < 0.69  # it memorises: the training loss still falls


def train_through_the_cli(name: str, tmp_path) -> tuple[ExperimentCLI, dict, list[float]]:
    """The experiment as built (its seeded initial weights and data), and the run's losses."""
    root = ["--trainer.default_root_dir", str(tmp_path)]
    built = ExperimentCLI(args=["--config", config(name), *root, *QUIET], run=False)
    built.datamodule.setup("fit")
    initial = {k: v.clone() for k, v in built.model.network.state_dict().items()}
    cli = main(["fit", "--config", config(name), *root, "--test_after_fit", "false", *QUIET])
    losses = [value for _, value in curves(cli.trainer.log_dir)["train/loss_epoch"]]
    assert len(losses) == cli.trainer.max_epochs
    return cli, initial, losses


def test_linear_regression_recovers_the_line_as_the_source_loop_does(tmp_path):
    cli, initial, logged = train_through_the_cli("linear_regression", tmp_path)
    X, y = cli.datamodule.splits["train"].tensors
    weight = cli.model.network.linear.weight.item()
    bias = cli.model.network.linear.bias.item()
    assert weight == pytest.approx(2.0, abs=0.1)
    assert bias == pytest.approx(1.0, abs=0.1)
    # Gradient descent has converged: the weights equal least squares on the training split.
    design = torch.cat([X, torch.ones_like(X)], 1)
    solution = torch.linalg.lstsq(design, y).solution.ravel()
    assert weight == pytest.approx(solution[0].item(), abs=1e-3)
    assert bias == pytest.approx(solution[1].item(), abs=1e-3)

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
