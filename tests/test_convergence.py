"""Each experiment reaches its stated result with its YAML defaults."""

import pytest
import torch

from tests.conftest import config

pytestmark = pytest.mark.slow


def test_linear_regression_recovers_the_line(run_cli):
    cli = run_cli("fit", "--config", config("linear_regression"))
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


def test_mlp_classifier_reaches_ninety_percent_validation_accuracy(run_cli):
    cli = run_cli("fit", "--config", config("mlp_classification"))
    assert cli.trainer.current_epoch == 100
    assert cli.trainer.callback_metrics["val/acc"] >= 0.9
