"""Variants of one experiment: a run is evaluated and continued as it was trained.

A run trained with overrides (a GRU instead of the YAML's LSTM) is evaluated with
``--ckpt_path best`` or ``--config <run>/config.yaml`` without repeating them, and the
evaluation writes into that run: nothing new appears under ``lightning_logs/``.
"""

import warnings

import pytest
import torch
import yaml

from tests.conftest import NO_TEST, config, curves, run_dir

RECURRENT = config("recurrent")
SHORT = ("--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2")
SHORT += ("--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2")
GRU = ("--model.init_args.network.init_args.cell", "gru")


def runs(root):
    return sorted(p.name for p in (root / "lightning_logs" / "recurrent").iterdir())


@pytest.fixture
def gru_run(run_cli, trained, tmp_path):
    """A two-epoch ``recurrent`` run with a GRU, unlike its YAML; its directory."""
    trained("--config", RECURRENT, *GRU, "--trainer.max_epochs", "2", *SHORT, *NO_TEST)
    run = run_dir(tmp_path, "recurrent")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["network"]["init_args"]["cell"] == "gru"
    # The saved config is what the run is; where it logs and what it resumed from are not.
    assert saved["trainer"]["logger"] is None
    assert saved["ckpt_path"] is None
    return run


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_a_run_is_evaluated_with_its_own_config_and_into_itself(
    run_cli, tmp_path, gru_run, subcommand
):
    # Before: "network cell is 'gru' in the checkpoint but 'lstm' in the config".
    cli = run_cli(subcommand, "--config", RECURRENT, "--ckpt_path", "best", *SHORT)
    assert isinstance(cli.model.network.rnn, torch.nn.GRU)
    assert runs(tmp_path) == ["version_0"]
    if subcommand == "predict":
        assert (gru_run / "predictions.csv").is_file()
    else:
        stage = "val" if subcommand == "validate" else "test"
        assert f"{stage}/loss" in curves(gru_run)


def test_the_users_overrides_go_on_top_of_the_runs_config(run_cli, tmp_path, gru_run):
    cli = run_cli(
        "test", "--config", RECURRENT, "--ckpt_path", "last", "--data.init_args.batch_size", "16"
    )
    assert isinstance(cli.model.network.rnn, torch.nn.GRU)
    assert cli.datamodule.batch_size == 16
    assert runs(tmp_path) == ["version_0"]


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_a_runs_config_file_evaluates_its_best_checkpoint_in_the_run(
    run_cli, tmp_path, gru_run, subcommand
):
    # Before: each of these made a new, half-empty version_<n>.
    cli = run_cli(subcommand, "--config", str(gru_run / "config.yaml"), *SHORT)
    assert isinstance(cli.model.network.rnn, torch.nn.GRU)
    assert runs(tmp_path) == ["version_0"]
    assert "/checkpoints/best-" in str(cli.config[subcommand].ckpt_path)


def test_a_runs_config_file_continues_the_run(run_cli, tmp_path, gru_run):
    # The run was trained as lightning_logs/... and goes on through its absolute path: it is
    # the same directory, whose best checkpoint and last.ckpt are kept as they were.
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*dirpath has changed.*")
        cli = run_cli("fit", "--config", str(gru_run / "config.yaml"), "--trainer.max_epochs", "3")
    names = sorted(path.name for path in (gru_run / "checkpoints").iterdir())
    assert len(names) == 2, names  # no last-v1.ckpt beside them
    assert names[1] == "last.ckpt"
    assert cli.trainer.checkpoint_callback.best_model_path.endswith(names[0])
    assert cli.trainer.current_epoch == 3
    assert isinstance(cli.model.network.rnn, torch.nn.GRU)
    assert runs(tmp_path) == ["version_0"]
    assert len(curves(gru_run)["val/loss"]) == 3  # one point per epoch, all in one run


def test_fit_last_continues_the_newest_run_as_it_was_trained(run_cli, tmp_path, gru_run):
    cli = run_cli("fit", "--config", RECURRENT, "--ckpt_path", "last", "--trainer.max_epochs", "3")
    assert cli.trainer.current_epoch == 3
    assert isinstance(cli.model.network.rnn, torch.nn.GRU)
    # SHORT came from the run's config: the third epoch is as short as the first two.
    assert cli.trainer.limit_train_batches == 4
    assert runs(tmp_path) == ["version_0"]


def test_a_checkpoint_from_outside_any_run_is_checked_against_the_config(
    run_cli, tmp_path, gru_run, capsys
):
    outside = tmp_path / "elsewhere.ckpt"
    outside.write_bytes((gru_run / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(SystemExit) as stopped:
        run_cli("test", "--config", RECURRENT, "--ckpt_path", str(outside), *SHORT)
    assert stopped.value.code != 0
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'gru' in the checkpoint but 'lstm' in the config" in error
