"""Figures of the validation data in TensorBoard's images tab: what suits each task and data."""

import numpy as np
import pytest
import torch

import models
from datamodules import (
    FeatureClassificationData,
    LinearRegressionData,
    RecallSequenceData,
    StripeImageData,
    TeacherRegressionData,
)
from experiments.figures import FigureLogger, draw, render
from tests.conftest import config, curves, run_dir


@pytest.mark.parametrize(
    ("task", "data", "tags"),
    [
        (
            lambda: models.RegressionTask(models.LinearRegression([1], 1)),
            LinearRegressionData,
            ["predicted_vs_target", "fit"],
        ),
        (
            lambda: models.RegressionTask(models.MLP([10], 1)),
            TeacherRegressionData,
            ["predicted_vs_target"],
        ),
        (
            lambda: models.ClassificationTask(models.ScratchTwoLayer([2], 2), 2),
            lambda: FeatureClassificationData(num_features=2, rule="sum"),
            ["confusion_matrix", "decision_boundary"],
        ),
        (
            lambda: models.ClassificationTask(models.CNN([3, 32, 32], 10), 10),
            lambda: StripeImageData(num_samples=100),
            ["confusion_matrix", "samples"],
        ),
        (  # two channels, no colour image: drawn from the first
            lambda: models.ClassificationTask(models.CNN([2, 8, 8], 3, channels=[4]), 3),
            lambda: StripeImageData(image_shape=[2, 8, 8], num_classes=3, num_samples=100),
            ["confusion_matrix", "samples"],
        ),
        (
            lambda: models.ClassificationTask(models.RecurrentNet([20, 10], 4), 4),
            lambda: RecallSequenceData(num_samples=100),
            ["confusion_matrix"],
        ),
    ],
)
def test_figures_suit_the_task_and_data(task, data, tags):
    task, data = task().eval(), data()
    data.setup("fit")
    x, y = data.splits["val"].tensors
    with torch.no_grad():
        outputs = task(x)
    drawn = draw(task, data, x, y, outputs)
    assert [tag for tag, _ in drawn] == tags
    for _, figure in drawn:
        image = render(figure)
        assert image.shape == (320, 400, 3)
        assert image.dtype == np.uint8
        assert image.std() > 5  # lines, points and text, not a blank canvas


def test_fit_figure_names_the_recovered_line():
    task = models.RegressionTask(models.LinearRegression([1], 1))
    with torch.no_grad():
        task.network.linear.weight.fill_(2.0)
        task.network.linear.bias.fill_(1.0)
    data = LinearRegressionData()
    data.setup("fit")
    x, y = data.splits["val"].tensors
    (_, _), (tag, figure) = draw(task, data, x, y, task(x).detach())
    assert tag == "fit"
    assert figure.axes[0].get_title() == "Fit: y ≈ 2.000 x + 1.000"


@pytest.mark.parametrize(
    ("every", "epoch", "max_epochs", "due"),
    [
        (10, 9, 100, True),
        (10, 10, 100, False),
        (10, 99, 100, True),
        (10, 4, 5, True),
        (1, 0, 3, True),
    ],
)
def test_figures_are_throttled_by_epoch(every, epoch, max_epochs, due):
    class Trainer:
        sanity_checking = False
        is_global_zero = True
        current_epoch = epoch

    Trainer.max_epochs = max_epochs
    assert FigureLogger(every_n_epochs=every).due(Trainer) is due
    assert FigureLogger(enabled=False).due(Trainer) is False


def test_figures_can_be_switched_off(run_cli, tmp_path):
    run_cli(
        "fit",
        "--config",
        config("scratch_two_layer"),
        "--trainer.max_epochs",
        "10",
        "--figures.enabled",
        "false",
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir(tmp_path, "scratch_two_layer")))
    events.Reload()
    assert events.Tags()["images"] == []
    assert "val/loss" in curves(run_dir(tmp_path, "scratch_two_layer"))
