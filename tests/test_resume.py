"""Which checkpoint ``--ckpt_path`` means, whether it fits, and resuming exactly in its run."""

import os
import time
from pathlib import Path

import pytest
import torch
import yaml

from experiments import resume
from experiments.cli import main
from experiments.errors import UserError
from tests.conftest import MLP_RUN, NO_TEST, QUIET, config, curves, run_dir

MLP = config("mlp_classification")


def touch_checkpoint(path: Path, age: float = 0.0) -> Path:
    """A checkpoint file at ``path`` (its contents do not matter to the resolution)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}}, path)
    modified = time.time() - age
    os.utime(path, (modified, modified))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """``lightning_logs`` with runs 0 to 2 of ``exp``: run 2 has no checkpoint yet, run 1 two
    best files (the newest wins), run 0 a last and a best."""
    root = tmp_path / "lightning_logs"
    touch_checkpoint(root / "exp/version_0/checkpoints/last.ckpt")
    touch_checkpoint(root / "exp/version_0/checkpoints/best-epoch=3-step=4.ckpt")
    touch_checkpoint(root / "exp/version_1/checkpoints/last.ckpt")
    touch_checkpoint(root / "exp/version_1/checkpoints/best-epoch=0-step=1.ckpt", age=60)
    touch_checkpoint(root / "exp/version_1/checkpoints/best-epoch=2-step=3.ckpt", age=10)
    (root / "exp/version_2").mkdir()
    touch_checkpoint(root / "other/version_0/checkpoints/last.ckpt")
    return root


@pytest.mark.parametrize(
    ("keyword", "subcommand", "found"),
    [
        ("last", "fit", "exp/version_1/checkpoints/last.ckpt"),
        ("last", "test", "exp/version_1/checkpoints/last.ckpt"),
        ("best", "validate", "exp/version_1/checkpoints/best-epoch=2-step=3.ckpt"),
    ],
)
def test_a_keyword_names_the_newest_run_that_has_such_a_checkpoint(
    runs, keyword, subcommand, found
):
    resolved = resume.resolve(keyword, subcommand, runs, "exp")
    assert resolved.path == runs / found
    assert resolved.run == runs / "exp/version_1"
    assert resolved.version == 1


def test_a_file_inside_a_run_belongs_to_that_run(runs):
    path = runs / "exp/version_0/checkpoints/best-epoch=3-step=4.ckpt"
    resolved = resume.resolve(str(path), "fit", runs, "exp")
    assert (resolved.path, resolved.run, resolved.version) == (path, runs / "exp/version_0", 0)


@pytest.mark.parametrize(
    "path", ["other/version_0/checkpoints/last.ckpt", "../elsewhere.ckpt"], ids=["other", "outside"]
)
def test_a_file_of_another_experiment_or_outside_any_run_belongs_to_none(runs, path):
    file = touch_checkpoint(runs / path) if path.startswith("..") else runs / path
    assert resume.resolve(str(file), "fit", runs, "exp").run is None


@pytest.mark.parametrize(
    ("ckpt_path", "subcommand", "experiment", "message"),
    [
        ("best", "fit", "exp", "fit resumes from --ckpt_path last or a .ckpt file, not 'best'"),
        ("last", "fit", "new", "--ckpt_path last: no last.ckpt to use for experiment 'new'"),
        ("best", "test", "new", "--ckpt_path best: no best checkpoint to use for experiment"),
        ("missing.ckpt", "test", "exp", "--ckpt_path missing.ckpt: no such checkpoint file"),
    ],
)
def test_nothing_to_use_is_an_error(runs, ckpt_path, subcommand, experiment, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resume.resolve(ckpt_path, subcommand, runs, experiment)


def evil_checkpoint(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "hyper_parameters": {"hook": Payload()}}, path)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text("these are not weights\n"), "not a checkpoint file"),
        (
            lambda p: torch.save({"epoch": 1}, p),
            "not a Lightning checkpoint (it has no state_dict)",
        ),
        (
            lambda p: p.write_bytes(_saved_bytes()[: len(_saved_bytes()) // 2]),
            "not a readable checkpoint, truncated or damaged",
        ),
    ],
    ids=["text", "no state_dict", "truncated"],
)
def test_a_file_that_is_not_a_complete_checkpoint_is_named(tmp_path, write, message):
    path = tmp_path / "file.ckpt"
    write(path)
    with pytest.raises(UserError) as refused:
        resume.load(path)
    assert str(refused.value).startswith(f"{path}: {message}")


def _saved_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(100)}}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_a_checkpoint_carrying_code_is_refused_without_running_it(
    run_cli, tmp_path, capsys, subcommand
):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"
    evil_checkpoint(evil, marker)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(subcommand, "--config", MLP, "--ckpt_path", str(evil))
    assert exit_info.value.code == 2
    assert "refused: it holds pickled code or objects" in capsys.readouterr().err
    assert not marker.exists()


@pytest.fixture(scope="module")
def checkpoints(trained_runs, tmp_path_factory) -> dict[str, Path]:
    """The last checkpoints of mlp_classification and scratch_two_layer runs, and one cut short."""
    mlp, _ = trained_runs.train(*MLP_RUN)
    scratch, _ = trained_runs.train("--config", config("scratch_two_layer"), *MLP_RUN)
    good = run_dir(mlp, "mlp_classification") / "checkpoints/last.ckpt"
    truncated = tmp_path_factory.mktemp("damaged") / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {
        "mlp_classification": good,
        "scratch_two_layer": run_dir(scratch, "scratch_two_layer") / "checkpoints/last.ckpt",
        "truncated": truncated,
    }


MISMATCHES = {
    "other experiment": (
        "scratch_two_layer",
        [],
        "checkpoint of network models.ScratchTwoLayer, the config builds models.MLP",
    ),
    "other shape": (
        "mlp_classification",
        ["--data.init_args.num_features", "12"],
        "does not fit this model: network.1.weight is [50, 10] in the checkpoint, [50, 12] here",
    ),
    "other width": (
        "mlp_classification",
        ["--model.init_args.network.init_args.hidden_sizes", "[64]"],
        "network hidden_sizes is [50] in the checkpoint but [64] in the config",
    ),
    "truncated": ("truncated", [], "not a readable checkpoint, truncated or damaged"),
}


@pytest.mark.parametrize("subcommand", ["fit", "test"])
@pytest.mark.parametrize(("file", "extra", "message"), MISMATCHES.values(), ids=MISMATCHES.keys())
def test_a_checkpoint_that_does_not_fit_gets_one_line_naming_file_and_mismatch(
    checkpoints, tmp_path, monkeypatch, capsys, subcommand, file, extra, message
):
    monkeypatch.chdir(tmp_path)  # nothing may be written, here or in the trained runs
    path = checkpoints[file]
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--config", MLP, "--ckpt_path", str(path), *extra, *QUIET])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith(f"error: {path}: ")
    assert message in line
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow  # whole runs compared bit for bit
def test_two_plus_two_epochs_equal_four_bit_for_bit(run_cli, tmp_path, monkeypatch):
    # Dropout draws from the global generator: only a restored random state reproduces it.
    common = ["--config", MLP, *NO_TEST, "--model.init_args.network.init_args.dropout", "0.3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for directory in (straight, resumed):
        directory.mkdir()
    monkeypatch.chdir(straight)
    run_cli("fit", *common, "--trainer.max_epochs", "4")
    monkeypatch.chdir(resumed)
    run_cli("fit", *common, "--trainer.max_epochs", "2")
    run_cli("fit", *common, "--trainer.max_epochs", "4", "--ckpt_path", "last")

    runs = [run_dir(root, "mlp_classification") for root in (straight, resumed)]
    one, two = (torch.load(run / "checkpoints/last.ckpt", weights_only=True) for run in runs)
    assert one["global_step"] == two["global_step"] == 100
    for name, tensor in one["state_dict"].items():
        assert torch.equal(tensor, two["state_dict"][name]), name
    for name, state in one["optimizer_states"][0]["state"].items():
        assert torch.equal(state["exp_avg"], two["optimizer_states"][0]["state"][name]["exp_avg"])
    assert curves(runs[0]) == curves(runs[1])  # same tags, steps and values: no gap, no repeat
    assert len(curves(runs[1])["val/loss"]) == 4


def test_resume_last_continues_the_newest_run_and_keeps_its_config(run_cli, tmp_path):
    run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "5")
    run = run_dir(tmp_path, "scratch_two_layer")
    saved = yaml.safe_load((run / "config.yaml").read_text())
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
    # The run's own config, but for how far it is now trained.
    saved["trainer"]["max_epochs"] = 9
    assert yaml.safe_load((run / "config.yaml").read_text()) == saved
    assert cli.trainer.current_epoch == 9
    steps = [step for step, _ in curves(run)["train/loss_epoch"]]
    assert steps == list(range(9))  # one point per epoch, 0..8, none twice


def test_ckpt_path_file_resumes_in_the_run_it_belongs_to(run_cli, trained, tmp_path):
    scratch = ["--config", config("scratch_two_layer"), "--trainer.max_epochs"]
    trained(*scratch, "3", times=2)
    first = run_dir(tmp_path, "scratch_two_layer")
    cli = run_cli("fit", *scratch, "6", "--ckpt_path", str(first / "checkpoints/last.ckpt"))
    assert Path(cli.trainer.log_dir).resolve() == first.resolve()
    assert len(curves(first)["train/loss_epoch"]) == 6


def test_nothing_to_resume_is_an_error_not_a_fresh_start(run_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", MLP, "--ckpt_path", "last")
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --ckpt_path last: no last.ckpt to use for experiment")
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(("keyword", "prefix"), [("best", "best-"), ("last", "last")])
def test_evaluation_uses_the_newest_runs_checkpoint(run_cli, trained, tmp_path, keyword, prefix):
    trained("--config", config("scratch_two_layer"), "--trainer.max_epochs", "4", *NO_TEST, times=2)
    newest = run_dir(tmp_path, "scratch_two_layer", 1)
    cli = run_cli("test", "--config", config("scratch_two_layer"), "--ckpt_path", keyword)
    assert Path(cli.config.test.ckpt_path).parent.resolve() == (newest / "checkpoints").resolve()
    assert Path(cli.config.test.ckpt_path).name.startswith(prefix)
    assert Path(cli.trainer.log_dir).resolve() == newest.resolve()
    assert "test/acc" in curves(newest)
