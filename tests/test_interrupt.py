"""Ctrl-C and SIGTERM stop ``fit`` at the end of an epoch, with a checkpoint to resume from."""

import signal
import time

import pytest
import torch

from tests.conftest import NO_TEST, config, curves, run_dir, start_experiments

FIT = ("fit", "--config", config("mlp_classification"), *NO_TEST)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_stops_and_resumes(tmp_path, run_cli, signum, status):
    run = run_dir(tmp_path, "mlp_classification")
    last = run / "checkpoints/last.ckpt"
    process = start_experiments(tmp_path, *FIT, "--trainer.max_epochs", "1000")
    deadline = time.monotonic() + 120
    while not last.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{last} never appeared"
        time.sleep(0.1)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert f"Stopped by {signal.Signals(signum).name} after epoch" in out
    assert "--ckpt_path last" in out
    stopped = torch.load(last, weights_only=True)
    assert 1 <= stopped["epoch"] + 1 < 1000

    target = stopped["epoch"] + 3
    run_cli(*FIT, "--trainer.max_epochs", str(target), "--ckpt_path", "last")  # in-process
    assert torch.load(last, weights_only=True)["epoch"] == target - 1
    steps = [step for step, _ in curves(run)["train/loss_epoch"]]
    assert len(steps) == target
    assert steps == sorted(set(steps))
