"""``python -m experiments``: every experiment runs, runs land where the README says, the
options work, mistakes are one line, and the same command runs data-parallel."""

import csv
import inspect
import os
import stat

import pytest
import torch
import yaml
from lightning.pytorch import cli as lightning_cli
from lightning.pytorch.cli import LightningCLI

from experiments.cli import DEFAULT_EXPERIMENT, main
from experiments.errors import UserError
from experiments.predictions import PredictionWriter
from tests.conftest import (
    EXPERIMENTS,
    LINEAR_RUN,
    NO_TEST,
    QUIET,
    REPO,
    config,
    curves,
    last_values,
    run_dir,
    run_experiments,
)

MLP = config("mlp_classification")
REGRESSION = config("two_layer_relu")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_runs_fast_dev_run(run_cli, path):
    cli = run_cli("fit", "--config", str(path), "--trainer.fast_dev_run", "true")
    assert cli.trainer.state.finished
    assert cli.config.fit.experiment == path.stem
    assert cli.trainer.callback_metrics["train/loss_step"].isfinite()
    # The predictions writer only joins predict's trainer, the one where it acts.
    assert not any(isinstance(cb, PredictionWriter) for cb in cli.trainer.callbacks)


def test_default_experiment_trains_into_the_documented_layout(run_cli, tmp_path, capsys):
    cli = run_cli("fit", "--trainer.max_epochs", "2")
    run = run_dir(tmp_path, DEFAULT_EXPERIMENT)
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


def test_event_file_holds_the_contract_tags(trained, tmp_path):
    # A network whose every argument is linked from the data: Lightning's dump of the config
    # needs the init_args that ExperimentCLI._dump_config adds.
    trained(*LINEAR_RUN)
    series = curves(run_dir(tmp_path, "linear_regression"))
    expected = {"train/loss_step", "train/loss_epoch", "val/loss", "val/mae", "val/r2"}
    assert expected | {"train/mae", "train/r2", "test/loss", "test/r2"} <= set(series)
    assert len(series["train/loss_epoch"]) == 20
    assert len(series["val/loss"]) == 2  # validation every 10 epochs in this experiment


def test_experiment_name_can_be_set(run_cli, tmp_path):
    cli = run_cli("fit", "--config", MLP, "--experiment", "mine", "--trainer.max_epochs", "1")
    assert (run_dir(tmp_path, "mine") / "config.yaml").exists()
    assert cli.config.fit.experiment == "mine"


def test_default_root_dir_moves_the_log_root(run_cli, tmp_path):
    root = tmp_path / "elsewhere"
    run_cli("fit", "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root))
    assert (run_dir(root, DEFAULT_EXPERIMENT) / "config.yaml").exists()


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
def test_evaluation_subcommands_load_a_checkpoint_file(run_cli, trained, tmp_path, subcommand):
    trained("--config", config("linear_regression"), "--trainer.max_epochs", "10")
    ckpt = run_dir(tmp_path, "linear_regression") / "checkpoints/last.ckpt"
    cli = run_cli(subcommand, "--config", config("linear_regression"), "--ckpt_path", str(ckpt))
    weights = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(cli.model.network.linear.weight, weights["network.linear.weight"])
    if subcommand != "predict":
        stage = "val" if subcommand == "validate" else "test"
        assert {f"{stage}/loss", f"{stage}/mae", f"{stage}/r2"} <= set(cli.trainer.callback_metrics)


def test_print_config_prints_the_resolved_config_and_writes_nothing(run_cli, tmp_path, capsys):
    # In-process: the printing is the subject, not the interpreter (the tests that start
    # `python -m experiments` for signals and parallel runs show that it runs as a module).
    with pytest.raises(SystemExit) as done:
        main(["fit", "--print_config"])
    assert done.value.code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["seed_everything"] == 0
    assert resolved["model"]["init_args"]["network"]["class_path"] == "models.MLP"
    assert not (tmp_path / "lightning_logs").exists()


def test_fit_ends_normally_and_prints_paths_relative_to_where_the_user_is(
    run_cli, tmp_path, capsys
):
    # Exit status 0: main() returns (a failure raises SystemExit with a non-zero status).
    run_cli("fit", "--config", config("linear_regression"), "--trainer.max_epochs", "3")
    out = capsys.readouterr().out
    assert "tensorboard --logdir lightning_logs" in out
    assert (run_dir(tmp_path, "linear_regression") / "checkpoints/last.ckpt").exists()
    assert str(REPO) not in out


# Mistakes in the command line that only a built experiment shows, with the words the one line
# must hold. (The parser's own refusals are in test_parser.py, the run checks in test_sanity.py.)
BUILD_ERRORS = {
    "zero samples": (
        ["--data.init_args.num_samples", "0"],
        ["cannot build the experiment: num_samples must be a positive integer, got 0"],
    ),
    "negative features": (
        ["--data.init_args.num_features", "-3"],
        ["num_features must be a positive integer, got -3"],
    ),
    "zero hidden units": (
        ["--model.init_args.network.init_args.hidden_sizes", "[0]"],
        ["hidden_sizes entry must be a positive integer, got 0"],
    ),
    "one class": (
        ["--data.init_args.num_classes", "1"],
        ["num_classes must be an integer >= 2, got 1"],
    ),
    "zero batch size": (
        ["--data.init_args.batch_size", "0"],
        ["batch_size must be a positive integer or null, got 0"],
    ),
    "zero epochs": (
        ["--trainer.max_epochs", "0"],
        ["trainer.max_epochs must be a positive integer, got 0"],
    ),
    "fraction of zero": (
        ["--data.init_args.val_fraction", "0"],
        ["val_fraction must be in (0, 1), got 0"],
    ),
    "fraction above one": (
        ["--data.init_args.test_fraction", "1.5"],
        ["test_fraction must be in (0, 1), got 1.5"],
    ),
    "fractions summing to one": (
        ["--data.init_args.val_fraction", "0.6", "--data.init_args.test_fraction", "0.4"],
        ["val_fraction + test_fraction must be below 1"],
    ),
    "a stage without a batch": (
        ["--data.init_args.num_samples", "10", "--data.init_args.val_fraction", "0.01"],
        ["val split of 10 samples with val_fraction 0.01 is empty"],
    ),
    "learning rate zero": (
        ["--model.init_args.optimizer.init_args.lr", "0"],
        ["learning rate must be > 0, got 0"],
    ),
    "regression network under the classification task": (
        ["--config", REGRESSION, "--model.class_path", "models.ClassificationTask"],
        ["ClassificationTask", "num_classes"],
    ),
    "image network on feature vectors": (
        ["--model.init_args.network.class_path", "models.CNN"],
        ["input_shape must have 3 entries, got [10]"],
    ),
}


@pytest.mark.parametrize(("args", "words"), BUILD_ERRORS.values(), ids=BUILD_ERRORS.keys())
def test_a_mistake_found_while_building_gets_one_line(run_cli, tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", MLP, *args)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith("error: ")
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: it would train")
def test_asking_for_a_gpu_on_a_machine_without_one_gets_one_line(run_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", MLP, "--trainer.accelerator", "gpu")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith("error: trainer: ")
    assert "gpu" in line.lower()


def test_a_traceback_is_opt_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPERIMENTS_TRACEBACK", "1")
    with pytest.raises(UserError, match="batch_size must be a positive integer or null"):
        main(["fit", "--config", MLP, "--data.init_args.batch_size", "0", *QUIET])


def test_the_private_hooks_overridden_for_behaviour_are_still_lightnings():
    # ExperimentCLI overrides two private LightningCLI methods (see their comments); if
    # Lightning renamed or stopped calling them, the overrides would silently do nothing.
    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI.__init__)
    assert "self.cli._dump_config()" in inspect.getsource(lightning_cli)  # its instantiator
    for name in ("_parse_ckpt_path", "_dump_config"):
        assert list(inspect.signature(getattr(LightningCLI, name)).parameters) == ["self"]
    # ExperimentCLI._dump_config makes Lightning's dump itself (without a second check of the
    # config): were Lightning to dump otherwise, it would have to follow.
    dump = inspect.getsource(LightningCLI._dump_config)
    assert "self.parser.dump(self.config, skip_link_targets=False, skip_none=False" in dump
    assert "self.config_dump = self.config_dump[self.config.subcommand]" in dump


DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
# 1000 samples: 800 to train on, 400 per process, 13 steps of 32 per process and epoch.
DATA = ("--config", MLP, "--data.init_args.num_samples", "1000")


def ddp_experiments(cwd, *args: str) -> None:
    done = run_experiments(cwd, *args)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def predictions(run) -> list[dict[str, str]]:
    with (run / "predictions.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow(seconds=36)
def test_two_processes_shard_sync_write_once_resume_exactly_and_predict(tmp_path, monkeypatch):
    """Data parallelism with Lightning's DDP strategy: two CPU processes talking over gloo."""
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    resumed.mkdir()
    straight.mkdir()
    run = run_dir(resumed, DEFAULT_EXPERIMENT).relative_to(resumed)
    first = ddp_experiments(resumed, "fit", *DATA, *DDP, "--trainer.max_epochs", "2", *NO_TEST)
    ddp_experiments(resumed, "fit", *DATA, *DDP, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    ddp_experiments(straight, "fit", *DATA, *DDP, "--trainer.max_epochs", "3")

    # One run, written once: a single version, config and summary; no stray partial files.
    for root in (resumed, straight):
        assert sorted(p.name for p in (root / run).parent.iterdir()) == ["version_0"]
        files = sorted(p.name for p in (root / run / "checkpoints").iterdir())
        assert len(files) == 2
        assert "last.ckpt" in files
    assert [line for line in first.stdout.splitlines() if line.startswith("Run:")] == [
        f"Run:         {run}"
    ]

    # Each process trained on its own half: 13 steps an epoch, not the 25 of the whole split.
    last = torch.load(resumed / run / "checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 39)
    # Stopped after 2 epochs and resumed to 3 equals 3 epochs straight, bit for bit.
    other = torch.load(straight / run / "checkpoints/last.ckpt", weights_only=True)
    for name, weights in last["state_dict"].items():
        assert torch.equal(weights, other["state_dict"][name]), name
    assert curves(resumed / run)["train/loss_epoch"] == curves(straight / run)["train/loss_epoch"]

    # Validation and test metrics, synchronised across the two processes, equal what one
    # process computes on the whole split with the same weights.
    two = last_values(straight / run)
    monkeypatch.chdir(straight)  # the one-process runs go in-process: no second start-up
    main(["validate", *DATA, "--ckpt_path", "last", *QUIET])
    main(["test", *DATA, "--ckpt_path", "best", *QUIET])
    one = last_values(straight / run)
    for tag in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert two[tag] == pytest.approx(one[tag], abs=1e-6), tag

    # Each process predicts its shard; the file holds every test sample once, in order, as one
    # process writes it.
    ddp_experiments(straight, "predict", *DATA, *DDP, "--ckpt_path", "last")
    two = predictions(straight / run)
    main(["predict", *DATA, "--ckpt_path", "last", *QUIET])
    one = predictions(straight / run)
    assert [row["index"] for row in two] == [str(i) for i in range(100)]
    assert [row["class"] for row in two] == [row["class"] for row in one]
    for a, b in zip(two, one, strict=True):
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=1e-6)
