"""Sweeps: trials are ordinary runs; studies survive Ctrl-C, SIGKILL and more workers; bad sweep
files are refused before anything runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from experiments import runs
from experiments.cli import main as experiments_main
from experiments.errors import UserError
from experiments.sweep import spec
from experiments.sweep.cli import main as sweep_main
from experiments.sweep.study import JOURNAL
from tests.conftest import QUIET, config, curves, new_database, subprocess_env, written_by

LR = "model.init_args.optimizer.init_args.lr"
HIDDEN = "model.init_args.network.init_args.hidden_sizes"
SMALL = ["--trainer.max_epochs", "6", "--data.init_args.num_samples", "200"]
SMALL += ["--figures.enabled", "false"]  # a trial's figures are not what these tests look at


def sweep_file(directory: Path, name: str = "quick", **settings: object) -> Path:
    """A sweep of two_layer_relu, 6 epochs on 200 samples, with ``settings`` over the defaults."""
    content = {
        "config": config("two_layer_relu"),
        "metric": "val/r2",
        "direction": "maximize",
        "trials": 4,
        "sampler": "grid",
        "pruner": "none",
        "args": SMALL,
        "space": {LR: [0.05, 0.1], HIDDEN: [[5], [20]]},
        **settings,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def held(path: Path) -> list[str]:
    """Arguments that hold each trial before its second epoch while ``path`` exists
    (tests.plugins.Hold): a test meets trials at a known point, however busy the machine."""
    callback = {"class_path": "tests.plugins.Hold", "init_args": {"path": str(path)}}
    return [f"--trainer.callbacks+={json.dumps(callback)}"]


def study_of(directory: Path, name: str = "quick") -> optuna.Study:
    journal = directory / "lightning_logs" / name / JOURNAL
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    return optuna.load_study(study_name=name, storage=storage)


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials():
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def start_sweep(cwd: Path, *args: str) -> subprocess.Popen:
    """``python -m experiments.sweep ARGS`` in a process group of its own, as from a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)


# The sweep file ------------------------------------------------------------------------------


def test_a_sweep_file_is_read_into_dimensions(tmp_path):
    path = sweep_file(
        tmp_path,
        space={
            LR: {"low": 1.0e-4, "high": 0.3, "log": True},
            HIDDEN: [[5], [20], [50, 50]],
            "data.init_args.batch_size": {"low": 16, "high": 64, "step": 16},
        },
        sampler="tpe",
    )
    sweep = spec.load(path, trials=7)
    assert (sweep.name, sweep.trials, sweep.config) == ("quick", 7, Path(config("two_layer_relu")))
    lr, hidden, batch = sweep.space.values()
    assert isinstance(lr.distribution(), optuna.distributions.FloatDistribution)
    assert lr.distribution().log
    assert isinstance(batch.distribution(), optuna.distributions.IntDistribution)
    assert batch.grid() == [16, 32, 48, 64]
    # Lists are stored as JSON text (Optuna's choices are plain values) and decoded back.
    assert hidden.distribution().choices == ("[5]", "[20]", "[50, 50]")
    assert hidden.decode("[50, 50]") == [50, 50]
    assert sweep.trial_args({HIDDEN: [50, 50], LR: 0.01})[-4:] == [
        f"--{HIDDEN}",
        "[50, 50]",
        f"--{LR}",
        "0.01",
    ]


BAD_FILES = {
    "empty choices": ({"space": {LR: []}}, f"space: {LR}: the list of choices is empty"),
    "low above high": (
        {"space": {LR: {"low": 0.3, "high": 0.1}}},
        f"space: {LR}: low must be below high, got low 0.3 and high 0.1",
    ),
    "log from zero": (
        {"space": {LR: {"low": 0.0, "high": 0.1, "log": True}}},
        f"space: {LR}: a log range needs low > 0, got low 0.0",
    ),
    "unknown sampler": (
        {"sampler": "bayes"},
        "sampler must be one of tpe, random, grid, got 'bayes'",
    ),
    "unknown pruner": (
        {"pruner": "hyperband"},
        "pruner must be one of median, none, got 'hyperband'",
    ),
    "grid over floats": (
        {"space": {LR: {"low": 0.01, "high": 0.1}}},
        f"space: {LR}: the grid sampler needs choices or an int range",
    ),
    "unknown key": ({"budget": 3}, "unknown key 'budget'"),
    "missing base": (
        {"config": "experiments/nope.yaml"},
        "config experiments/nope.yaml: no such file",
    ),
}


@pytest.mark.parametrize(("settings", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_malformed_sweep_file_is_named_in_one_line(tmp_path, settings, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec.load(sweep_file(tmp_path, **settings))


# Bad input through the command: one line, exit 2, nothing written ----------------------------

REFUSED = {
    "a key the experiment lacks": (
        {"space": {"model.init_args.network.init_args.hiden_sizes": [[5], [20]]}},
        ["hiden_sizes", "did you mean hidden_sizes"],
    ),
    "a value its type refuses": (
        {"space": {LR: ["fast", 0.1]}},
        [LR, "expected float", "'fast'"],
    ),
    "a metric never logged": (
        {"metric": "val/acc"},
        ["metric val/acc is not one that RegressionTask logs every epoch", "val/r2"],
    ),
}


@pytest.mark.parametrize(("settings", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_a_sweep_that_cannot_run_is_refused_before_any_trial(
    tmp_path, monkeypatch, capsys, settings, words
):
    monkeypatch.chdir(tmp_path)
    path = sweep_file(tmp_path, **settings)
    assert sweep_main([str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path.resolve()}: ")
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "lightning_logs").exists()


def test_a_storage_that_cannot_be_reached_is_named_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = "postgresql://someone:secret@127.0.0.1:1/nothing"
    assert sweep_main([str(sweep_file(tmp_path)), "--storage", url]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "error: --storage postgresql://someone:***@127.0.0.1:1/nothing: cannot reach it: "
    )
    assert "secret" not in line


def test_a_sweep_file_changed_under_an_existing_study_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "lightning_logs" / "quick" / JOURNAL
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    earlier = spec.load(sweep_file(tmp_path, metric="val/mae", direction="minimize"))
    made = optuna.create_study(study_name="quick", storage=storage, direction="minimize")
    made.set_user_attr("definition", earlier.definition())
    before = journal.read_bytes()
    assert sweep_main([str(sweep_file(tmp_path))]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "its metric differs from that of the study 'quick' ('val/mae', now 'val/r2')" in line
    assert journal.read_bytes() == before
    assert sorted(p.name for p in journal.parent.iterdir()) == [JOURNAL]


# Sweeps that run --------------------------------------------------------------------------


@pytest.mark.slow(seconds=22)
def test_two_workers_survive_a_sigkill_prune_and_leave_ordinary_runs(tmp_path, monkeypatch, capsys):
    # Eight trials: four seeds each of a learning rate that learns and of one that does not;
    # the median rule stops the second kind once five trials have finished.
    path = sweep_file(
        tmp_path,
        trials=8,
        pruner="median",
        args=[*SMALL, *held(tmp_path / "hold")],
        space={LR: [0.05, 1.0e-5], "seed_everything": [0, 1, 2, 3]},
    )
    (tmp_path / "hold").touch()  # the first trials wait after their first checkpoint
    sweep = start_sweep(tmp_path, str(path), "--workers", "2")
    sweep_dir = tmp_path / "lightning_logs" / "quick"

    def victim() -> int | None:
        """A worker other than the leading process, training a trial with a checkpoint."""
        for run in sweep_dir.glob("version_*"):
            lock = run / "run.lock"
            if (run / "checkpoints/last.ckpt").exists() and lock.exists():
                holder = lock.read_text().split()
                if len(holder) == 2 and int(holder[1]) != sweep.pid:
                    return int(holder[1])
        return None

    wait_for(lambda: victim() is not None, sweep, "a worker's checkpoint")
    killed = victim()
    os.kill(killed, signal.SIGKILL)
    (tmp_path / "hold").unlink()
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]

    study = study_of(tmp_path)
    counts = states(study)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 8
    assert counts.get("RUNNING", 0) == counts.get("FAIL", 0) == 0
    assert counts.get("PRUNED", 0) >= 1
    # The killed worker's trial was taken over and went on from its checkpoint, in its own
    # run: each epoch's point once, the last one the sixth.
    (taken,) = [int(line.split()[1]) for line in out.splitlines() if "taken over" in line]
    taken_run = sweep_dir / f"version_{taken}"
    steps = [step for step, _ in curves(taken_run)["train/loss_epoch"]]
    assert steps == sorted(set(steps))
    assert {written_by(events) for events in taken_run.glob("events.out.tfevents.*")} == {
        killed,
        sweep.pid,
    }
    # Every trial is an ordinary run, pruned ones included.
    for trial in study.get_trials():
        run = sweep_dir / f"version_{trial.number}"
        assert (run / "config.yaml").is_file()
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert "val/r2" in curves(run)
    assert {"best.yaml", "history.png", "parameters.png"} <= {p.name for p in sweep_dir.iterdir()}
    assert "Best:        trial" in out
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert runs.main(["quick"]) == 0
    listed = capsys.readouterr().out.splitlines()[2:]
    assert sorted(int(line.split()[1]) for line in listed) == list(range(8))

    # best.yaml trains the best trial again to the same score.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["experiments"])
        again = experiments_main(["fit", "--config", str(sweep_dir / "best.yaml"), *QUIET])
    scores = [value for _, value in curves(again.trainer.log_dir)["val/r2"]]
    assert max(scores) == study.best_value


@pytest.mark.slow(seconds=14)
def test_ctrl_c_stops_every_worker_and_the_same_command_ends_with_exactly_n(
    tmp_path, monkeypatch, capsys
):
    path = sweep_file(
        tmp_path,
        sampler="random",
        args=[*SMALL, *held(tmp_path / "hold")],
        space={LR: {"low": 0.03, "high": 0.1}},
    )
    (tmp_path / "hold").touch()  # trials wait after their first checkpoint, or for Ctrl-C
    sweep = start_sweep(tmp_path, str(path), "--workers", "2")
    sweep_dir = tmp_path / "lightning_logs" / "quick"
    wait_for(
        lambda: len(list(sweep_dir.glob("version_*/checkpoints/last.ckpt"))) >= 2,
        sweep,
        "two trials with checkpoints",
    )
    os.killpg(sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    (tmp_path / "hold").unlink()
    stopped = states(study_of(tmp_path))
    assert stopped.get("RUNNING", 0) >= 1  # interrupted, checkpointed, not counted
    interrupted = [
        t.number for t in study_of(tmp_path).get_trials() if t.state == TrialState.RUNNING
    ]
    for number in interrupted:
        assert (sweep_dir / f"version_{number}" / "checkpoints" / "last.ckpt").is_file()

    # The same command again, and then with more trials: in-process, as its one worker trains
    # there (the signals were the processes' part).
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert states(study_of(tmp_path)) == {"COMPLETE": 4}
    for number in interrupted:
        assert f"trial {number} taken over" in out
        steps = [s for s, _ in curves(sweep_dir / f"version_{number}")["train/loss_epoch"]]
        assert len(steps) == 6  # resumed where it stopped: every epoch once
        assert steps == sorted(set(steps))
    # More trials on a finished study: it goes on to the new number.
    assert sweep_main([str(path), "--trials", "6"]) == 0
    assert states(study_of(tmp_path)) == {"COMPLETE": 6}


@pytest.mark.slow(seconds=12)
def test_workers_on_two_machines_share_one_study_in_postgresql(tmp_path, postgres):
    # Two commands started together, each with one worker, stand in for two machines sharing
    # the run directory.
    url = new_database(postgres, "two_machines")
    path = sweep_file(tmp_path, args=[*SMALL, *held(tmp_path / "hold")])
    (tmp_path / "hold").touch()
    first = start_sweep(tmp_path, str(path), "--storage", url)
    time.sleep(1.0)
    second = start_sweep(tmp_path, str(path), "--storage", url)
    # Each command's one worker holds its first trial after a checkpoint: two checkpoints mean
    # that both have a trial, however slowly either started.
    sweep_dir = tmp_path / "lightning_logs" / "quick"
    wait_for(
        lambda: len(list(sweep_dir.glob("version_*/checkpoints/last.ckpt"))) >= 2,
        second,
        "a trial on each machine",
    )
    (tmp_path / "hold").unlink()
    for process in (first, second):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="quick", storage=url)
    assert states(study) == {"COMPLETE": 4}
    writers = set()
    for trial in study.get_trials():
        run = sweep_dir / f"version_{trial.number}"
        pids = {written_by(events) for events in run.glob("events.out.tfevents.*")}
        assert len(pids) == 1  # each trial trained by one process
        writers |= pids
        last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["epoch"] == 5
    assert writers == {first.pid, second.pid}  # both took trials
