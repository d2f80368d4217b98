"""Runs never collide: one directory per run, claimed atomically, and one writer per run."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only

from experiments.cli import main
from experiments.errors import UserError
from experiments.rundir import RunLock, RunLogger, claim_version
from experiments.runpath import LOCK_FILE, version_numbers
from tests.conftest import (
    NO_TEST,
    QUIET,
    REPO,
    config,
    curves,
    run_dir,
    start_experiments,
    written_by,
)

MLP = config("mlp_classification")
RUN = Path("lightning_logs/mlp_classification/version_0")


def test_versions_are_claimed_in_order_past_anything_named_like_one(tmp_path):
    experiment = tmp_path / "exp"
    assert [claim_version(experiment) for _ in range(2)] == [0, 1]
    (experiment / "version_5").write_text("a file, not a run, but the name is taken\n")
    (experiment / "version_x").mkdir()
    (experiment / "notes").mkdir()
    assert claim_version(experiment) == 6
    assert sorted(version_numbers(experiment)) == [0, 1, 5, 6]


def test_threads_claiming_together_each_get_a_directory(tmp_path):
    claimed: list[int] = []
    start = threading.Barrier(16)

    def claim() -> None:
        start.wait()
        claimed.append(claim_version(tmp_path / "exp"))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(16))


def test_the_logger_claims_its_directory_on_first_use_in_the_first_process_only(
    tmp_path, monkeypatch
):
    first = RunLogger(save_dir=str(tmp_path), name="exp")
    assert not (tmp_path / "exp").exists()  # nothing claimed until the run asks for it
    assert first.version == 0
    assert first.version == 0  # claimed once
    assert (tmp_path / "exp" / "version_0").is_dir()
    assert RunLogger(save_dir=str(tmp_path), name="exp", version=0).version == 0  # a resume
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    other = RunLogger(save_dir=str(tmp_path), name="exp")
    other.log_dir  # noqa: B018 (the property is what is tested)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["version_0"]


def test_a_held_run_is_refused_naming_the_holder_until_released(tmp_path):
    held = RunLock(tmp_path)
    expected = f"{socket.gethostname()} {os.getpid()}\n"
    assert (tmp_path / LOCK_FILE).read_text() == expected
    with pytest.raises(UserError, match=rf"is being trained by process {os.getpid()} on "):
        RunLock(tmp_path)
    held.release()
    RunLock(tmp_path).release()


@pytest.mark.slow
def test_the_hold_ends_with_its_process_however_it_ends(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from experiments.rundir import RunLock; "
        "RunLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(UserError, match=f"process {holder.pid} on"):
        RunLock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    RunLock(tmp_path).release()  # no file to delete by hand


@pytest.mark.slow(seconds=27)
def test_fits_started_together_each_write_a_run_of_their_own(tmp_path):
    # Eight processes, in two process groups (standing in for two machines sharing the folder),
    # lined up to name their runs at the same moment. Each trains a network of its own width,
    # so each run's files can be traced to their writer.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    line_up = {"class_path": "tests.plugins.Barrier", "init_args": {"parties": 8}}
    line_up["init_args"]["directory"] = str(barrier)
    processes = {}
    for index in range(8):
        width = 10 + index
        processes[width] = start_experiments(
            tmp_path,
            "fit",
            "--config",
            MLP,
            "--trainer.max_epochs",
            "2",
            "--data.init_args.num_samples",
            "200",
            "--test_after_fit",
            "false",
            "--figures.enabled",
            "false",
            "--model.init_args.network.init_args.hidden_sizes",
            f"[{width}]",
            f"--trainer.callbacks+={json.dumps(line_up)}",
            start_new_session=index % 2 == 1,
        )
    for process in processes.values():
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]

    runs = sorted((tmp_path / RUN.parent).iterdir())
    assert [run.name for run in runs] == [f"version_{n}" for n in range(8)]
    widths = set()
    for run in runs:
        network = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["network"]
        (width,) = network["init_args"]["hidden_sizes"]
        widths.add(width)
        writers = {written_by(events) for events in run.glob("events.out.tfevents.*")}
        assert writers == {processes[width].pid}
        last = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
        assert last["global_step"] == 2 * 5  # 160 training samples, batches of 32, 2 epochs
        assert last["state_dict"]["network.1.weight"].shape == (width, 10)
        assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert widths == set(processes)


@pytest.mark.slow
def test_a_training_run_is_left_alone_by_a_second_writer_and_by_evaluations(
    tmp_path, monkeypatch, capsys
):
    common = ["--config", MLP, "--trainer.max_epochs", "4", "--test_after_fit", "false"]
    busy, alone = tmp_path / "busy", tmp_path / "alone"
    busy.mkdir()
    alone.mkdir()
    # The run is held before its second epoch, after its first checkpoint, until the file
    # goes: the test meets it while it trains, however slow the machine. Holding changes
    # nothing it computes.
    hold = tmp_path / "hold"
    hold.touch()
    held = json.dumps({"class_path": "tests.plugins.Hold", "init_args": {"path": str(hold)}})
    training = start_experiments(busy, "fit", *common, f"--trainer.callbacks+={held}")
    last = busy / RUN / "checkpoints/last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not last.exists():
            assert training.poll() is None, training.communicate()
            assert time.monotonic() < deadline, "the run never wrote a checkpoint"
            time.sleep(0.05)
        monkeypatch.chdir(busy)
        capsys.readouterr()
        with pytest.raises(SystemExit) as refused:
            main(["fit", *common, "--ckpt_path", "last", *QUIET])
        assert training.poll() is None  # refused while the run was training
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert refused.value.code == 2
        assert line.startswith(f"error: {RUN} is being trained by process {training.pid} on ")
        # Evaluations of the training run read its complete checkpoints and write beside them.
        tested = main(["test", "--config", MLP, "--ckpt_path", "last", *QUIET])
        assert tested.trainer.callback_metrics["test/acc"] > 0.5
        main(["predict", "--config", MLP, "--ckpt_path", "best", *QUIET])
        assert (busy / RUN / "predictions.csv").exists()
        assert training.poll() is None  # all of it while the run was training
    finally:
        hold.unlink()
        _, err = training.communicate(timeout=300)
    assert training.returncode == 0, err[-3000:]
    assert sorted(p.name for p in (busy / RUN).parent.iterdir()) == ["version_0"]

    monkeypatch.chdir(alone)
    main(["fit", *common, *QUIET])
    one = torch.load(busy / last.relative_to(busy), weights_only=True)
    two = torch.load(alone / RUN / "checkpoints/last.ckpt", weights_only=True)
    assert one["global_step"] == two["global_step"] == 4 * 25
    for name, tensor in two["state_dict"].items():
        assert torch.equal(one["state_dict"][name], tensor), name
    for key, state in two["optimizer_states"][0]["state"].items():
        for name, tensor in state.items():
            assert torch.equal(one["optimizer_states"][0]["state"][key][name], tensor), name
    # The training process's own event files hold what a run alone writes, point for point.
    assert curves(busy / RUN, training.pid) == curves(alone / RUN)


def test_the_logger_flushes_when_due_and_always_at_the_end(tmp_path, monkeypatch):
    # What a flush costs is waiting for TensorBoard's writer thread to drain its queue. That
    # thread appends each event to a local file as soon as it gets to it, flushed or not, so
    # the file's size says nothing of flushes: the writer's own flush calls are counted. (Its
    # thread flushes its file every two minutes by itself, not through these calls.) An
    # endless interval: the second save is never due, however slow the machine.
    logger = RunLogger(save_dir=str(tmp_path), name="exp", flush_interval=float("inf"))
    writer = logger.experiment
    flushes = []
    real_flush = writer.flush
    monkeypatch.setattr(writer, "flush", lambda: flushes.append(real_flush()))
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()  # the first flush is due
    assert len(flushes) == 1
    logger.log_metrics({"a": 2.0}, step=1)
    logger.save()  # not due: not flushed
    assert len(flushes) == 1
    logger.finalize("success")
    assert len(flushes) > 1  # at the end, however soon
    assert [value for _, value in curves(tmp_path / "exp" / "version_0")["a"]] == [1.0, 2.0]


def test_a_small_data_set_gets_a_step_point_each_epoch_unless_the_user_set_the_interval(
    run_cli, tmp_path
):
    # The default experiment has 25 training batches an epoch, fewer than Lightning's 50.
    short = ("--trainer.max_epochs", "3", *NO_TEST)
    with warnings.catch_warnings(record=True) as caught:
        unset = run_cli("fit", *short, "--trainer.log_every_n_steps", "null")
    assert not [w for w in caught if "logging interval" in str(w.message)]
    assert unset.trainer.log_every_n_steps == 25
    steps = [step for step, _ in curves(run_dir(tmp_path, "mlp_classification"))["train/loss_step"]]
    assert steps == [24, 49, 74]
    chosen = run_cli("fit", *short, "--trainer.log_every_n_steps", "40")
    assert chosen.trainer.log_every_n_steps == 40
