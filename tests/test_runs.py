"""``python -m experiments.runs``: the runs under ``lightning_logs/`` as a table."""

from experiments import runs
from tests.conftest import config, curves, run_dir


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
    best = min(value for _, value in curves(run_dir(tmp_path, "linear_regression"))["val/loss"])
    assert rows["linear_regression"][3] == f"{best:.4f}"
    assert rows["linear_regression"][4] == "r2"
    assert rows["scratch_two_layer"][4] == "acc"


def test_runs_table_refuses_a_missing_directory(tmp_path, capsys):
    assert runs.main(["--root", str(tmp_path / "nowhere")]) == 1
    assert "no log directory at" in capsys.readouterr().err
