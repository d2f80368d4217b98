import functools

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import models
from datamodules import FeatureClassificationData, LinearRegressionData
from models import MLP, ClassificationTask, LinearRegression, RegressionTask
from models.tasks import is_plain
from tests.conftest import MLP_RUN, REPO, config, curves, run_dir


def quick_trainer(tmp_path, **kwargs) -> Trainer:
    defaults = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    ("task", "data", "metrics"),
    [
        (
            lambda: ClassificationTask(MLP([10], 2), num_classes=2),
            lambda: FeatureClassificationData(num_samples=200),
            {"acc"},
        ),
        (
            lambda: RegressionTask(LinearRegression([1], 1)),
            lambda: LinearRegressionData(num_samples=200, batch_size=32),
            {"mae", "r2"},
        ),
    ],
)
def test_one_shared_step_logs_every_stage_under_its_prefix(tmp_path, task, data, metrics):
    task, data = task(), data()
    trainer = quick_trainer(tmp_path, log_every_n_steps=1)
    trainer.fit(task, data)
    logged = set(trainer.callback_metrics)
    assert {"train/loss_step", "train/loss_epoch", "val/loss"} <= logged
    assert {f"{stage}/{m}" for stage in ("train", "val") for m in metrics} <= logged
    (results,) = trainer.test(task, data, verbose=False)
    assert set(results) == {"test/loss"} | {f"test/{m}" for m in metrics}


def test_the_step_loss_is_logged_on_lightnings_logging_steps_only(tmp_path):
    # 160 training samples in batches of 32: 5 steps an epoch, 15 in all; with
    # log_every_n_steps=2 Lightning writes step values after steps 2, 4, ... (at indices 1, 3, ...)
    trainer = quick_trainer(
        tmp_path, max_epochs=3, log_every_n_steps=2, logger=TensorBoardLogger(tmp_path, name="")
    )
    trainer.fit(
        ClassificationTask(MLP([10], 2), num_classes=2), FeatureClassificationData(num_samples=200)
    )
    events = EventAccumulator(trainer.logger.log_dir)
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss_step")]
    assert steps == [1, 3, 5, 7, 9, 11, 13]
    assert [event.step for event in events.Scalars("train/loss_epoch")] == [4, 9, 14]


def test_a_checkpoint_can_monitor_the_step_loss(tmp_path):
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, monitor="train/loss_step", every_n_train_steps=2, save_top_k=1
    )
    trainer = quick_trainer(
        tmp_path,
        max_epochs=2,
        log_every_n_steps=2,
        callbacks=[checkpoint],
        enable_checkpointing=True,
    )
    trainer.fit(
        ClassificationTask(MLP([10], 2), num_classes=2), FeatureClassificationData(num_samples=200)
    )
    assert checkpoint.best_model_score is not None
    assert checkpoint.best_model_score.isfinite()


def test_epoch_metrics_match_a_direct_computation(tmp_path):
    data = FeatureClassificationData(num_samples=300)
    task = ClassificationTask(MLP([10], 2), num_classes=2)
    trainer = quick_trainer(tmp_path)
    (results,) = trainer.validate(task, data, verbose=False)
    x, y = data.splits["val"].tensors
    with torch.no_grad():
        logits = task(x)
    assert results["val/acc"] == pytest.approx(logits.argmax(1).eq(y).float().mean().item())
    assert results["val/loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5
    )


@pytest.mark.parametrize(
    ("optimizer", "kind"),
    [
        (functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9), torch.optim.SGD),
        (functools.partial(torch.optim.Adam, lr=1e-3), torch.optim.Adam),
        (functools.partial(torch.optim.RMSprop, lr=1e-2), torch.optim.RMSprop),
    ],
)
def test_optimizer_is_built_from_the_callable(optimizer, kind):
    task = RegressionTask(LinearRegression([1], 1), optimizer=optimizer)
    built = task.configure_optimizers()
    assert isinstance(built, kind)
    assert built.param_groups[0]["lr"] == optimizer.keywords["lr"]


def test_scheduler_is_stepped_per_epoch():
    task = RegressionTask(
        LinearRegression([1], 1),
        lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2),
    )
    built = task.configure_optimizers()
    assert isinstance(built["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert built["lr_scheduler"]["interval"] == "epoch"


def test_hyperparameters_built_in_python_keep_only_plain_values():
    task = ClassificationTask(MLP([10], 2), num_classes=2, optimizer=torch.optim.SGD)
    assert dict(task.hparams) == {"num_classes": 2, "lr_scheduler": None}
    assert dict(task.hparams_initial) == dict(task.hparams)  # what the loggers are given
    assert is_plain(dict(task.hparams))
    assert not is_plain({"network": MLP([1], 1)})
    assert not is_plain({"optimizer": torch.optim.SGD})


def test_checkpoint_from_the_cli_rebuilds_with_weights_only(trained, tmp_path):
    trained(*MLP_RUN)
    path = next(tmp_path.glob("lightning_logs/mlp_classification/version_0/checkpoints/last.ckpt"))

    checkpoint = torch.load(path, weights_only=True)  # raises if anything in it is pickled code
    assert is_plain(checkpoint["hyper_parameters"])
    assert checkpoint["hyper_parameters"]["network"]["init_args"]["input_shape"] == [10]

    assert models.ClassificationTask  # the class must be imported before loading, by design
    loaded = LightningModule.load_from_checkpoint(path)
    assert isinstance(loaded, ClassificationTask)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][name]), name
    x = torch.randn(4, 10)
    network = MLP([10], 2, hidden_sizes=[50])
    network.load_state_dict(
        {k.removeprefix("network."): v for k, v in checkpoint["state_dict"].items()}
    )
    assert torch.equal(loaded(x), network(x))
    # The loaded task keeps the plain description, so a checkpoint saved from it is complete too.
    assert loaded.hparams["network"] == checkpoint["hyper_parameters"]["network"]


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
    rates = [
        round(value, 6) for _, value in curves(run_dir(tmp_path, "linear_regression"))["train/lr"]
    ]
    assert rates == [0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125]


def test_the_task_uses_lightnings_public_api_only():
    # The core stays a textbook LightningModule: no private Lightning name in models/.
    import ast

    for path in (REPO / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        private = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        }
        assert not private, (path.name, private)
