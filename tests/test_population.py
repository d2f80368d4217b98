"""Vectorized sweeps: a member trained in a population gives what it gives alone, is an
ordinary trial run, is pruned on its own, and survives Ctrl-C and SIGKILL; what cannot be
batched trains alone with one line saying why."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
import yaml

from experiments import threads
from experiments.sweep.cli import main as sweep_main
from tests.conftest import (
    QUIET,
    config,
    curves,
    fit_in,
    new_database,
    subprocess_env,
    written_by,
)
from tests.test_sweep import (
    Output,
    database_away,
    held,
    start_sweep,
    states,
    study_of,
    trained_on,
    wait_for,
)

LR = "model.init_args.optimizer.init_args.lr"
MOMENTUM = ["--model.init_args.optimizer.init_args.momentum", "0.9"]
EPOCHS = 5
# Each experiment, small: its own data, network and optimizer (Adam or SGD), five epochs.
CASES = {
    "mlp_classification": ["--data.init_args.num_samples", "400"],
    "linear_regression": ["--data.init_args.num_samples", "200"],  # SGD
    "two_layer_relu": ["--data.init_args.num_samples", "400", *MOMENTUM],  # SGD with momentum
    "cnn": [
        "--data.init_args.num_samples",
        "192",
        "--data.init_args.image_shape",
        "[3, 8, 8]",
        "--model.init_args.network.init_args.channels",
        "[4, 8]",
        "--model.init_args.network.init_args.hidden_size",
        "16",
    ],
}
COMMON = [
    "--trainer.max_epochs",
    str(EPOCHS),
    "--trainer.check_val_every_n_epoch",
    "1",
    "--checkpoint.every_n_epochs",
    "1",
    "--figures.enabled",
    "false",
]


def population_sweep(directory, name, experiment, args, space, **settings):
    """A sweep file of ``experiment`` trained as populations."""
    content = {
        "config": config(experiment),
        "metric": "val/loss",
        "direction": "minimize",
        "trials": 4,
        "sampler": "grid",
        "pruner": "none",
        "population": 4,
        "args": [*COMMON, *args],
        "space": space,
        **settings,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def epochs_of(run, tag):
    return [value for _, value in curves(run)[tag]]


@pytest.mark.slow(seconds=40)
@pytest.mark.parametrize("experiment", CASES)
def test_a_member_trained_in_a_population_gives_what_it_gives_alone(
    tmp_path, monkeypatch, capsys, experiment
):
    # Four members differing in learning rate and seed; the one compared trains alone too.
    args = CASES[experiment]
    space = {LR: [0.003, 0.01], "seed_everything": [1, 2]}
    path = population_sweep(tmp_path, "pop", experiment, args, space)
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "population_0 started: trials 0, 1, 2, 3 as one population" in out
    member = tmp_path / "lightning_logs" / "pop" / "version_3"
    saved = yaml.safe_load((member / "config.yaml").read_text())
    lr = saved["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    seed = saved["seed_everything"]
    alone_dir = tmp_path / "alone"
    alone_dir.mkdir()
    alone = fit_in(
        alone_dir,
        "--config",
        config(experiment),
        *COMMON,
        *args,
        f"--{LR}",
        str(lr),
        "--seed_everything",
        str(seed),
    )
    run = alone_dir / alone.trainer.log_dir
    together, single = curves(member), curves(run)
    # The same tags, each at the same steps, as a single run's.
    for tag in ("train/loss_epoch", "val/loss", "test/loss"):
        assert [s for s, _ in together[tag]] == [s for s, _ in single[tag]], tag
    losses = zip(epochs_of(member, "val/loss"), epochs_of(run, "val/loss"), strict=True)
    worst = max(abs(a - b) / abs(b) for a, b in losses)
    print(f"{experiment}: largest relative val/loss difference {worst:.2e}")
    assert worst <= 1e-4
    if "val/acc" in single:
        samples = len(alone.datamodule.splits["val"])
        accs = zip(epochs_of(member, "val/acc"), epochs_of(run, "val/acc"), strict=True)
        assert max(abs(a - b) for a, b in accs) <= 1 / samples + 1e-6
    # A member's best checkpoint is a single run's: the test command evaluates it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["experiments"])
        from experiments.cli import main

        tested = main(
            ["test", "--config", str(member / "config.yaml"), "--ckpt_path", "best", *QUIET]
        )
    test_loss = float(tested.trainer.callback_metrics["test/loss"])
    assert test_loss == pytest.approx(epochs_of(member, "test/loss")[-1], rel=1e-5)


def mlp_sweep(directory, **settings):
    """A population sweep of mlp_classification, 4 epochs on 200 samples."""
    args = ["--data.init_args.num_samples", "200", "--trainer.max_epochs", "4"]
    content = {
        "config": config("mlp_classification"),
        "metric": "val/acc",
        "direction": "maximize",
        "trials": 4,
        "sampler": "grid",
        "pruner": "none",
        "population": 4,
        "args": [*COMMON[2:], *args],
        "space": {LR: [0.01, 0.003], "seed_everything": [0, 1]},
        **settings,
    }
    if content["population"] is None:  # the default: auto
        del content["population"]
    path = directory / "pop.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def test_what_cannot_be_batched_trains_alone_after_one_line(tmp_path, monkeypatch, capsys):
    norm = ["--model.init_args.network.init_args.norm", "batch"]
    norm += ["--data.init_args.num_samples", "100", "--trainer.max_epochs", "1"]
    path = mlp_sweep(tmp_path, trials=2, args=[*COMMON[2:], *norm])
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "one at a time" in line]
    assert lines == [
        "trials 0, 1 train one at a time: batch-norm running statistics are not batched"
    ]
    assert "Traceback" not in captured.err
    assert states(study_of(tmp_path, "pop")) == {"COMPLETE": 2}
    assert not list((tmp_path / "lightning_logs" / "pop").glob("population_*"))


def test_regression_on_scaled_targets_trains_alone():
    # A single run of own data trains on standardised targets (datamodules.FileData), which the
    # population's loss does not do yet: such trials must not be batched.
    from torch import nn

    from experiments.population import grouping

    config = {
        "model": {
            "class_path": "models.RegressionTask",
            "init_args": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}},
        },
        "data": {"class_path": "datamodules.ArrayData", "init_args": {"standardize_target": True}},
        "trainer": {},
    }
    reason = grouping.unbatched_reason(config, nn.Linear(3, 1), [])
    assert reason == "scaled regression targets (standardize_target) are not batched yet"
    config["data"]["init_args"]["standardize_target"] = False
    assert grouping.unbatched_reason(config, nn.Linear(3, 1), []) is None


def threads_sweep(directory, *args):
    """A population of 2 mlp_classification members, 1 epoch, that writes its thread count."""
    callback = {"class_path": "tests.plugins.Threads", "init_args": {"path": "threads"}}
    args = ["--data.init_args.num_samples", "100", "--trainer.max_epochs", "1", *args]
    args += [f"--trainer.callbacks+={json.dumps(callback)}"]
    return mlp_sweep(directory, trials=2, args=[*COMMON[2:], *args])


@pytest.mark.slow(seconds=15)
def test_a_population_of_small_networks_trains_on_one_thread(tmp_path):
    # The tests pin OMP_NUM_THREADS=1; a user's sweep starts with torch's default, a thread
    # per core (two or more on the machines this runs on, or the test cannot fail).
    env = {k: v for k, v in subprocess_env().items() if k not in threads.ENVIRONMENT}
    command = [sys.executable, "-m", "experiments.sweep", str(threads_sweep(tmp_path))]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    assert (tmp_path / "threads").read_text() == "1"


def test_a_population_trains_on_the_threads_given(tmp_path, monkeypatch):
    path = threads_sweep(tmp_path, "--threads", "2")
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    assert (tmp_path / "threads").read_text() == "2"


@pytest.mark.slow(seconds=25)
def test_members_are_pruned_one_by_one_and_leave_the_population(tmp_path, monkeypatch, capsys):
    # Two populations of five: a rate that learns and one that cannot in four epochs, five
    # seeds each. Once the first population has finished, the median rule judges each member
    # of the second after every epoch; those that fall behind leave it.
    path = mlp_sweep(
        tmp_path,
        trials=10,
        population=5,
        pruner={"median": {"n_warmup_steps": 0}},  # from the first epoch on
        space={LR: [0.03, 1.0e-6], "seed_everything": [0, 1, 2, 3, 4]},
    )
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count(" as one population") == 2, out
    counts = states(study_of(tmp_path, "pop"))
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 10, out
    pruned = [t for t in study_of(tmp_path, "pop").get_trials() if t.state.name == "PRUNED"]
    assert pruned, out
    for trial in pruned:
        # Its line counts the epochs it trained, as the table does.
        epochs = len(trial.intermediate_values)
        assert f"trial {trial.number} pruned after {epochs} epochs" in out
        run = tmp_path / "lightning_logs" / "pop" / f"version_{trial.number}"
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert len(curves(run)["val/acc"]) == len(trial.intermediate_values) < 4


@pytest.mark.slow(seconds=30)
@pytest.mark.parametrize("how", ["sigkill", "ctrl-c"])
def test_a_population_stopped_midway_goes_on_when_the_command_runs_again(
    tmp_path, monkeypatch, capsys, how
):
    path = mlp_sweep(
        tmp_path,
        args=[
            *COMMON[2:],
            "--data.init_args.num_samples",
            "200",
            "--trainer.max_epochs",
            "4",
            *held(tmp_path / "hold"),
        ],
    )
    (tmp_path / "hold").touch()  # the population waits after its first epoch's checkpoint
    sweep = start_sweep(tmp_path, str(path))
    sweep_dir = tmp_path / "lightning_logs" / "pop"
    checkpoint = sweep_dir / "population_0" / "last.ckpt"
    wait_for(checkpoint.exists, sweep, "the population's first checkpoint")
    if how == "sigkill":
        sweep.kill()
        sweep.communicate(timeout=60)
    else:
        os.killpg(sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
        out, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 130, err[-3000:]
        assert "Traceback" not in err
        assert out.count("stopped: it goes on when the sweep is run again") == 4
    (tmp_path / "hold").unlink()
    assert states(study_of(tmp_path, "pop")) == {"RUNNING": 4}
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "population_0 resumed: trials 0, 1, 2, 3 as one population" in out
    assert states(study_of(tmp_path, "pop")) == {"COMPLETE": 4}
    for number in range(4):
        run = sweep_dir / f"version_{number}"
        for tag in ("train/loss_epoch", "val/acc", "train/loss_step"):
            steps = [s for s, _ in curves(run)[tag]]
            assert steps == sorted(set(steps)), (tag, steps)
        assert len(curves(run)["val/acc"]) == 4  # every epoch once


@pytest.mark.slow(seconds=15)
def test_by_default_a_sweep_is_vectorized_and_best_yaml_reproduces_its_best_member(
    tmp_path, monkeypatch, capsys
):
    path = mlp_sweep(tmp_path, population=None)
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "population_0 started: trials 0, 1, 2, 3 as one population" in out
    study = study_of(tmp_path, "pop")
    sweep_dir = tmp_path / "lightning_logs" / "pop"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["experiments"])
        from experiments.cli import main

        again = main(["fit", "--config", str(sweep_dir / "best.yaml"), *QUIET])
    scores = epochs_of(tmp_path / again.trainer.log_dir, "val/acc")
    samples = len(again.datamodule.splits["val"])
    assert abs(max(scores) - study.best_value) <= 1 / samples + 1e-6


@pytest.mark.slow(seconds=20)
def test_two_workers_train_a_population_each(tmp_path):
    # population: auto gives each of the 2 workers its share: 4 of the 8 trials.
    args = [*COMMON[2:], "--data.init_args.num_samples", "200", "--trainer.max_epochs", "4"]
    path = mlp_sweep(
        tmp_path,
        trials=8,
        population=None,
        space={LR: [0.01, 0.003], "seed_everything": [0, 1, 2, 3]},
        args=[*args, *held(tmp_path / "hold")],  # each population waits after its first epoch
    )
    (tmp_path / "hold").touch()
    sweep = start_sweep(tmp_path, str(path), "--workers", "2")
    sweep_dir = tmp_path / "lightning_logs" / "pop"
    wait_for(
        lambda: len(list(sweep_dir.glob("population_*/last.ckpt"))) >= 2,
        sweep,
        "a population on each worker",
    )
    (tmp_path / "hold").unlink()
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    assert states(study_of(tmp_path, "pop")) == {"COMPLETE": 8}
    populations = sorted(sweep_dir.glob("population_*"))
    assert len(populations) == 2, out
    writers = set()
    for number in range(8):
        run = sweep_dir / f"version_{number}"
        writers |= {written_by(events) for events in run.glob("events.out.tfevents.*")}
        assert len(curves(run)["val/acc"]) == 4
    assert len(writers) == 2  # each worker trained its own population


# PostgreSQL: several machines, and the database away -----------------------------------------

POPULATION_SPACE = {LR: [0.01, 0.003], "seed_everything": [0, 1, 2, 3]}


def population_machine(folder, hold, **settings):
    """A folder standing for a machine's disk, with a population sweep file in it whose
    populations are held (tests.plugins.Hold) while ``hold`` exists."""
    folder.mkdir(exist_ok=True)
    args = [*COMMON[2:], "--data.init_args.num_samples", "200", "--trainer.max_epochs", "4"]
    return mlp_sweep(folder, args=[*args, *held(hold)], **settings)


def populations_held(folder):
    return list((folder / "lightning_logs" / "pop").glob("population_*/last.ckpt"))


@pytest.mark.slow(seconds=5)
def test_one_heartbeat_thread_keeps_a_population_alive_and_drops_those_that_leave(postgres):
    from experiments.sweep import database

    grace = 2  # seconds; a heartbeat each second
    storage = optuna.storages.RDBStorage(
        new_database(postgres, "heartbeats"), heartbeat_interval=1, grace_period=grace
    )
    study = optuna.create_study(storage=storage, study_name="beats")
    ids = [database.ask(study, {})._trial_id for _ in range(3)]
    for trial_id in ids:  # as the worker's claim records them
        storage.record_heartbeat(trial_id)
    with database.Heartbeat(storage, *ids) as heartbeat:
        heartbeat.drop(ids[1])  # pruned: it has left the population
        time.sleep(grace + 1.5)
        assert database.stale_trial_ids(storage, study) == {ids[1]}
    storage.remove_session()
    storage.engine.dispose()


@pytest.mark.slow(seconds=35)
def test_populations_on_two_machines_share_one_study_in_postgresql(tmp_path, postgres):
    grace = 3  # seconds; a heartbeat each second (experiments/sweep/database.py)
    url = new_database(postgres, "populations")
    folders = [tmp_path / "a", tmp_path / "b"]
    holds = [tmp_path / "hold-a", tmp_path / "hold-b"]
    sweeps = []
    for folder, hold in zip(folders, holds, strict=True):
        hold.touch()
        path = population_machine(folder, hold, trials=8, space=POPULATION_SPACE)
        sweeps.append(
            start_sweep(folder, str(path), "--storage", url, EXPERIMENTS_SWEEP_GRACE=str(grace))
        )
    for sweep, folder in zip(sweeps, folders, strict=True):
        wait_for(lambda f=folder: populations_held(f), sweep, f"a population held in {folder}")
    a, b = sweeps
    output = Output(b)
    holds[1].unlink()  # b finishes its population, then finds a's trials running, and waits
    wait_for(
        lambda: sum(" complete: " in line for _, line in output.lines) == 4,
        b,
        "b's population complete",
    )
    # b looks again and again while a's population lives: one heartbeat thread keeps all four
    # of its members' heartbeats fresh.
    time.sleep(2 * grace + 2)
    holds[0].unlink()
    out_a, err_a = a.communicate(timeout=300)
    b.wait(timeout=300)
    out_b, err_b = output.text(), b.stderr.read()
    for process, err in ((a, err_a), (b, err_b)):
        assert process.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    assert "taken over" not in out_a + out_b
    assert " as one population" in out_a
    assert " as one population" in out_b
    study = optuna.load_study(study_name="pop", storage=url)
    assert states(study) == {"COMPLETE": 8}
    for trial in study.get_trials():
        (folder,) = trained_on(folders, "pop", trial.number)  # trained on one machine only
        run = folder / "lightning_logs" / "pop" / f"version_{trial.number}"
        assert len({written_by(events) for events in run.glob("events.out.tfevents.*")}) == 1
        steps = [s for s, _ in curves(run)["val/acc"]]
        assert steps == sorted(set(steps)), steps  # each epoch once
        assert len(steps) == 4
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3]


@pytest.mark.slow(seconds=20)
def test_a_population_stops_when_the_database_stays_away_and_goes_on_after(
    tmp_path, monkeypatch, capsys, postgres_server
):
    url = new_database(postgres_server.url, "population_away")
    hold = tmp_path / "hold"
    hold.touch()
    path = population_machine(tmp_path, hold)
    sweep = start_sweep(tmp_path, str(path), "--storage", url, EXPERIMENTS_SWEEP_PATIENCE="2")
    wait_for(lambda: populations_held(tmp_path), sweep, "the population held")
    last = database_away(postgres_server, sweep, hold).strip().splitlines()[-1]
    assert last.endswith(
        ": trials 0, 1, 2, 3 of population_0 stopped after epoch 1, checkpointed; "
        "run the same command again once it answers"
    ), last
    sweep_dir = tmp_path / "lightning_logs" / "pop"
    assert torch.load(sweep_dir / "population_0" / "last.ckpt", weights_only=True)["epoch"] == 1

    # The same command, once the database is back, goes on with the population (its trials
    # taken over once their heartbeats are older than the grace period).
    monkeypatch.setenv("EXPERIMENTS_SWEEP_GRACE", "2")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert sweep_main([str(path), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "population_0 resumed: trials 0, 1, 2, 3 as one population" in out
    study = optuna.load_study(study_name="pop", storage=url)
    assert states(study) == {"COMPLETE": 4}
    for trial in study.get_trials():
        run = sweep_dir / f"version_{trial.number}"
        for tag in ("train/loss_epoch", "val/acc", "train/loss_step"):
            steps = [s for s, _ in curves(run)[tag]]
            assert steps == sorted(set(steps)), (tag, steps)
        assert len(curves(run)["val/acc"]) == 4  # every epoch once
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3]
