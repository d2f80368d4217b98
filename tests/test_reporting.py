"""Figures, the terminal summary, predictions files and the runs table."""

import csv

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import models
from datamodules import (
    FeatureClassificationData,
    LinearRegressionData,
    RecallSequenceData,
    StripeImageData,
    TeacherRegressionData,
)
from experiments import runs
from experiments.figures import FigureLogger, draw, render
from experiments.progress import ProgressBar
from tests.conftest import config


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
    events = EventAccumulator(str(tmp_path / "lightning_logs/scratch_two_layer/version_0"))
    events.Reload()
    assert events.Tags()["images"] == []
    assert "val/loss" in events.Tags()["scalars"]


def test_summary_after_fit_shows_final_metrics_and_paths(run_cli, capsys):
    cli = run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "30")
    out = capsys.readouterr().out
    test_acc = cli.trainer.callback_metrics["test/acc"].item()
    assert f"test/acc   {test_acc:.4f}" in out
    assert "val/acc " in out
    assert "val/loss " in out
    assert "Best:        lightning_logs/scratch_two_layer/version_0/checkpoints/best-" in out
    assert "Last:        lightning_logs/scratch_two_layer/version_0/checkpoints/last.ckpt" in out


def test_learning_rate_is_logged_when_a_scheduler_is_configured(run_cli, tmp_path):
    run_cli(
        "fit",
        "--config",
        config("linear_regression"),
        "--trainer.max_epochs",
        "6",
        "--model.init_args.lr_scheduler.class_path",
        "torch.optim.lr_scheduler.StepLR",
        "--model.init_args.lr_scheduler.init_args.step_size",
        "2",
        "--model.init_args.lr_scheduler.init_args.gamma",
        "0.5",
    )
    events = EventAccumulator(str(tmp_path / "lightning_logs/linear_regression/version_0"))
    events.Reload()
    rates = [round(e.value, 6) for e in events.Scalars("train/lr")]
    assert rates == [0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125]


@pytest.mark.parametrize("name", ["scratch_two_layer", "two_layer_relu"])
def test_predictions_file_matches_the_model_row_for_row(run_cli, tmp_path, capsys, name):
    run_cli("fit", "--config", config(name), "--trainer.max_epochs", "3")
    ckpt = tmp_path / f"lightning_logs/{name}/version_0/checkpoints/last.ckpt"
    cli = run_cli("predict", "--config", config(name), "--ckpt_path", str(ckpt))
    path = cli.trainer.log_dir + "/predictions.csv"
    assert f"Predictions: {path}" in capsys.readouterr().out
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))

    task = LightningModule.load_from_checkpoint(ckpt).eval()
    x, y = cli.datamodule.splits["test"].tensors
    with torch.no_grad():
        outputs = task(x)
    assert len(rows) == len(x)
    assert [int(r["index"]) for r in rows] == list(range(len(x)))
    assert [float(r["target"]) for r in rows] == pytest.approx(y.flatten().tolist())
    if name == "scratch_two_layer":
        probability, predicted = outputs.softmax(1).max(1)
        assert [int(r["class"]) for r in rows] == predicted.tolist()
        assert [float(r["probability"]) for r in rows] == pytest.approx(probability.tolist())
    else:
        assert [float(r["prediction"]) for r in rows] == pytest.approx(outputs.flatten().tolist())


def test_runs_table_lists_each_run(run_cli, tmp_path, capsys):
    run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "12")
    run_cli("fit", "--config", config("linear_regression"), "--trainer.max_epochs", "20")
    capsys.readouterr()
    assert runs.main(["--root", str(tmp_path / "lightning_logs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "experiment",
        "version",
        "epochs",
        "best",
        "val/loss",
        "metric",
        "val",
        "at",
        "best",
        "test",
    ]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"scratch_two_layer", "linear_regression"}
    assert rows["scratch_two_layer"][1:3] == ["0", "12"]
    assert rows["linear_regression"][1:3] == ["0", "20"]
    events = EventAccumulator(str(tmp_path / "lightning_logs/linear_regression/version_0"))
    events.Reload()
    best = min(e.value for e in events.Scalars("val/loss"))
    assert rows["linear_regression"][3] == f"{best:.4f}"
    assert rows["linear_regression"][4] == "r2"
    assert rows["scratch_two_layer"][4] == "acc"


def test_runs_table_refuses_a_missing_directory(tmp_path, capsys):
    assert runs.main(["--root", str(tmp_path / "nowhere")]) == 1
    assert "no log directory at" in capsys.readouterr().err


def test_the_progress_bar_draws_each_epochs_last_batch_with_the_step_loss(tmp_path, capsys):
    # 160 training samples in batches of 32: 5 batches an epoch. With an hour between redraws,
    # the bar draws when it starts and at each epoch's last batch, and shows that step's loss.
    bar = ProgressBar(min_interval=3600)
    trainer = Trainer(
        max_epochs=2,
        log_every_n_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[bar],
        default_root_dir=tmp_path,
    )
    task = models.ClassificationTask(models.MLP([10], 2), num_classes=2)
    trainer.fit(task, FeatureClassificationData(num_samples=200))
    drawn = capsys.readouterr().out.replace("\r", "\n").splitlines()
    counts = {line.split("|")[-1].split()[0] for line in drawn if line.startswith("Epoch")}
    assert "5/5" in counts
    assert not counts & {"2/5", "3/5", "4/5"}
    last = [line for line in drawn if line.startswith("Epoch 1") and "5/5" in line]
    losses = {line.split("train/loss_step=")[1].split(",")[0] for line in last}
    # Drawn at the batch's end and again at the epoch's: the same, current, value.
    assert len(last) >= 2
    assert len(losses) == 1
