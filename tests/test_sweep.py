"""Sweeps: trials are ordinary runs; studies survive Ctrl-C, SIGKILL and more workers; bad sweep
files are refused before anything runs."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
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
        # One trial at a time: these tests are of that worker; tests/test_population.py has
        # populations' own.
        "population": 1,
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


def start_sweep(cwd: Path, *args: str, **env: str) -> subprocess.Popen:
    """``python -m experiments.sweep ARGS`` in a process group of its own, as from a terminal,
    with the environment variables ``env`` too."""
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=cwd,
        env=subprocess_env(**env),
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
    # Given in the environment instead, the message names the variable, not an option.
    monkeypatch.setenv("EXPERIMENTS_STORAGE", url)
    assert sweep_main([str(sweep_file(tmp_path))]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: $EXPERIMENTS_STORAGE postgresql://someone:***@127.0.0.1:1/")
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
    # Let go: no worker holds them now, and the next to look takes them over at once.
    assert all(
        "worker" in t.user_attrs and t.user_attrs["worker"] is None
        for t in study_of(tmp_path).get_trials()
        if t.number in interrupted
    )

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


# Sweeps across machines -----------------------------------------------------------------------

SHORT = ["--trainer.max_epochs", "3", *SMALL[2:]]  # three epochs: enough to hold and go on


def machine(directory: Path, name: str, hold: Path, **settings: object) -> Path:
    """A folder of its own, standing for a machine's disk, with the sweep file ``name`` in it,
    whose trials are held (tests.plugins.Hold) while ``hold`` exists."""
    directory.mkdir(exist_ok=True)
    return sweep_file(directory, name, args=[*SHORT, *held(hold)], **settings)


def wait_for_held(sweep: subprocess.Popen, folder: Path, name: str, count: int = 1) -> None:
    """Wait until ``count`` trials of the sweep ``name`` in ``folder`` have a checkpoint: held
    after their first epoch."""
    runs = folder / "lightning_logs" / name
    wait_for(
        lambda: len(list(runs.glob("version_*/checkpoints/last.ckpt"))) >= count,
        sweep,
        f"{count} trials held in {folder.name}",
    )


def trained_on(folders: list[Path], name: str, number: int) -> list[Path]:
    """The folders that hold a run directory of trial ``number`` of the sweep ``name``."""
    return [f for f in folders if (f / "lightning_logs" / name / f"version_{number}").exists()]


class Output:
    """A process's output lines as they come, each with the time it was read."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self.read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line))

    def first(self, words: str) -> float | None:
        """When a line with ``words`` came, or None."""
        return next((when for when, line in self.lines if words in line), None)

    def text(self) -> str:
        self.reader.join(timeout=60)
        return "".join(line for _, line in self.lines)


@pytest.mark.slow(seconds=40)
def test_machines_started_together_share_a_study_and_keep_its_password(tmp_path, postgres):
    hold = tmp_path / "hold"
    folders = [tmp_path / "a", tmp_path / "b"]
    password = "pw-that-must-not-leak-7f3a"
    fresh = new_database(postgres, "together")
    # First on a fresh database, the URL on the command line: both make Optuna's tables at
    # once. Then a new study on the same database, the URL (with a password) in the
    # environment only, machine a with two workers.
    rounds = [
        ("quick", ["--storage", fresh], {}, [1, 1]),
        (
            "again",
            [],
            {"EXPERIMENTS_STORAGE": fresh.replace("postgres@", f"postgres:{password}@")},
            [2, 1],
        ),
    ]
    for name, storage, env, workers in rounds:
        hold.touch()
        paths = [machine(folder, name, hold) for folder in folders]
        sweeps = [
            start_sweep(folder, str(path), *storage, "--workers", str(w), **env)
            for path, folder, w in zip(paths, folders, workers, strict=True)
        ]
        # Each worker holds its first trial after a checkpoint: then every one has one.
        for sweep, folder, w in zip(sweeps, folders, workers, strict=True):
            wait_for_held(sweep, folder, name, w)
        if password in str(env):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    assert password.encode() not in cmdline.read_bytes(), cmdline
        hold.unlink()
        printed = ""
        for sweep in sweeps:
            out, err = sweep.communicate(timeout=300)
            assert sweep.returncode == 0, err[-3000:]
            assert "Traceback" not in err, err[-3000:]
            printed += out + err
        assert "taken over" not in printed
        study = optuna.load_study(study_name=name, storage=fresh)
        assert states(study) == {"COMPLETE": 4}
        for trial in study.get_trials():
            assert len(trained_on(folders, name, trial.number)) == 1, trial.number
        assert password not in printed
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def database_away(server, sweep: subprocess.Popen, hold: Path) -> str:
    """Stop the database ``server``, let the held ``sweep`` go on, and start the server again
    once the sweep has given it up (with a patience of 2 s) and ended; the sweep's stderr."""
    server.stop()
    try:
        hold.unlink()
        _, err = sweep.communicate(timeout=300)
    finally:
        server.start()
    assert sweep.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the study's database has not answered for 2 s ("), last
    return err


@pytest.mark.slow(seconds=25)
def test_a_database_restart_in_the_middle_of_a_sweep_is_ridden_out(
    tmp_path, monkeypatch, postgres_server
):
    url = new_database(postgres_server.url, "restarted")
    hold = tmp_path / "hold"
    hold.touch()
    path = machine(tmp_path, "quick", hold, trials=3)
    sweep = start_sweep(tmp_path, str(path), "--storage", url)
    wait_for_held(sweep, tmp_path, "quick")
    postgres_server.restart()  # every connection of the sweep's closed under it
    hold.unlink()
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "taken over" not in out
    study = optuna.load_study(study_name="quick", storage=url)
    assert states(study) == {"COMPLETE": 3}
    for trial in study.get_trials():
        assert sorted(trial.intermediate_values) == [0, 1, 2]

    # A database away for longer than the workers' patience: the trial stops after its epoch,
    # checkpointed, and the sweep says so in one line.
    monkeypatch.setenv("EXPERIMENTS_SWEEP_PATIENCE", "2")  # seconds
    hold.touch()
    path = machine(tmp_path, "away", hold, trials=1)
    sweep = start_sweep(tmp_path, str(path), "--storage", url)
    wait_for_held(sweep, tmp_path, "away")
    err = database_away(postgres_server, sweep, hold)
    assert "trial 0 stopped after epoch 1, checkpointed; run the same command again" in err
    last = tmp_path / "lightning_logs/away/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1


@pytest.mark.slow(seconds=25)
def test_a_trial_whose_machine_dies_is_taken_over_after_the_grace_period_only(tmp_path, postgres):
    grace = 3  # seconds, the heartbeat then every second (experiments/sweep/database.py)
    url = new_database(postgres, "takeover")
    holds = [tmp_path / "hold-a", tmp_path / "hold-b"]
    folders = [tmp_path / "a", tmp_path / "b"]
    sweeps = []
    for folder, hold in zip(folders, holds, strict=True):
        hold.touch()
        path = machine(folder, "quick", hold, trials=2)
        sweeps.append(
            start_sweep(folder, str(path), "--storage", url, EXPERIMENTS_SWEEP_GRACE=str(grace))
        )
    a, b = sweeps
    for sweep, folder in zip(sweeps, folders, strict=True):
        wait_for_held(sweep, folder, "quick")
    (a_trial,) = [
        int(p.name.split("_")[1]) for p in (folders[0] / "lightning_logs/quick").glob("version_*")
    ]
    output = Output(b)
    holds[1].unlink()  # b finishes its trial, then finds a's running, and waits
    wait_for(lambda: output.first("complete") is not None, b, "b's trial complete")
    time.sleep(2 * grace + 2)  # b looks again and again while a lives
    assert not trained_on(folders[1:], "quick", a_trial), "taken over from a live worker"
    os.killpg(a.pid, signal.SIGKILL)
    killed = time.monotonic()
    a.communicate()
    b.wait(timeout=300)
    out, err = output.text(), b.stderr.read()
    assert b.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    # Taken over once the heartbeat a recorded (each second) had aged past the grace period,
    # from scratch: b's disk has no checkpoint of it.
    taken = output.first(f"trial {a_trial} taken over")
    assert taken is not None, out
    assert taken - killed >= grace - 1
    study = optuna.load_study(study_name="quick", storage=url)
    assert states(study) == {"COMPLETE": 2}
    steps = [
        step
        for step, _ in curves(folders[1] / "lightning_logs/quick" / f"version_{a_trial}")["val/r2"]
    ]
    assert len(steps) == 3


@pytest.mark.slow(seconds=10)
def test_ctrl_c_while_a_worker_starts_up_stops_the_sweep_without_a_traceback(tmp_path):
    path = sweep_file(tmp_path, args=[*SHORT, *held(tmp_path / "hold")])
    (tmp_path / "hold").touch()
    # Started, not forked: a forked worker has nothing to import (where CUDA is, they start so).
    sweep = start_sweep(tmp_path, str(path), "--workers", "2", EXPERIMENTS_SWEEP_SPAWN="1")
    children = Path(f"/proc/{sweep.pid}/task/{sweep.pid}/children")

    def worker_importing() -> bool:
        """Whether the sweep's worker (not some other helper process) has begun to import
        PyTorch, which Lightning imports first: it has seconds of importing to go."""
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                if b"--worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
        return False

    wait_for(worker_importing, sweep, "a worker importing PyTorch")
    os.killpg(sweep.pid, signal.SIGINT)  # the worker is importing Lightning now
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "KeyboardInterrupt" not in err


@pytest.mark.slow(seconds=8)
def test_forked_workers_use_threads_after_the_check_built_the_run(tmp_path):
    # The leading process checks the sweep by building its run before it forks the workers.
    # Work shared between threads there starts OpenMP's threads, which a fork does not have:
    # its first operation on two threads would then wait for them for ever. The check runs on
    # one thread.
    probe = {"class_path": "tests.plugins.Probe", "init_args": {"size": 1000}}
    args = ["--trainer.max_epochs", "2", *SMALL[2:], f"--trainer.callbacks+={json.dumps(probe)}"]
    path = sweep_file(
        tmp_path, trials=2, args=[*args, *held(tmp_path / "hold")], space={LR: [0.05, 0.1]}
    )
    (tmp_path / "hold").touch()  # each trial waits after its first epoch: one on each worker
    # Two threads from the start, in the leading process too (the tests' own setting is one).
    sweep = start_sweep(tmp_path, str(path), "--workers", "2", OMP_NUM_THREADS="2")
    sweep_dir = tmp_path / "lightning_logs" / "quick"
    try:
        wait_for(
            lambda: len(list(sweep_dir.glob("version_*/checkpoints/last.ckpt"))) == 2,
            sweep,
            "an epoch of each trial",
        )
        (tmp_path / "hold").unlink()
        out, err = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode == 0, err[-3000:]
    assert states(study_of(tmp_path)) == {"COMPLETE": 2}
    writers = set()
    for number in range(2):
        run = sweep_dir / f"version_{number}"
        writers |= {written_by(events) for events in run.glob("events.out.tfevents.*")}
    assert len(writers) == 2, out  # each worker trained one
