"""What a user meets at the terminal: progress, the model summary, the run's summary, the
messages of a stop, and loading a run in Python."""

import fcntl
import json
import logging
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
import torch

import models
from experiments import runs
from experiments.cli import main
from tests.conftest import (
    MLP_RUN,
    NO_TEST,
    REPO,
    config,
    curves,
    experiments_command,
    run_dir,
    start_experiments,
    subprocess_env,
)

EPOCH_LINE = re.compile(r"^epoch (\d+)  step (\d+)  .*train/loss \S+  .*val/loss \S+  [\d.]+ s$")


@pytest.mark.slow  # the default experiment trained to its end, 100 epochs
def test_a_default_run_logged_to_a_file_is_a_line_per_epoch(tmp_path, monkeypatch, capsys):
    # In-process, its output captured (not a terminal), Lightning's log lines merged into it
    # as `> fit.log 2>&1` would. Figures are off: they print nothing and cost 10 draws.
    monkeypatch.chdir(tmp_path)
    for handler in logging.getLogger("lightning.pytorch").handlers:
        monkeypatch.setattr(handler, "stream", sys.stdout)
    main(["fit", "--figures.enabled", "false"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    # Before: 538 lines of bar redraws for the same run.
    assert len(lines) < 150, len(lines)
    assert "\r" not in text
    epochs = [int(m.group(1)) for m in map(EPOCH_LINE.match, lines) if m]
    assert epochs == list(range(100))
    # Lightning's note that training reached max_epochs comes after the last epoch's line.
    stopped = lines.index("`Trainer.fit` stopped: `max_epochs=100` reached.")
    assert EPOCH_LINE.match(lines[stopped - 1]).group(1) == "99"
    # The model summary, without the FLOPs that no model here counts.
    assert "Trainable params" in text
    assert "FLOPs" not in text
    assert "Flops" not in text
    # The run directory, in full, before anything trains.
    run = (tmp_path / "lightning_logs" / "mlp_classification" / "version_0").resolve()
    assert lines.index(f"Run directory: {run}") < lines.index(next(filter(EPOCH_LINE.match, lines)))


@pytest.mark.slow
def test_on_a_terminal_the_bar_stays(tmp_path):
    leader, follower = pty.openpty()
    # A terminal 120 columns wide (a new pseudo-terminal has none, and tqdm then draws nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        experiments_command("fit", "--trainer.max_epochs", "2", *NO_TEST, quiet=False),
        cwd=tmp_path,
        stdout=follower,
        stderr=follower,
        env=subprocess_env(),
    )
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert process.wait(timeout=120) == 0
    reader.join(timeout=10)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert "it/s" in text  # tqdm's bar
    assert not any(EPOCH_LINE.match(line.strip()) for line in text.splitlines())


def test_test_metrics_are_printed_once(run_cli, trained, capsys):
    trained(*MLP_RUN)
    run_cli("test", "--ckpt_path", "best")
    out = capsys.readouterr().out
    assert out.count("test/loss") == 1, out


def test_the_summary_shows_the_best_checkpoints_validation_metrics(run_cli, tmp_path, capsys):
    # A learning rate this high makes val/loss jump about: its last value is not its best.
    run_cli(
        "fit",
        "--trainer.max_epochs",
        "8",
        "--model.init_args.optimizer.init_args.lr",
        "0.3",
    )
    out = capsys.readouterr().out
    points = curves(run_dir(tmp_path, "mlp_classification"))["val/loss"]
    _, best = min(points, key=lambda point: point[1])
    assert best != points[-1][1], "the test needs a run whose last epoch is not its best"
    heading = re.search(r"At the best checkpoint \(epoch (\d+), by val/loss\):", out)
    assert heading is not None, out
    shown = float(re.search(r"^val/loss\s+(\S+)$", out, re.MULTILINE).group(1))
    assert shown == pytest.approx(best, abs=5e-5)
    # The runs table gives the same figure.
    table = runs.read_run(run_dir(tmp_path, "mlp_classification"))
    assert table.best_val_loss == pytest.approx(shown, abs=5e-5)
    assert f"best-epoch={heading.group(1)}-" in out


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (
            (
                "--trainer.callbacks+=EarlyStopping",
                "--trainer.callbacks.monitor",
                "val/loss",
                "--trainer.callbacks.patience",
                "1",
                "--trainer.callbacks.min_delta",
                "10",
            ),
            r"after epoch 1 by EarlyStopping: .*val/loss",
        ),
        (("--trainer.max_steps", "30"), r"after epoch 1: max_steps=30 reached"),
        (
            ("--trainer.max_time", "00:00:00:01", "--trainer.max_epochs", "10000"),
            r"after epoch \d+: the time limit max_time was reached",
        ),
    ],
    ids=["EarlyStopping", "max_steps", "max_time"],
)
def test_a_run_that_stops_early_says_why_in_one_line(run_cli, capsys, args, why):
    run_cli("fit", *args, *NO_TEST)
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Stopped:")]
    assert re.search(why, line), line


def test_a_run_that_reached_max_epochs_says_so_and_how_to_go_further(
    run_cli, trained, tmp_path, capsys
):
    trained(*MLP_RUN)
    run = run_dir(tmp_path, "mlp_classification")
    before = sorted(p.name for p in run.iterdir())
    run_cli("fit", "--ckpt_path", "last")  # returns: the command exits 0
    out = capsys.readouterr().out
    assert "Nothing to train" in out
    assert "has trained 2 epochs, and max_epochs is 2" in out
    further = re.search(r"To train further: python -m experiments (.+)$", out, re.MULTILINE)
    assert further is not None, out
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    # The command it shows does train further, in the same run.
    run_cli(*further.group(1).split())
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3


@pytest.mark.slow
def test_a_second_ctrl_c_exits_130_naming_the_last_complete_checkpoint(tmp_path):
    # The run is held in its second epoch, after the first epoch's checkpoint, and stays held
    # after the first Ctrl-C: the second one always finds an epoch under way, however busy
    # the machine.
    hold = tmp_path / "hold"
    hold.touch()
    held = {"class_path": "tests.plugins.Hold", "init_args": {"path": str(hold)}}
    held["init_args"]["until_stopped"] = False
    last = run_dir(tmp_path, "mlp_classification") / "checkpoints" / "last.ckpt"
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        process = start_experiments(
            tmp_path,
            "fit",
            "--config",
            config("mlp_classification"),
            *NO_TEST,
            f"--trainer.callbacks+={json.dumps(held)}",
            stderr=stderr,
        )
        try:
            wait_until(lambda: last.exists(), process, f"{last} to appear")
            process.send_signal(signal.SIGINT)
            # Two signals close together may reach Python's handler as one: the second goes
            # once the first has been heard.
            wait_until(lambda: "SIGINT received" in errors.read_text(), process, "the first")
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=120)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 130, errors.read_text()
    assert (
        "last complete checkpoint lightning_logs/mlp_classification/version_0/checkpoints/last.ckpt"
        in out
    )
    assert "Continue with: python -m experiments fit --config" in out
    assert torch.load(last, weights_only=True)["epoch"] == 0  # complete: it loads


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited before {what}"
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.05)


def test_weights_only_false_is_refused_in_one_line(run_cli, trained, capsys):
    trained(*MLP_RUN)
    with pytest.raises(SystemExit) as stopped:
        run_cli("test", "--ckpt_path", "last", "--weights_only", "false")
    assert stopped.value.code != 0
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("error: --weights_only false")


def test_help_says_what_the_program_and_its_options_are(tmp_path, monkeypatch, capsys):
    # As `python -m experiments` runs it: argv[0] is the package's __main__.py.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(REPO / "experiments" / "__main__.py")])
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--experiment", "--fast_path", "--checkpoint.monitor", "--figures.enabled"):
        assert option in text
    assert text.startswith("usage: python -m experiments fit")
    assert "__main__" not in text
    assert "Lightning Trainer command line tool" not in text
    ckpt_path = text[text.index("  --ckpt_path CKPT_PATH") :][:500]
    assert "hpc" not in ckpt_path
    assert "registry" not in ckpt_path
    # The project's options come before the Trainer's.
    assert text.index("--experiment") < text.index("--trainer.accelerator")
    assert text.index("--checkpoint.monitor") < text.index("--trainer.accelerator")
    assert "'last' (the newest run's last.ckpt)" in " ".join(ckpt_path.split())
    weights_only = " ".join(text[text.index("  --weights_only") :][:600].split())
    assert "default: True" in weights_only
    assert "recommend" not in weights_only
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    top = capsys.readouterr().out
    assert top.startswith("usage: python -m experiments")
    assert "Train, evaluate and predict" in top
    # One network's options, as `python -m experiments` names its program.
    with pytest.raises(SystemExit) as done:
        main(["fit", "--model.init_args.network.help", "models.MLP"])
    assert done.value.code == 0
    network = capsys.readouterr().out
    assert network.startswith("usage: python -m experiments")
    assert "--model.init_args.network.init_args.hidden_sizes" in network
    assert "--network.hidden_sizes" not in network  # not an option the command line takes


USER_NETWORK = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, input_shape: list[int], num_outputs: int, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(input_shape[0], width),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(width, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
"""


def test_a_users_network_trains_loads_in_python_or_says_what_to_do(run_cli, tmp_path, monkeypatch):
    # In-process: the user's folder on the import path stands in for PYTHONPATH.
    code = tmp_path / "code"
    code.mkdir()
    (code / "usernet.py").write_text(USER_NETWORK)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "usernet", raising=False)
    run_cli(
        "fit",
        "--model.init_args.network.class_path",
        "usernet.Tiny",
        "--trainer.max_epochs",
        "1",
        *NO_TEST,
    )
    checkpoint = run_dir(tmp_path, "mlp_classification") / "checkpoints" / "last.ckpt"
    task = models.load_task(checkpoint)
    assert not task.training  # dropout off: predictions are deterministic
    x = torch.randn(4, 10)
    assert torch.equal(task(x), task(x))
    # Where the network's module is not importable: one message naming it and what to do.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(code)])
    monkeypatch.delitem(sys.modules, "usernet")
    with pytest.raises(ModuleNotFoundError) as missing:
        models.load_task(checkpoint)
    last = str(missing.value).strip().splitlines()[-1]
    assert "usernet.Tiny" in last
    assert "PYTHONPATH" in last


def test_a_run_without_a_progress_bar_prints_no_epoch_lines(trained):
    out = trained(*MLP_RUN)  # what the fit printed; trained runs have no bar
    assert "Run directory:" in out
    assert not [line for line in out.splitlines() if line.startswith("epoch ")]


def test_a_long_run_prints_about_a_hundred_epoch_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # output captured by pytest: not a terminal
    epochs = ["--trainer.max_epochs", "250", "--figures.enabled", "false", *NO_TEST]
    main(["fit", "--config", config("linear_regression"), *epochs])
    lines = capsys.readouterr().out.splitlines()
    shown = [int(m.group(1)) for m in map(re.compile(r"^epoch (\d+)  step ").match, lines) if m]
    # Every third epoch of 250 (rounded up from 2.5), the first and the last.
    assert shown == [0, *range(2, 249, 3), 249]
