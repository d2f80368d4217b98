"""Checks of a run's set-up, before anything is written, and the stop on a diverging loss."""

import pytest
import torch

from datamodules import FeatureClassificationData, TeacherRegressionData
from experiments.errors import UserError
from experiments.sanity import check_output_shape, check_run, check_writable
from models import MLP, ClassificationTask, RegressionTask
from tests.conftest import config, run_dir

MLP_CONFIG = config("mlp_classification")

REFUSED = {
    "linked input size overridden": (
        ["--model.init_args.network.init_args.input_shape", "[12]"],
        ["input_shape", "linked from the data", "data.init_args"],
    ),
    "network output against the task": (
        ["--model.init_args.network.class_path", "tests.usernets.OneTooMany"],
        ["outputs of shape [3] per sample", "ClassificationTask", "needs 2 logits"],
    ),
    "unwritable log directory": (
        ["--trainer.default_root_dir", "BLOCKER/runs"],
        ["cannot write runs", "BLOCKER", "is a file, not a directory"],
    ),
}


@pytest.mark.parametrize(("args", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_a_run_that_cannot_work_is_refused_in_one_line(run_cli, tmp_path, capsys, args, words):
    (tmp_path / "BLOCKER").write_text("a file where a directory is wanted\n")
    args = [str(tmp_path / a) if a.startswith("BLOCKER") else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", MLP_CONFIG, *args)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "lightning_logs").exists()


def test_writable_directories_pass_and_a_file_in_the_way_is_named(tmp_path):
    check_writable(tmp_path / "new" / "deeper")  # created later; nothing is created now
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"file is a file, not a directory"):
        check_writable(tmp_path / "file" / "runs")


def test_a_network_of_the_wrong_output_width_is_named():
    with pytest.raises(UserError, match=r"gives outputs of shape \[3\] .* needs 1 values"):
        check_output_shape(RegressionTask(MLP([10], 3)), TeacherRegressionData(num_features=10))
    check_output_shape(ClassificationTask(MLP([10], 2), 2), FeatureClassificationData())


def test_more_processes_than_samples_in_a_split_are_refused():
    data = FeatureClassificationData(num_samples=30)  # 3 validation samples
    with pytest.raises(UserError, match="the val split has 3 samples, fewer than the 4"):
        check_run(ClassificationTask(MLP([10], 2), 2), data, processes=4)


def test_a_diverging_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
    run_cli, tmp_path, capsys
):
    # Gradient descent on this regression diverges for a learning rate above about 1.
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            "fit",
            "--config",
            config("linear_regression"),
            "--model.init_args.optimizer.init_args.lr",
            "1.5",
        )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    assert line.startswith("error: training loss became ")
    assert "the learning rate 1.5 is probably too high" in line
    step = int(line.split(" at step ")[1].split()[0])
    last = run_dir(tmp_path, "linear_regression") / "checkpoints/last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] < step
    assert all(t.isfinite().all() for t in checkpoint["state_dict"].values())
