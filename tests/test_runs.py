"""``python -m experiments.runs``: the runs under ``lightning_logs/`` as a table."""

import re
import signal
import subprocess
import sys
import time

from experiments import runs
from tests.conftest import LINEAR_RUN, NO_TEST, config, curves, run_dir, subprocess_env


def test_runs_table_lists_each_run(trained, tmp_path, capsys):
    began = time.time()
    trained("--config", config("scratch_two_layer"), "--trainer.max_epochs", "12")
    trained(*LINEAR_RUN)
    assert runs.main(["--root", str(tmp_path / "lightning_logs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "experiment",
        "version",
        "started",
        "took",
        "epochs",
        "best",
        "val/loss",
        "metric",
        "val",
        "at",
        "best",
        "test",
        "stopped",
    ]
    # The start's date and time, and how long it trained, are three words of the line.
    rows = {line.split()[0]: line.split()[:2] + line.split()[5:] for line in lines[2:]}
    assert set(rows) == {"scratch_two_layer", "linear_regression"}
    for line in lines[2:]:
        date, minute, took = line.split()[2:5]
        year = time.localtime().tm_year
        started = time.mktime(time.strptime(f"{year}-{date} {minute}", "%Y-%m-%d %H:%M"))
        assert began - 60 <= started <= time.time()
        assert re.fullmatch(r"\d+s", took)  # seconds: shared runs of a few epochs
    assert rows["scratch_two_layer"][1:3] == ["0", "12"]
    assert rows["linear_regression"][1:3] == ["0", "20"]
    best = min(value for _, value in curves(run_dir(tmp_path, "linear_regression"))["val/loss"])
    assert rows["linear_regression"][3] == f"{best:.4f}"
    assert rows["linear_regression"][4] == "r2"
    assert rows["scratch_two_layer"][4] == "acc"
    assert rows["scratch_two_layer"][7] == "-"  # ran to max_epochs


def test_the_settings_that_differ_and_an_early_stop_are_columns(run_cli, tmp_path, capsys):
    scratch = ("--config", config("scratch_two_layer"), "--trainer.max_epochs", "12")
    run_cli("fit", *scratch)
    # A wider network, stopped early from the command line: no improvement of 10 in val/loss.
    early = ("--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor", "val/loss")
    early += ("--trainer.callbacks.patience", "1", "--trainer.callbacks.min_delta", "10")
    run_cli("fit", *scratch, "--model.init_args.network.init_args.hidden_size", "16", *early)
    run_cli("fit", "--config", config("linear_regression"), "--trainer.max_epochs", "3")
    capsys.readouterr()
    assert runs.main(["--root", str(tmp_path / "lightning_logs")]) == 0
    header, _, *lines = capsys.readouterr().out.splitlines()
    columns = header.split()[header.split().index("stopped") + 1 :]
    # What differs between the two scratch_two_layer runs, and only that: the other
    # experiment's settings are not compared with theirs, and the callback's own arguments
    # are not columns of their own while only one run has it.
    assert columns == ["callbacks", "network.hidden_size"]
    rows = {
        line.split()[1] + line.split()[0]: line.split()[:2] + line.split()[5:] for line in lines
    }
    plain, stopped = rows["0scratch_two_layer"], rows["1scratch_two_layer"]
    assert plain[7:] == ["-", "-", "8"]
    assert stopped[7:] == ["EarlyStopping@1", "EarlyStopping", "16"]
    assert rows["0linear_regression"][7:] == ["-", "-", "-"]
    assert stopped[2] == "2"  # epochs 0 and 1
    # TensorBoard's hyperparameters tab holds the same: the callbacks and the early stop.
    hparams = runs.session_hparams(run_dir(tmp_path, "scratch_two_layer", 1))
    assert hparams["callbacks"] == "EarlyStopping"
    assert hparams["callbacks.EarlyStopping.patience"] == 1
    assert (hparams[runs.STOPPED_BY], hparams[runs.STOPPED_AT]) == ("EarlyStopping", 1)


def test_runs_table_refuses_a_missing_directory(tmp_path, capsys):
    assert runs.main(["--root", str(tmp_path / "nowhere")]) == 2  # a usage error
    assert (
        capsys.readouterr().err == f"error: --root {tmp_path / 'nowhere'}: no such log directory\n"
    )


def test_long_settings_are_shortened_and_the_table_stays_narrow():
    names = [f"feature_{n}" for n in range(30)]
    listed = [
        runs.Run("own", str(n), 5, 0.5, "acc", 0.9, None, settings={"data.features": str(names)})
        for n in range(2)
    ]
    listed[1].settings["data.features"] = str(names[:-1])
    listed[0].started, listed[0].seconds = time.time(), 3725.0
    listed[1].started = time.mktime((2025, 12, 6, 16, 22, 0, 0, 0, -1))
    text = runs.format_table(listed)
    assert max(len(line) for line in text.splitlines()) <= 120, text
    header, _, first, second = text.splitlines()
    assert header.split()[-1] == "data.features"
    assert first.endswith(
        "  1h02m  5       0.5000         acc     0.9000       -     -        [30: feature_0, fe…]"
    )
    assert second.startswith("own         1        2025-12-06   -      5")
    assert second.endswith("[29: feature_0, fe…]")
    assert runs.brief("/a/very/long/path/to/the/users/data.csv") == "/a/very/long/path/t…"
    assert (runs.duration_text(42.4), runs.duration_text(185)) == ("42s", "3m05s")


def test_a_run_trained_further_shows_the_epochs_it_was_trained_to(run_cli, tmp_path, capsys):
    scratch = ("--config", config("scratch_two_layer"), *NO_TEST, "--trainer.max_epochs")
    run_cli("fit", *scratch, "2")
    run_cli("fit", *scratch, "2")
    run_cli("fit", *scratch, "3", "--ckpt_path", "last")  # run 1, trained one epoch further
    capsys.readouterr()
    assert runs.main(["--root", str(tmp_path / "lightning_logs")]) == 0
    header, _, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "max_epochs"
    assert {line.split()[1]: line.split()[-1] for line in lines} == {"0": "2", "1": "3"}


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path):
    # `python -m experiments.runs | head`: the pipe closes before the table is written.
    (tmp_path / "lightning_logs").mkdir()
    command = [sys.executable, "-m", "experiments.runs", "--root", str(tmp_path / "lightning_logs")]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env()
    )
    process.stdout.close()  # the reader is gone before the listing is written
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE
    assert err == ""  # no BrokenPipeError traceback
