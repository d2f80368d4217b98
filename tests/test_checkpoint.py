"""Checkpoints: the newest always in last.ckpt, written crash-safe, holding the random state."""

import random
import resource
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from experiments.checkpoint import RandomState, RunCheckpoint, SafeCheckpointIO
from experiments.cli import DEFAULT_EXPERIMENT
from experiments.errors import UserError
from tests.conftest import NO_TEST, config, run_dir, start_experiments


def test_last_checkpoint_is_the_newest_even_without_improvement(run_cli, tmp_path):
    # With mode max, the "best" val/loss is the first epoch's and never improves; last.ckpt
    # must follow the run to its end all the same (Lightning 2.6 alone leaves it at epoch 0).
    run_cli("fit", "--trainer.max_epochs", "3", "--checkpoint.mode", "max", *NO_TEST)
    checkpoints = run_dir(tmp_path, DEFAULT_EXPERIMENT) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert last["global_step"] == 3 * 25
    (best,) = checkpoints.glob("best-*.ckpt")
    assert torch.load(best, weights_only=True)["epoch"] == 0


def test_the_private_decisions_run_checkpoint_agrees_with_are_still_lightnings():
    # RunCheckpoint._save_last_if_behind reads these; were one renamed, it would fail at the
    # end of the first epoch of every run instead of here.
    callback = RunCheckpoint(monitor="val/loss", save_last=True)
    for method in (
        "_should_save_on_train_epoch_end",
        "_should_skip_saving_checkpoint",
        "_monitor_candidates",
        "_save_last_checkpoint",
    ):
        assert callable(getattr(ModelCheckpoint, method)), method
    assert isinstance(callback._every_n_epochs, int)
    assert callback._last_global_step_saved == 0


def test_a_checkpoint_is_written_whole_and_read_back_with_weights_only(tmp_path):
    writer = SafeCheckpointIO()
    state = {"state_dict": {"w": torch.arange(4.0)}, "epoch": 3}
    writer.save_checkpoint(state, tmp_path / "run" / "last.ckpt")
    writer.wait()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.ckpt"]  # no partials
    loaded = writer.load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))


def test_a_copied_checkpoint_is_the_same_file_and_outlives_its_source(tmp_path):
    writer = SafeCheckpointIO()
    writer.save_checkpoint({"state_dict": {}, "epoch": 1}, tmp_path / "best.ckpt")
    writer.copy_checkpoint(tmp_path / "best.ckpt", tmp_path / "last.ckpt")
    writer.remove_checkpoint(tmp_path / "best.ckpt")
    writer.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 1


def test_a_preloaded_checkpoint_is_served_once_for_its_path(tmp_path):
    writer = SafeCheckpointIO()
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "epoch": 7}, path)
    checked = {"state_dict": {}, "epoch": 5}  # stands for what the CLI read and checked earlier
    writer.preload(path, checked)
    assert writer.load_checkpoint(str(path)) is checked
    assert writer.load_checkpoint(path)["epoch"] == 7  # once only: then from the file


def test_a_failed_write_stops_at_the_next_save_naming_the_file(tmp_path):
    writer = SafeCheckpointIO()
    (tmp_path / "blocked").write_text("a file where the checkpoints directory should be\n")
    target = tmp_path / "blocked" / "last.ckpt"
    writer.save_checkpoint({"state_dict": {}}, target)
    with pytest.raises(UserError, match=f"could not save checkpoint {target}: .*training stopped"):
        writer.wait()


def test_the_random_state_is_saved_and_restored():
    keeper = RandomState()
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    state = keeper.state_dict()
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    keeper.load_state_dict(state)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(again[0], expected[0])
    assert again[1:] == expected[1:]


@pytest.mark.slow(seconds=17)
def test_sigkill_at_random_moments_never_leaves_a_torn_checkpoint(tmp_path):
    last = run_dir(tmp_path, "linear_regression") / "checkpoints/last.ckpt"
    fit = ["fit", "--config", config("linear_regression"), "--trainer.max_epochs", "100000"]
    chooser = random.Random(0)
    epochs = []
    for _ in range(4):  # each round starts a process: about 10 s
        resume = ["--ckpt_path", "last"] if last.exists() else []
        before = last.stat().st_mtime_ns if last.exists() else 0
        process = start_experiments(tmp_path, *fit, *resume, stdout=subprocess.DEVNULL)
        # Once this process is writing checkpoints (one every 10 epochs, several a second),
        # kill it at a random moment: mid-write, between writes, mid-step.
        deadline = time.monotonic() + 120
        while not last.exists() or last.stat().st_mtime_ns == before:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never wrote a checkpoint"
            time.sleep(0.05)
        time.sleep(chooser.uniform(0.0, 1.5))
        process.kill()
        process.wait()
        # The killed process still stands in the run's lock file; the next round resumes at once
        # all the same, since its hold ended with it.
        holder = (last.parent.parent / "run.lock").read_text().split()
        assert holder[1] == str(process.pid)
        checkpoint = torch.load(last, weights_only=True)  # complete, or this raises
        assert set(checkpoint["state_dict"]) == {"network.linear.weight", "network.linear.bias"}
        epochs.append(checkpoint["epoch"])
    assert epochs == sorted(epochs)  # every resume carried on from the last one
    assert epochs[-1] > epochs[0]


@pytest.mark.slow
def test_a_failed_save_stops_the_run_with_a_message(tmp_path):
    # A real write failure: the process may not write files beyond 200 kB, as on a full disk.
    # The cnn's first checkpoint (with Adam's state) is about 3 MB.
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    cnn = ["fit", "--config", config("cnn"), "--trainer.max_epochs", "2"]
    small = ["--data.init_args.num_samples", "300", "--figures.enabled", "false"]
    process = start_experiments(tmp_path, *cnn, *small, preexec_fn=limit)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("error: could not save checkpoint ")
    assert last_line.endswith(": File too large; training stopped")
    checkpoints = run_dir(tmp_path, "cnn") / "checkpoints"
    assert not list(checkpoints.glob("*.ckpt"))  # nothing half-written under a real name
