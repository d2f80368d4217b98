"""Vectorized sweeps: a member trained in a population gives what it gives alone, is an
ordinary trial run, is pruned on its own, and survives Ctrl-C and SIGKILL; what cannot be
batched trains alone with one line saying why."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

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
SCHEDULER = "--model.init_args.lr_scheduler"
# The rate halved every two epochs.
STEP_LR = [f"{SCHEDULER}.class_path", "torch.optim.lr_scheduler.StepLR"]
STEP_LR += [f"{SCHEDULER}.init_args.step_size", "2", f"{SCHEDULER}.init_args.gamma", "0.5"]
EPOCHS = 5
# Each experiment, small: its own data, network and optimizer (Adam or SGD), five epochs; a
# case "<experiment>+<what>" is the experiment with something more.
CASES = {
    "mlp_classification": ["--data.init_args.num_samples", "400"],
    "mlp_classification+StepLR": ["--data.init_args.num_samples", "400", *STEP_LR],
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
    # Your own data (a CSV file), a regression trained on standardised targets (Adam).
    "wine_flavanoids": [],
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
@pytest.mark.parametrize("case", CASES)
def test_a_member_trained_in_a_population_gives_what_it_gives_alone(
    tmp_path, monkeypatch, capsys, case
):
    # Four members differing in learning rate and seed; the one compared trains alone too.
    experiment, args = case.partition("+")[0], CASES[case]
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
    alone_args = [*COMMON, *args, f"--{LR}", str(lr), "--seed_everything", str(seed)]
    alone = fit_in(alone_dir, "--config", config(experiment), *alone_args)
    run = alone_dir / alone.trainer.log_dir
    together, single = curves(member), curves(run)
    # The same tags, each at the same steps, as a single run's.
    for tag in ("train/loss_epoch", "val/loss", "test/loss"):
        assert [s for s, _ in together[tag]] == [s for s, _ in single[tag]], tag
    assert ("train/lr" in single) == (SCHEDULER in " ".join(args))
    if "train/lr" in single:  # the rate the next epoch uses, at each epoch's step
        assert together["train/lr"] == single["train/lr"]
        # The member's last checkpoint holds its scheduler as the single run's holds it.
        checkpoints = [run / "checkpoints" / "last.ckpt", member / "checkpoints" / "last.ckpt"]
        alone_state, member_state = (
            torch.load(path, weights_only=True)["lr_schedulers"] for path in checkpoints
        )
        assert member_state == alone_state
    losses = zip(epochs_of(member, "val/loss"), epochs_of(run, "val/loss"), strict=True)
    worst = max(abs(a - b) / abs(b) for a, b in losses)
    print(f"{case}: largest relative val/loss difference {worst:.2e}")
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
    if experiment in CONTINUED:
        longer = [*alone_args, "--trainer.max_epochs", str(EPOCHS + 2)]
        whole = fit_in(alone_dir, "--config", config(experiment), *longer).trainer.log_dir
        assert_continues_as_alone(member, run, alone_dir / whole)


# Continued after the population (Adam's step count, SGD's momentum buffers), 5 + 2 epochs.
CONTINUED = ("mlp_classification", "two_layer_relu")


def checkpoint_state(path, rel=None):
    """A checkpoint's callback states with its run's directory spelled ``<run>``, and its epoch,
    step and loops: what a member's and a single run's ``last.ckpt`` share (their scores
    within ``rel``, where given: batched kernels round otherwise)."""
    state = torch.load(path, weights_only=True)

    def plain(value):
        if isinstance(value, dict):
            return {plain(k): plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str):
            return re.sub(r"^.*lightning_logs/[^/]+/version_\d+", "<run>", value)
        if isinstance(value, torch.Tensor):
            scores = rel is not None and value.is_floating_point()
            return pytest.approx(value.tolist(), rel=rel) if scores else value.tolist()
        return value

    kept = ("epoch", "global_step", "loops", "callbacks", "hparams_name", "hyper_parameters")
    return {key: plain(state[key]) for key in kept} | {"keys": sorted(state)}


def assert_continues_as_alone(member, run, whole):
    """The member's ``last.ckpt`` is its single run's ``run``'s (but for its run directory and
    rounding), and ``fit`` continues it in its run for 2 more epochs as the run ``whole``
    trained them alone from the start."""
    last = member / "checkpoints" / "last.ckpt"
    assert checkpoint_state(last) == checkpoint_state(run / "checkpoints" / "last.ckpt", rel=1e-4)
    from experiments.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["experiments"])
        epochs = ["--trainer.max_epochs", str(EPOCHS + 2), *QUIET]
        main(["fit", "--config", str(member / "config.yaml"), "--ckpt_path", str(last), *epochs])
    names = sorted(p.name for p in (whole / "checkpoints").iterdir())
    assert sorted(p.name for p in (member / "checkpoints").iterdir()) == names  # no last-v1
    assert checkpoint_state(last) == checkpoint_state(whole / "checkpoints" / "last.ckpt", rel=1e-4)
    for tag in ("train/loss_epoch", "val/loss", "train/loss_step"):
        steps = [s for s, _ in curves(member)[tag]]
        assert steps == [s for s, _ in curves(whole)[tag]] == sorted(set(steps)), tag
    losses = zip(epochs_of(member, "val/loss"), epochs_of(whole, "val/loss"), strict=True)
    assert max(abs(a - b) / abs(b) for a, b in losses) <= 1e-4


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


UNBATCHED = {
    "batch-norm running statistics are not batched": [
        "--model.init_args.network.init_args.norm",
        "batch",
    ],
    "ReduceLROnPlateau watches one metric, not one per member": [
        f"{SCHEDULER}.class_path",
        "torch.optim.lr_scheduler.ReduceLROnPlateau",
    ],
}


@pytest.mark.parametrize("reason", UNBATCHED)
def test_what_cannot_be_batched_trains_alone_after_one_line(tmp_path, monkeypatch, capsys, reason):
    args = [*UNBATCHED[reason], "--data.init_args.num_samples", "100", "--trainer.max_epochs", "1"]
    path = mlp_sweep(tmp_path, trials=2, args=[*COMMON[2:], *args])
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "one at a time" in line]
    assert lines == [f"trials 0, 1 train one at a time: {reason}"]
    assert "Traceback" not in captured.err
    assert states(study_of(tmp_path, "pop")) == {"COMPLETE": 2}
    assert not list((tmp_path / "lightning_logs" / "pop").glob("population_*"))


def test_trials_whose_scheduler_differs_train_in_separate_populations():
    from experiments.population import grouping

    gamma = "model.init_args.lr_scheduler.init_args.gamma"
    assert not grouping.batched_key(gamma, "torch.optim.Adam")
    keys = [
        grouping.group_key({LR: lr, gamma: g}, "torch.optim.Adam")
        for lr, g in [(0.01, 0.5), (0.003, 0.5), (0.01, 0.1)]
    ]
    assert keys[0] == keys[1] != keys[2]


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
    # Their rate halves every epoch: the scheduler leaves the population with its members.
    args = [*COMMON[2:], "--data.init_args.num_samples", "200", "--trainer.max_epochs", "4"]
    args += [*STEP_LR[:2], f"{SCHEDULER}.init_args.step_size", "1", *STEP_LR[-2:]]
    path = mlp_sweep(
        tmp_path,
        trials=10,
        population=5,
        pruner={"median": {"n_warmup_steps": 0}},  # from the first epoch on
        space={LR: [0.03, 1.0e-6], "seed_everything": [0, 1, 2, 3, 4]},
        args=args,
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
    for trial in study_of(tmp_path, "pop").get_trials():
        run = tmp_path / "lightning_logs" / "pop" / f"version_{trial.number}"
        rates = epochs_of(run, "train/lr")
        lr = trial.params[LR]
        assert rates == pytest.approx([lr * 0.5 ** (e + 1) for e in range(len(rates))], rel=1e-6)
        (scheduler,) = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)[
            "lr_schedulers"
        ]
        assert scheduler["base_lrs"] == [lr]
        assert scheduler["_last_lr"] == [pytest.approx(rates[-1], rel=1e-6)]


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
            *STEP_LR,  # its state is resumed with the population's
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
    # Its training is in the population's checkpoint: fit on a member's config must not
    # train it again from the start, in its run.
    from experiments.cli import main as cli_main

    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        cli_main(["fit", "--config", str(sweep_dir / "version_1" / "config.yaml"), *QUIET])
    assert refused.value.code == 2
    assert "was stopped while it trained in population_0" in capsys.readouterr().err
    assert not list((sweep_dir / "version_1" / "checkpoints").glob("last*.ckpt"))
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "population_0 resumed: trials 0, 1, 2, 3 as one population" in out
    assert states(study_of(tmp_path, "pop")) == {"COMPLETE": 4}
    for number in range(4):
        run = sweep_dir / f"version_{number}"
        for tag in ("train/loss_epoch", "val/acc", "train/loss_step", "train/lr"):
            steps = [s for s, _ in curves(run)[tag]]
            assert steps == sorted(set(steps)), (tag, steps)
        assert len(curves(run)["val/acc"]) == 4  # every epoch once
        lr = study_of(tmp_path, "pop").trials[number].params[LR]
        expected = [lr * 0.5 ** ((epoch + 1) // 2) for epoch in range(4)]
        assert epochs_of(run, "train/lr") == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow(seconds=10)
def test_a_members_best_checkpoint_is_of_an_epoch_its_single_run_saves_at(tmp_path, monkeypatch):
    # Saving every second epoch, a single run's best file can only be of epochs 1 and 3 of 5;
    # a falling val/loss makes the unsaved epoch 4 the best of all.
    args = [*COMMON[2:4], "--checkpoint.every_n_epochs", "2", *COMMON[6:]]
    args += ["--data.init_args.num_samples", "200", "--trainer.max_epochs", "5"]
    path = mlp_sweep(tmp_path, trials=2, args=args, space={LR: [0.01, 0.003]})
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    for number in (0, 1):
        checkpoints = tmp_path / "lightning_logs" / "pop" / f"version_{number}" / "checkpoints"
        (best,) = checkpoints.glob("best-*.ckpt")
        epoch = int(re.search(r"epoch=(\d+)", best.name).group(1))
        assert epoch in (1, 3), best.name
        assert torch.load(best, weights_only=True)["epoch"] == epoch


@pytest.mark.slow(seconds=15)
def test_by_default_a_sweep_is_vectorized_and_best_yaml_reproduces_its_best_member(
    tmp_path, monkeypatch, capsys
):
    path = mlp_sweep(tmp_path, population=None)
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "population auto: up to 4 trials at once" in out  # the sweep's 4 trials
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
    # The command chose the size once; the worker it started took it.
    assert out.count("population auto: up to 4 trials at once") == 1, out
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


def heartbeats(storage):
    """Each trial's last heartbeat, by trial id, as the database holds them (Optuna's table)."""
    from sqlalchemy import text

    with storage.engine.connect() as connection:
        rows = connection.execute(text("SELECT trial_id, heartbeat FROM trial_heartbeats"))
        return dict(rows.fetchall())


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
        # Polled, not slept: on a busy machine the thread's beats may come late, never early.
        # The others are beaten on, each at least twice more after the dropped one's last beat.
        deadline = time.monotonic() + 60
        while True:
            beats = heartbeats(storage)
            if all(beats[i] - beats[ids[1]] > timedelta(seconds=1.5) for i in (ids[0], ids[2])):
                break
            assert time.monotonic() < deadline, beats
            time.sleep(0.2)
        # Its heartbeat ages past the grace period: another worker may take it over.
        while ids[1] not in database.stale_trial_ids(storage, study):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    storage.remove_session()
    storage.engine.dispose()


@pytest.mark.slow(seconds=40)
def test_populations_on_two_machines_share_one_study_in_postgresql(tmp_path, postgres):
    # Seconds; a heartbeat each second (experiments/sweep/database.py). A population's first
    # beat comes once its template is built: room for a busy machine.
    grace = 5
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


def stacked_and_vmapped(network, inputs):
    """The outputs of 3 copies of ``network`` with different weights, through the population's
    batched-product forward and through vmap."""
    import copy

    from experiments.population.model import PopulationTask

    copies = [copy.deepcopy(network) for _ in range(3)]
    for seed, member in enumerate(copies):
        torch.manual_seed(seed)
        for parameter in member.parameters():
            parameter.data = torch.randn_like(parameter)
    task = PopulationTask(copies, "classification", "torch.optim.SGD", [{"lr": 0.1}] * 3).eval()
    assert task.fast_forward is not None
    fast = task(inputs)
    task.fast_forward = None
    return fast, task(inputs)


def test_an_mlp_runs_as_batched_products_with_vmaps_outputs():
    from torch import nn

    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Dropout(0.5), nn.Linear(7, 3, bias=False)
    )
    inputs = torch.randn(5, 3, 4)
    fast, vmapped = stacked_and_vmapped(mlp, inputs)
    assert fast.shape == vmapped.shape == (3, 5, 3)
    assert torch.allclose(fast, vmapped, atol=1e-6)
    # The project's own MLPs qualify (with dropout), as the experiments build them.
    from models.mlp import MLP

    network = MLP([2, 5], 3, hidden_sizes=[8, 6], activation="gelu", dropout=0.1)
    fast, vmapped = stacked_and_vmapped(network, torch.randn(4, 2, 5))
    assert torch.allclose(fast, vmapped, atol=1e-6)
    # Training, each member draws its own dropout masks: equal weights, other outputs.
    task_inputs = torch.randn(64, 3, 4)
    from experiments.population.model import PopulationTask

    same = PopulationTask([mlp, mlp], "classification", "torch.optim.SGD", [{"lr": 0.1}] * 2)
    assert same.fast_forward is not None
    outputs = same(task_inputs)
    assert not torch.equal(outputs[0], outputs[1])
    same.eval()
    outputs = same(task_inputs)
    assert torch.equal(outputs[0], outputs[1])


def shared(nn, activation):
    """A Sequential that runs one module twice: ``activation``, or its linear layer."""
    linear = nn.Linear(4, 4)
    if activation is None:
        return nn.Sequential(linear, nn.ReLU(), linear)
    return nn.Sequential(linear, activation, nn.Linear(4, 4), activation)


def hooked_network(nn):
    network = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    network[1].register_forward_hook(lambda module, inputs, output: output * 2)
    return network


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)),  # parameters outside Linear
        lambda nn: nn.Sequential(nn.Linear(4, 4), nn.Flatten()),  # a reshape after the first
        lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(4, 4)),  # an activation on the input
        lambda nn: nn.Linear(4, 4),  # not a Sequential
        lambda nn: shared(nn, nn.Tanh()),  # one activation run twice
        lambda nn: shared(nn, None),  # one linear layer run twice
        lambda nn: nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 4))),
        lambda nn: hooked_network(nn),
    ],
)
def test_other_networks_run_through_vmap(build):
    # Each gives what its own call gives, not what the batched products would.
    from torch import nn

    from experiments.population.model import PopulationTask

    task = PopulationTask([build(nn)] * 2, "classification", "torch.optim.SGD", [{"lr": 0.1}] * 2)
    assert task.fast_forward is None
    assert task(torch.randn(3, 4)).shape == (2, 3, 4)


@pytest.mark.slow(seconds=20)
def test_a_reader_that_goes_away_stops_the_sweep_quietly_and_it_goes_on(tmp_path, monkeypatch):
    # `python -m experiments.sweep SWEEP | head -1`: the pipe closes; the sweep ends as a shell
    # tool does (128 + SIGPIPE, no traceback), its trials left to the next run.
    path = mlp_sweep(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    process.stdout.close()  # the reader is gone before the sweep's first line
    err = process.stderr.read().decode()
    assert process.wait(timeout=180) == 128 + signal.SIGPIPE, err
    assert "Traceback" not in err
    monkeypatch.chdir(tmp_path)
    assert sweep_main([str(path)]) == 0
    assert states(study_of(tmp_path, "pop")) == {"COMPLETE": 4}
