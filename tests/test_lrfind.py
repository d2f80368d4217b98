"""python -m experiments lr_find, and Lightning's LearningRateFinder callback in a fit."""

import pytest
import torch
import yaml

from experiments.settings import flat_hparams
from tests.conftest import NO_TEST, config, run_dir
from tests.test_resume import evil_checkpoint

MLP = config("mlp_classification")
RATE = "--model.init_args.optimizer.init_args.lr"


def test_lr_find_writes_its_figure_and_prints_the_fit_command(run_cli, tmp_path, capsys):
    run_cli("lr_find", "--config", MLP, "--num_training", "100")
    printed = capsys.readouterr().out
    run = run_dir(tmp_path, "mlp_classification")
    assert (run / "lr_find.png").stat().st_size > 0
    text = (run / "lr_find.txt").read_text()
    rate = float(text.split("suggested learning rate: ")[1].split()[0])
    assert 1e-4 < rate < 0.5  # the steepest descent (0.063), not a wiggle at 1.6e-7
    command = printed.split("Train with:  ")[1].splitlines()[0]
    assert command.startswith(f"python -m experiments fit --config {MLP} ")
    assert "--num_training" not in command
    assert command.endswith(f"{RATE} {rate:.3g}")


def test_the_finder_callback_trains_with_the_rate_it_found(run_cli, tmp_path, capsys):
    cli = run_cli(
        "fit", "--config", MLP, "--trainer.max_epochs", "1", *NO_TEST,
        "--trainer.callbacks+=LearningRateFinder",
        "--trainer.callbacks.num_training_steps", "40",
        "--model.init_args.lr_scheduler.class_path", "torch.optim.lr_scheduler.StepLR",
        "--model.init_args.lr_scheduler.init_args.step_size", "5",
    )  # fmt: skip
    rate = cli.model.learning_rate
    assert rate != 1e-3  # the config's Adam rate
    # The config's optimizer (Adam, fused), and its scheduler, start from the rate found.
    (optimizer,) = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(rate)
    steps = [optimizer.state[p]["step"] for p in cli.model.parameters()]
    assert steps
    assert all(step == cli.trainer.global_step for step in steps)  # it is the one that trained
    assert cli.trainer.lr_scheduler_configs[0].scheduler.base_lrs == [pytest.approx(rate)]
    run = run_dir(tmp_path, "mlp_classification")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["optimizer"]["init_args"]["lr"] == pytest.approx(rate)
    checkpoint = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    hyper = checkpoint["hyper_parameters"]["optimizer"]["init_args"]
    assert hyper["lr"] == pytest.approx(rate)
    # What TensorBoard's hyperparameters tab is given (experiments/report.py).
    assert flat_hparams(cli.resolved_config())["optimizer.lr"] == pytest.approx(rate)
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hparams["optimizer"]["init_args"]["lr"] == pytest.approx(rate)
    # The console names the rate trained with, not Lightning's own suggestion.
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "Learning rate set" in line]
    assert line == f"Learning rate set to {rate:.4g} (the finder's suggestion)"


class FixedRate(torch.optim.SGD):
    """An optimizer whose rate is no option."""

    def __init__(self, params, momentum: float = 0.0) -> None:
        super().__init__(params, lr=0.1, momentum=momentum)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["lr_find", "--config", config("scratch_two_layer")],
            "no learning-rate finder for models.ScratchTwoLayer: scratch_two_layer reproduces",
        ),
        (
            ["lr_find", "--config", MLP, "--model.init_args.optimizer.class_path",
             "tests.test_lrfind.FixedRate"],
            "lr_find: tests.test_lrfind.FixedRate has no float learning rate option lr",
        ),
        (
            ["fit", "--config", config("scratch_two_layer"),
             "--trainer.callbacks+=LearningRateFinder"],
            "no learning-rate finder for models.ScratchTwoLayer",
        ),
    ],
    ids=["scratch", "no rate", "scratch callback"],
)  # fmt: skip
def test_a_finder_that_makes_no_sense_is_refused(run_cli, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists() or not any(
        (tmp_path / "lightning_logs").rglob("config.yaml")
    )


def test_lr_find_reads_no_checkpoint_and_no_run(run_cli, trained, tmp_path, capsys):
    marker, evil = tmp_path / "payload-ran", tmp_path / "evil.ckpt"
    evil_checkpoint(evil, marker)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("lr_find", "--config", MLP, "--ckpt_path", str(evil))
    assert exit_info.value.code == 2
    assert "lr_find starts a new run from the config; it takes no --ckpt_path" in (
        capsys.readouterr().err
    )
    assert not marker.exists()
    trained("--trainer.max_epochs", "2", *NO_TEST)
    run = run_dir(tmp_path, "mlp_classification")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("lr_find", "--config", str(run / "config.yaml"))
    assert exit_info.value.code == 2
    assert "lr_find takes an experiment's YAML, not the config.yaml of the run" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
