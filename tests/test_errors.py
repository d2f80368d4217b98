"""Bad input: one line naming the mistake, a non-zero exit, no traceback, nothing written."""

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import config

MLP = config("mlp_classification")
CNN = config("cnn")
REGRESSION = config("two_layer_relu")

# (case id, command line after the subcommand, exit status, words the one line must hold), or a
# pytest.param of the last three where a case needs marks.
CASES = [
    (
        "unknown option",
        ["--config", MLP, "--trainer.max_epochz", "3"],
        2,
        ["unknown option --trainer.max_epochz", "did you mean --trainer.max_epochs"],
    ),
    (
        "unknown key in a network",
        ["--config", MLP, "--model.init_args.network.init_args.widht", "4"],
        2,
        ["widht"],
    ),
    (
        "wrong type",
        ["--config", MLP, "--trainer.max_epochs", "abc"],
        2,
        ["trainer.max_epochs", "abc"],
    ),
    (
        "wrong type of a data value",
        ["--config", MLP, "--data.init_args.num_features", "ten"],
        2,
        ["num_features", "ten"],
    ),
    (
        "class_path that does not exist",
        ["--config", MLP, "--model.init_args.network.class_path", "models.Nope"],
        2,
        ["models.Nope"],
    ),
    (
        "class_path that is not a network",
        ["--config", MLP, "--model.init_args.network.class_path", "datamodules.StripeImageData"],
        2,
        ["datamodules.StripeImageData"],
    ),
    (
        "class_path that is not a datamodule",
        ["--config", MLP, "--data.class_path", "models.MLP"],
        2,
        ["models.MLP"],
    ),
    ("missing config file", ["--config", "experiments/nonexistent.yaml"], 2, ["nonexistent.yaml"]),
    (
        "zero samples",
        ["--config", MLP, "--data.init_args.num_samples", "0"],
        2,
        ["num_samples must be a positive integer, got 0"],
    ),
    (
        "negative features",
        ["--config", MLP, "--data.init_args.num_features", "-3"],
        2,
        ["num_features must be a positive integer, got -3"],
    ),
    (
        "zero hidden units",
        ["--config", MLP, "--model.init_args.network.init_args.hidden_sizes", "[0]"],
        2,
        ["hidden_sizes entry must be a positive integer, got 0"],
    ),
    (
        "one class",
        ["--config", MLP, "--data.init_args.num_classes", "1"],
        2,
        ["num_classes must be an integer >= 2, got 1"],
    ),
    (
        "zero batch size",
        ["--config", MLP, "--data.init_args.batch_size", "0"],
        2,
        ["batch_size must be a positive integer or null, got 0"],
    ),
    (
        "zero epochs",
        ["--config", MLP, "--trainer.max_epochs", "0"],
        2,
        ["trainer.max_epochs must be a positive integer, got 0"],
    ),
    (
        "fraction of zero",
        ["--config", MLP, "--data.init_args.val_fraction", "0"],
        2,
        ["val_fraction must be in (0, 1), got 0"],
    ),
    (
        "fraction above one",
        ["--config", MLP, "--data.init_args.test_fraction", "1.5"],
        2,
        ["test_fraction must be in (0, 1), got 1.5"],
    ),
    (
        "fractions summing to one",
        [
            "--config",
            MLP,
            "--data.init_args.val_fraction",
            "0.6",
            "--data.init_args.test_fraction",
            "0.4",
        ],
        2,
        ["val_fraction + test_fraction must be below 1"],
    ),
    (
        "a stage without a batch",
        [
            "--config",
            MLP,
            "--data.init_args.num_samples",
            "10",
            "--data.init_args.val_fraction",
            "0.01",
        ],
        2,
        ["val split of 10 samples with val_fraction 0.01 is empty"],
    ),
    (
        "unknown activation",
        ["--config", MLP, "--model.init_args.network.init_args.activation", "swish"],
        2,
        ["activation", "swish", "relu"],
    ),
    (
        "unknown pooling",
        ["--config", CNN, "--model.init_args.network.init_args.pool", "median"],
        2,
        ["pool", "median", "max"],
    ),
    (
        "unknown recurrent cell",
        [
            "--config",
            config("recurrent"),
            "--model.init_args.network.init_args.cell",
            "transformer",
        ],
        2,
        ["cell", "transformer", "lstm"],
    ),
    (
        "learning rate zero",
        ["--config", MLP, "--model.init_args.optimizer.init_args.lr", "0"],
        2,
        ["learning rate must be > 0, got 0"],
    ),
    (
        "negative learning rate",
        ["--config", REGRESSION, "--model.init_args.optimizer.init_args.lr", "-0.1"],
        2,
        ["learning rate", "-0.1"],
    ),
    (
        "linked input size overridden",
        ["--config", MLP, "--model.init_args.network.init_args.input_shape", "[12]"],
        2,
        ["input_shape", "linked from the data", "data.init_args"],
    ),
    (
        "regression network under the classification task",
        ["--config", REGRESSION, "--model.class_path", "models.ClassificationTask"],
        2,
        ["ClassificationTask", "num_classes"],
    ),
    (
        "image network on feature vectors",
        ["--config", MLP, "--model.init_args.network.class_path", "models.CNN"],
        2,
        ["input_shape must have 3 entries, got [10]"],
    ),
    (
        "network output against the task",
        [
            "--config",
            MLP,
            "--model.init_args.network.class_path",
            "torch.nn.Linear",
            "--model.init_args.network.init_args.in_features",
            "10",
            "--model.init_args.network.init_args.out_features",
            "3",
        ],
        2,
        ["outputs of shape [3] per sample", "ClassificationTask", "needs 2 logits"],
    ),
    pytest.param(
        ["--config", MLP, "--trainer.accelerator", "gpu"],
        2,
        ["gpu"],
        id="gpu on a machine without one",
        marks=pytest.mark.skipif(
            torch.cuda.is_available(), reason="this machine has a GPU: the run would train on it"
        ),
    ),
    (
        "unwritable log directory",
        ["--config", MLP, "--trainer.default_root_dir", "BLOCKER/runs"],
        2,
        ["cannot write runs", "BLOCKER"],
    ),
]


def case(entry: tuple) -> object:
    """A CASES entry as a pytest parameter: a plain tuple's first item is its id."""
    is_param = hasattr(entry, "marks")  # pytest.param's result is a tuple too
    return entry if is_param else pytest.param(*entry[1:], id=entry[0])


@pytest.mark.parametrize(("args", "status", "words"), [case(c) for c in CASES])
def test_bad_input_gets_one_line(run_cli, tmp_path, capsys, args, status, words):
    (tmp_path / "BLOCKER").write_text("a file where a directory is wanted\n")
    args = [str(tmp_path / a) if a.startswith("BLOCKER") else a for a in args]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == status
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    for word in words:
        assert word in err[0], (word, err[0])
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "trainer:\n  max_epochs: 3\n  callbacks: [a, b\n",
            "4:1",
            "did not find expected ',' or ']'",
        ),
        ("trainer:\n  max_epochs: 3\n   devices: 1\n", "3:11", "mapping values are not allowed"),
    ],
    ids=["unclosed list", "bad indentation"],
)
def test_a_malformed_yaml_file_is_named_with_line_column_and_reason(
    run_cli, tmp_path, capsys, text, where, reason
):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", "bad.yaml")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith(f"error: {bad}:{where}: {reason}")
    assert not (tmp_path / "lightning_logs").exists()


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
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    assert len(err) == 1, err
    assert err[0].startswith("error: training loss became ")
    assert "the learning rate 1.5 is probably too high" in err[0]
    step = int(err[0].split(" at step ")[1].split()[0])
    last = tmp_path / "lightning_logs/linear_regression/version_0/checkpoints/last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] < step
    assert all(t.isfinite().all() for t in checkpoint["state_dict"].values())


def test_a_traceback_is_opt_in(tmp_path):
    command = [
        sys.executable,
        "-m",
        "experiments",
        "fit",
        "--config",
        MLP,
        "--data.init_args.batch_size",
        "0",
        "--trainer.max_epochs",
        "1",
    ]
    plain = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("error: ")
    env = {**os.environ, "EXPERIMENTS_TRACEBACK": "1"}
    full = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert full.returncode != 0
    assert "Traceback (most recent call last)" in full.stderr  # the whole story, on request
