"""Checkpoints and resume: exact, in the same run, interruption-safe and safe to load."""

import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import config

MLP_RUN = Path("lightning_logs/mlp_classification/version_0")


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def test_two_plus_two_epochs_equal_four_bit_for_bit(run_cli, tmp_path, monkeypatch):
    # Dropout draws from the global generator: only a restored random state reproduces it.
    common = [
        "--config",
        config("mlp_classification"),
        "--test_after_fit",
        "false",
        "--model.init_args.network.init_args.dropout",
        "0.3",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for directory in (straight, resumed):
        directory.mkdir()
    monkeypatch.chdir(straight)
    run_cli("fit", *common, "--trainer.max_epochs", "4")
    monkeypatch.chdir(resumed)
    run_cli("fit", *common, "--trainer.max_epochs", "2")
    run_cli("fit", *common, "--trainer.max_epochs", "4", "--ckpt_path", "last")

    one = torch.load(straight / MLP_RUN / "checkpoints/last.ckpt", weights_only=True)
    two = torch.load(resumed / MLP_RUN / "checkpoints/last.ckpt", weights_only=True)
    assert one["global_step"] == two["global_step"] == 100
    for name, tensor in one["state_dict"].items():
        assert torch.equal(tensor, two["state_dict"][name]), name
    for name, state in one["optimizer_states"][0]["state"].items():
        assert torch.equal(state["exp_avg"], two["optimizer_states"][0]["state"][name]["exp_avg"])
    curves_one, curves_two = scalars(straight / MLP_RUN), scalars(resumed / MLP_RUN)
    assert curves_one == curves_two  # same tags, steps and values: no gap, no repeat
    assert len(curves_two["val/loss"]) == 4


def test_resume_last_continues_the_newest_run_and_keeps_its_config(run_cli, tmp_path):
    run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "5")
    run = tmp_path / "lightning_logs/scratch_two_layer/version_0"
    saved = hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()
    cli = run_cli(
        "fit",
        "--config",
        config("scratch_two_layer"),
        "--trainer.max_epochs",
        "9",
        "--ckpt_path",
        "last",
    )
    assert Path(cli.trainer.log_dir).resolve() == run.resolve()
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    assert hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest() == saved
    assert cli.trainer.current_epoch == 9
    steps = [step for step, _ in scalars(run)["train/loss_epoch"]]
    assert steps == list(range(9))  # one point per epoch, 0..8, none twice


def test_ckpt_path_file_resumes_in_the_run_it_belongs_to(run_cli, tmp_path):
    run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "3")
    run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "3")
    first = tmp_path / "lightning_logs/scratch_two_layer/version_0"
    cli = run_cli(
        "fit",
        "--config",
        config("scratch_two_layer"),
        "--trainer.max_epochs",
        "6",
        "--ckpt_path",
        str(first / "checkpoints/last.ckpt"),
    )
    assert Path(cli.trainer.log_dir).resolve() == first.resolve()
    assert len(scalars(first)["train/loss_epoch"]) == 6


def test_nothing_to_resume_is_an_error_not_a_fresh_start(run_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", config("mlp_classification"), "--ckpt_path", "last")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ckpt_path last: no last.ckpt to use for experiment")
    assert "Traceback" not in err
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(("keyword", "prefix"), [("best", "best-"), ("last", "last")])
def test_evaluation_uses_the_newest_runs_checkpoint(run_cli, tmp_path, keyword, prefix):
    for _ in range(2):
        run_cli(
            "fit",
            "--config",
            config("scratch_two_layer"),
            "--trainer.max_epochs",
            "4",
            "--test_after_fit",
            "false",
        )
    newest = tmp_path / "lightning_logs/scratch_two_layer/version_1"
    cli = run_cli("test", "--config", config("scratch_two_layer"), "--ckpt_path", keyword)
    assert Path(cli.config.test.ckpt_path).parent.resolve() == (newest / "checkpoints").resolve()
    assert Path(cli.config.test.ckpt_path).name.startswith(prefix)
    assert Path(cli.trainer.log_dir).resolve() == newest.resolve()
    assert "test/acc" in scalars(newest)


def evil_checkpoint(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "hyper_parameters": {"hook": Payload()}}, path)


def bad_checkpoints(tmp_path: Path, run_cli) -> dict[str, tuple[Path, list[str], str]]:
    """Files that must be refused, with extra CLI arguments and the message expected."""
    run_cli(
        "fit",
        "--config",
        config("mlp_classification"),
        "--trainer.max_epochs",
        "1",
        "--test_after_fit",
        "false",
    )
    good = tmp_path / MLP_RUN / "checkpoints/last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("these are not weights\n")
    run_cli(
        "fit",
        "--config",
        config("scratch_two_layer"),
        "--trainer.max_epochs",
        "1",
        "--test_after_fit",
        "false",
    )
    other = tmp_path / "lightning_logs/scratch_two_layer/version_0/checkpoints/last.ckpt"
    return {
        "other experiment": (
            other,
            [],
            "checkpoint of network models.ScratchTwoLayer, the config builds models.MLP",
        ),
        "other shape": (
            good,
            ["--data.init_args.num_features", "12"],
            "does not fit this model: network.1.weight is [50, 10] in the checkpoint,"
            " [50, 12] here",
        ),
        "other width": (
            good,
            ["--model.init_args.network.init_args.hidden_sizes", "[64]"],
            "network hidden_sizes is [50] in the checkpoint but [64] in the config",
        ),
        "truncated": (truncated, [], "not a readable checkpoint, truncated or damaged"),
        "not a checkpoint": (text, [], "not a checkpoint file"),
    }


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_wrong_checkpoints_get_one_line_naming_file_and_mismatch(
    run_cli, tmp_path, capsys, subcommand
):
    for case, (path, extra, message) in bad_checkpoints(tmp_path, run_cli).items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run_cli(
                subcommand,
                "--config",
                config("mlp_classification"),
                "--ckpt_path",
                str(path),
                *extra,
            )
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2, case
        assert len(err) == 1, (case, err)
        assert err[0].startswith(f"error: {path}"), case
        assert message in err[0], (case, err[0])


def test_a_checkpoint_carrying_code_is_refused_without_running_it(run_cli, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"
    evil_checkpoint(evil, marker)
    for subcommand in ("fit", "validate", "test", "predict"):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(subcommand, "--config", config("mlp_classification"), "--ckpt_path", str(evil))
        assert exit_info.value.code == 2
        assert "refused: it holds pickled code or objects" in capsys.readouterr().err
    assert not marker.exists()


def command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments",
        "fit",
        "--config",
        config("mlp_classification"),
        "--trainer.enable_progress_bar",
        "false",
        "--test_after_fit",
        "false",
        *args,
    ]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_stops_and_resumes(tmp_path, signum, status):
    last = tmp_path / MLP_RUN / "checkpoints/last.ckpt"
    process = subprocess.Popen(
        command("--trainer.max_epochs", "1000"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(last, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert f"Stopped by {signal.Signals(signum).name} after epoch" in out
    assert "--ckpt_path last" in out
    stopped = torch.load(last, weights_only=True)
    assert 1 <= stopped["epoch"] + 1 < 1000

    target = stopped["epoch"] + 3
    done = subprocess.run(
        command("--trainer.max_epochs", str(target), "--ckpt_path", "last"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert torch.load(last, weights_only=True)["epoch"] == target - 1
    steps = [step for step, _ in scalars(tmp_path / MLP_RUN)["train/loss_epoch"]]
    assert len(steps) == target
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_torn_checkpoint(tmp_path):
    last = tmp_path / "lightning_logs/linear_regression/version_0/checkpoints/last.ckpt"
    base = [
        sys.executable,
        "-m",
        "experiments",
        "fit",
        "--config",
        config("linear_regression"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.max_epochs",
        "100000",
    ]
    chooser = random.Random(0)
    epochs = []
    for _ in range(6):  # each round starts a process: about 9 s
        resume = ["--ckpt_path", "last"] if last.exists() else []
        before = last.stat().st_mtime_ns if last.exists() else 0
        process = subprocess.Popen(
            base + resume, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
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

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments",
            "fit",
            "--config",
            config("cnn"),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.max_epochs",
            "2",
            "--data.init_args.num_samples",
            "300",
            "--figures.enabled",
            "false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=limit,
    )
    assert done.returncode == 1, done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: could not save checkpoint ")
    assert last_line.endswith(": File too large; training stopped")
    checkpoints = tmp_path / "lightning_logs/cnn/version_0/checkpoints"
    assert not list(checkpoints.glob("*.ckpt"))  # nothing half-written under a real name
