"""Each experiment reaches the result the README states, with its YAML defaults."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import config

pytestmark = pytest.mark.slow


def fit_and_test(run_cli, name: str, *overrides: str) -> dict[str, float]:
    """Train as a user does; the final value of every curve, test metrics included."""
    cli = run_cli("fit", "--config", config(name), *overrides)
    assert cli.trainer.current_epoch == cli.trainer.max_epochs  # ran every epoch it states
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def test_linear_regression_recovers_the_line(run_cli):
    cli = run_cli("fit", "--config", config("linear_regression"), "--test_after_fit", "false")
    weight = cli.model.network.linear.weight.item()
    bias = cli.model.network.linear.bias.item()
    assert weight == pytest.approx(2.0, abs=0.1)
    assert bias == pytest.approx(1.0, abs=0.1)
    # Gradient descent has converged: the weights equal least squares on the training split.
    x, y = cli.datamodule.splits["train"].tensors
    design = torch.cat([x, torch.ones_like(x)], 1)
    solution = torch.linalg.lstsq(design, y).solution.ravel()
    assert weight == pytest.approx(solution[0].item(), abs=1e-3)
    assert bias == pytest.approx(solution[1].item(), abs=1e-3)


@pytest.mark.parametrize(
    ("name", "metric", "at_least"),
    [
        ("mlp_classification", "val/acc", 0.9),
        ("simple_net", "test/r2", 0.95),
        ("sequential_mlp", "test/acc", 0.9),
        ("cnn", "test/acc", 0.9),
        ("scratch_two_layer", "train/acc", 0.95),
        ("scratch_two_layer", "test/acc", 0.9),
        ("recurrent", "test/acc", 0.9),
    ],
)
def test_experiment_reaches_its_stated_result(run_cli, name, metric, at_least):
    assert fit_and_test(run_cli, name)[metric] >= at_least - 1e-6  # metrics are float32


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
