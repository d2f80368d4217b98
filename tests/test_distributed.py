"""Data parallelism with Lightning's DDP strategy: two CPU processes talking over gloo.

Each test launches the real CLI, which starts the second process the way Lightning does for a
user (``--trainer.devices 2 --trainer.strategy ddp``), so these run in subprocesses.
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.cli import main
from tests.conftest import QUIET, config

pytestmark = pytest.mark.slow

RUN = Path("lightning_logs/mlp_classification/version_0")
DDP = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")
# 1000 samples: 800 to train on, 400 per process, 13 steps of 32 per process and epoch.
DATA = ("--config", config("mlp_classification"), "--data.init_args.num_samples", "1000")


def experiments(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "experiments", *args, "--trainer.enable_progress_bar", "false"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def last_values(run: Path) -> dict[str, float]:
    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def predictions(run: Path) -> list[dict[str, str]]:
    with (run / "predictions.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_two_processes_shard_sync_write_once_resume_exactly_and_predict(tmp_path, monkeypatch):
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    resumed.mkdir()
    straight.mkdir()
    first = experiments(resumed, "fit", *DATA, *DDP, "--trainer.max_epochs", "2")
    experiments(resumed, "fit", *DATA, *DDP, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    experiments(straight, "fit", *DATA, *DDP, "--trainer.max_epochs", "3")

    # One run, written once: a single version, config and summary; no stray partial files.
    for root in (resumed, straight):
        assert sorted(p.name for p in (root / RUN).parent.iterdir()) == ["version_0"]
        files = sorted(p.name for p in (root / RUN / "checkpoints").iterdir())
        assert len(files) == 2
        assert "last.ckpt" in files
    assert [line for line in first.stdout.splitlines() if line.startswith("Run:")] == [
        f"Run:         {RUN}"
    ]

    # Each process trained on its own half: 13 steps an epoch, not the 25 of the whole split.
    last = torch.load(resumed / RUN / "checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 39)
    # Stopped after 2 epochs and resumed to 3 equals 3 epochs straight, bit for bit.
    other = torch.load(straight / RUN / "checkpoints/last.ckpt", weights_only=True)
    for name, weights in last["state_dict"].items():
        assert torch.equal(weights, other["state_dict"][name]), name
    assert (
        last_values(resumed / RUN)["train/loss_epoch"]
        == last_values(straight / RUN)["train/loss_epoch"]
    )

    # Validation and test metrics, synchronised across the two processes, equal what one
    # process computes on the whole split with the same weights.
    two = last_values(straight / RUN)
    monkeypatch.chdir(straight)  # the one-process runs go in-process: no second start-up
    main(["validate", *DATA, "--ckpt_path", "last", *QUIET])
    main(["test", *DATA, "--ckpt_path", "best", *QUIET])
    one = last_values(straight / RUN)
    for tag in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert two[tag] == pytest.approx(one[tag], abs=1e-6), tag

    # Each process predicts its shard; the file holds every test sample once, in order, as one
    # process writes it.
    experiments(straight, "predict", *DATA, *DDP, "--ckpt_path", "last")
    two = predictions(straight / RUN)
    main(["predict", *DATA, "--ckpt_path", "last", *QUIET])
    one = predictions(straight / RUN)
    assert [row["index"] for row in two] == [str(i) for i in range(100)]
    assert [row["class"] for row in two] == [row["class"] for row in one]
    for a, b in zip(two, one, strict=True):
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=1e-6)
