import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments import results
from experiments.cli import DEFAULT_EXPERIMENT, main
from experiments.hooks import TRAINING_HOOKS, skip_unused_batch_hooks, unused_hooks
from experiments.predictions import PredictionWriter
from models import MLP, ClassificationTask
from tests.conftest import EXPERIMENTS, REPO, config


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_runs_fast_dev_run(run_cli, path):
    cli = run_cli("fit", "--config", str(path), "--trainer.fast_dev_run", "true")
    assert cli.trainer.state.finished
    assert cli.config.fit.experiment == path.stem
    assert cli.trainer.callback_metrics["train/loss_step"].isfinite()
    # The predictions writer only joins predict's trainer, the one where it acts.
    assert not any(isinstance(cb, PredictionWriter) for cb in cli.trainer.callbacks)


class CountingCallback(Callback):
    """A user's callback acting on two per-batch hooks; it counts the calls."""

    def __init__(self) -> None:
        self.calls = {"on_before_backward": 0, "on_validation_batch_end": 0}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls["on_before_backward"] += 1

    def on_validation_batch_end(self, trainer, pl_module, *args) -> None:
        self.calls["on_validation_batch_end"] += 1


def test_callbacks_are_called_only_on_the_batch_hooks_they_implement(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Run with the progress bar and model summary on, as a user's run is.
    cli = main(
        [
            "fit",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "3",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.callbacks+=tests.test_cli.CountingCallback",
        ]
    )
    callbacks = {type(cb).__name__: cb for cb in cli.trainer.callbacks}
    counting = callbacks["CountingCallback"]
    # Implemented hooks still run on every batch (validation's: two in the sanity check, two
    # after the epoch), and the run trains as before.
    assert counting.calls == {"on_before_backward": 3, "on_validation_batch_end": 4}
    assert cli.trainer.global_step == 3
    # Hooks inherited unchanged from Callback are passed over; those a Lightning base class
    # implements (the progress bar's validation hooks) are kept.
    assert counting.on_train_batch_end is None
    assert counting.on_after_backward is None
    assert callbacks["FiniteLoss"].on_train_batch_start is None
    assert callable(callbacks["FiniteLoss"].on_train_batch_end)
    assert callable(callbacks["ProgressBar"].on_validation_batch_end)
    assert callbacks["ModelSummary"].on_before_zero_grad is None
    # The task implements none of the training step's hooks; its evaluation hooks stay (the
    # validation above ran with them).
    for hook in TRAINING_HOOKS:
        assert getattr(cli.model, hook) is None, hook
    assert callable(cli.model.on_validation_batch_end)


class TaskWithBackwardHook(ClassificationTask):
    """A user's task implementing one training hook."""

    def on_after_backward(self) -> None:
        pass


def test_a_task_keeps_the_training_hooks_it_implements():
    task = TaskWithBackwardHook(MLP([2], 2), num_classes=2)
    assert unused_hooks(task, LightningModule, TRAINING_HOOKS) == [
        hook for hook in TRAINING_HOOKS if hook != "on_after_backward"
    ]
    skip_unused_batch_hooks([], task)
    assert callable(task.on_after_backward)
    assert task.on_before_backward is None


def test_a_logged_result_already_on_the_device_is_not_walked_again():
    results.install()
    result = _ResultMetric(_Metadata(fx="training_step", name="loss"), is_tensor=True)
    meta = result.meta
    assert result.to(torch.device("cpu")) is result
    assert result.meta is meta  # Lightning's walk through the result copies its metadata
    # Anything else walks as before: a dtype, another device.
    result.to(torch.float64)
    assert result.value.dtype == torch.float64
    assert result.meta is not meta
    result.to("meta")
    assert result.value.device.type == "meta"


def test_default_experiment_trains_into_the_documented_layout(run_cli, tmp_path, capsys):
    cli = run_cli("fit", "--trainer.max_epochs", "2")
    run = tmp_path / "lightning_logs" / DEFAULT_EXPERIMENT / "version_0"
    assert cli.trainer.log_dir == str(run.relative_to(tmp_path))
    assert list(run.glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["seed_everything"] == 0
    assert saved["experiment"] == DEFAULT_EXPERIMENT
    assert saved["data"]["class_path"] == "datamodules.FeatureClassificationData"
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("best-") for name in checkpoints)
    # Readable as any new file of the user's is (not private, as temporary files are).
    umask = os.umask(0o022)
    os.umask(umask)
    for name in checkpoints:
        assert stat.S_IMODE((run / "checkpoints" / name).stat().st_mode) == 0o666 & ~umask

    out = capsys.readouterr().out
    assert f"Run:         {cli.trainer.log_dir}" in out
    assert "last.ckpt" in out
    assert "best-" in out
    assert "tensorboard --logdir lightning_logs" in out

    run_cli("fit", "--trainer.max_epochs", "1")
    assert (run.parent / "version_1" / "config.yaml").exists()


def test_event_file_holds_the_contract_tags(run_cli, tmp_path):
    run_cli("fit", "--config", config("linear_regression"), "--trainer.max_epochs", "20")
    events = EventAccumulator(str(tmp_path / "lightning_logs/linear_regression/version_0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss_step", "train/loss_epoch", "val/loss", "val/mae", "val/r2"}
    assert expected | {"train/mae", "train/r2"} <= tags
    assert len(events.Scalars("train/loss_epoch")) == 20
    assert len(events.Scalars("val/loss")) == 2  # validation every 10 epochs in this experiment


def test_last_checkpoint_is_the_newest_even_without_improvement(run_cli, tmp_path):
    # With mode max, the "best" val/loss is the first epoch's and never improves; last.ckpt
    # must follow the run to its end all the same (Lightning 2.6 alone leaves it at epoch 0).
    run_cli("fit", "--trainer.max_epochs", "3", "--checkpoint.mode", "max")
    checkpoints = tmp_path / "lightning_logs" / DEFAULT_EXPERIMENT / "version_0" / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert last["global_step"] == 3 * 25
    (best,) = checkpoints.glob("best-*.ckpt")
    assert torch.load(best, weights_only=True)["epoch"] == 0


NO_TEST = ("--test_after_fit", "false")


def test_last_checkpoint_saved_with_the_best_is_that_file_under_a_second_name(
    run_cli, tmp_path, monkeypatch
):
    # val/loss improves in each of the first epochs (mode min), so the best and the last
    # checkpoint are saved together; with mode max only the first epoch is "best", and
    # last.ckpt is serialised on its own. The runs are otherwise the same.
    folders = {}
    for mode in ("min", "max"):
        (tmp_path / mode).mkdir()
        monkeypatch.chdir(tmp_path / mode)
        run_cli("fit", "--trainer.max_epochs", "3", "--checkpoint.mode", mode, *NO_TEST)
        folders[mode] = tmp_path / mode / "lightning_logs" / DEFAULT_EXPERIMENT / "version_0"
    checkpoints = folders["min"] / "checkpoints"
    (best,) = checkpoints.glob("best-*.ckpt")
    assert best.name == "best-epoch=2-step=75.ckpt"
    assert (checkpoints / "last.ckpt").samefile(best)
    (first,) = (folders["max"] / "checkpoints").glob("best-*.ckpt")
    assert not (folders["max"] / "checkpoints" / "last.ckpt").samefile(first)

    linked = torch.load(checkpoints / "last.ckpt", weights_only=True)
    alone = torch.load(folders["max"] / "checkpoints" / "last.ckpt", weights_only=True)
    # The state a checkpoint written on its own holds...
    assert (linked["epoch"], linked["global_step"]) == (alone["epoch"], alone["global_step"])
    assert linked["loops"] == alone["loops"]
    for name, tensor in alone["state_dict"].items():
        assert torch.equal(linked["state_dict"][name], tensor), name
    for key, state in alone["optimizer_states"][0]["state"].items():
        for name, tensor in state.items():
            assert torch.equal(linked["optimizer_states"][0]["state"][key][name], tensor), name
    # ... and the checkpoint callback's, as a separate save of last.ckpt would record it.
    (callback,) = (v for k, v in linked["callbacks"].items() if k.startswith("RunCheckpoint"))
    assert Path(callback["last_model_path"]).name == "last.ckpt"
    assert Path(callback["best_model_path"]).name == best.name
    # A run resumes from it like from any last.ckpt.
    monkeypatch.chdir(tmp_path / "min")
    run_cli("fit", "--trainer.max_epochs", "4", "--ckpt_path", "last", *NO_TEST)
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4 * 25


def test_experiment_name_can_be_set(run_cli, tmp_path):
    cli = run_cli(
        "fit",
        "--config",
        config("mlp_classification"),
        "--experiment",
        "mine",
        "--trainer.max_epochs",
        "1",
    )
    assert (tmp_path / "lightning_logs" / "mine" / "version_0" / "config.yaml").exists()
    assert cli.config.fit.experiment == "mine"


def test_default_root_dir_moves_the_log_root(run_cli, tmp_path):
    root = tmp_path / "elsewhere"
    run_cli("fit", "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root))
    assert (root / "lightning_logs" / DEFAULT_EXPERIMENT / "version_0" / "config.yaml").exists()


@pytest.mark.parametrize(
    ("optimizer", "lr"), [("torch.optim.SGD", 0.05), ("torch.optim.RMSprop", 0.002)]
)
def test_optimizer_is_selected_from_the_command_line(run_cli, optimizer, lr):
    cli = run_cli(
        "fit",
        "--model.init_args.optimizer.class_path",
        optimizer,
        "--model.init_args.optimizer.init_args.lr",
        str(lr),
        "--trainer.fast_dev_run",
        "true",
    )
    (built,) = cli.trainer.optimizers
    assert f"{type(built).__module__}.{type(built).__name__}".endswith(optimizer.split(".")[-1])
    assert built.param_groups[0]["lr"] == lr


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluation_subcommands_load_a_checkpoint_file(run_cli, tmp_path, subcommand):
    run_cli("fit", "--config", config("linear_regression"), "--trainer.max_epochs", "10")
    ckpt = tmp_path / "lightning_logs/linear_regression/version_0/checkpoints/last.ckpt"
    cli = run_cli(subcommand, "--config", config("linear_regression"), "--ckpt_path", str(ckpt))
    weights = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(cli.model.network.linear.weight, weights["network.linear.weight"])
    if subcommand != "predict":
        stage = "val" if subcommand == "validate" else "test"
        assert {f"{stage}/loss", f"{stage}/mae", f"{stage}/r2"} <= set(cli.trainer.callback_metrics)


def test_help_and_print_config_work_as_a_module(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "experiments", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    helped = run("fit", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--experiment" in helped.stdout
    assert "--checkpoint.monitor" in helped.stdout

    printed = run("fit", "--print_config")
    assert printed.returncode == 0, printed.stderr
    resolved = yaml.safe_load(printed.stdout)
    assert resolved["seed_everything"] == 0
    assert resolved["model"]["init_args"]["network"]["class_path"] == "models.MLP"
    assert not (tmp_path / "lightning_logs").exists()


def test_fit_from_the_command_line_exits_zero(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments",
            "fit",
            "--config",
            config("linear_regression"),
            "--trainer.max_epochs",
            "3",
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "tensorboard --logdir lightning_logs" in done.stdout
    assert (tmp_path / "lightning_logs/linear_regression/version_0/checkpoints/last.ckpt").exists()
    assert str(REPO) not in done.stdout  # paths are printed relative to where the user is
