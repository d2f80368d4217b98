"""The sweep file's pruner: Optuna's median rule with its own options, or none."""

import re

import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial

from experiments.errors import UserError
from experiments.sweep import spec, study
from experiments.sweep.cli import main as sweep_main
from tests.conftest import config


def sweep_with(tmp_path, pruner: object) -> spec.Sweep:
    path = tmp_path / "quick.yaml"
    content = {
        "config": config("two_layer_relu"),
        "metric": "val/r2",
        "direction": "maximize",
        "pruner": pruner,
        "space": {"model.init_args.optimizer.init_args.lr": [0.05, 0.1]},
    }
    path.write_text(yaml.safe_dump(content))
    return spec.load(path)


def pruned_at(sweep: spec.Sweep) -> list[int]:
    """The epochs at which a trial far below five finished ones would be pruned."""
    the_study = optuna.create_study(direction="maximize")
    for _ in range(5):
        the_study.add_trial(
            create_trial(value=0.9, intermediate_values=dict.fromkeys(range(10), 0.9))
        )
    rule = study.pruner(sweep)
    return [
        epoch
        for epoch in range(10)
        if rule.prune(
            the_study,
            create_trial(
                state=TrialState.RUNNING, intermediate_values=dict.fromkeys(range(epoch + 1), 0.1)
            ),
        )
    ]


def test_the_median_rule_waits_four_epochs_unless_the_sweep_file_says_otherwise(tmp_path):
    # A slow starter gets four epochs to show itself before the median rule may stop it.
    assert pruned_at(sweep_with(tmp_path, "median")) == [4, 5, 6, 7, 8, 9]
    # Optuna's own options, under the pruner's name; the others keep their defaults.
    options = {"n_warmup_steps": 6, "interval_steps": 2}
    assert pruned_at(sweep_with(tmp_path, {"median": options})) == [6, 8]
    assert pruned_at(sweep_with(tmp_path, {"median": {"n_startup_trials": 6}})) == []
    assert pruned_at(sweep_with(tmp_path, "none")) == []


BAD = {
    "unknown name": ("hyperband", "pruner must be one of median, none, got 'hyperband'"),
    "options of none": (
        {"none": {"n_warmup_steps": 3}},
        "pruner must be median, none or {median: {option: value, ...}}, got {'none': ",
    ),
    "options not a mapping": (
        {"median": 5},
        "pruner must be median, none or {median: {option: value, ...}}, got {'median': 5}",
    ),
    "unknown option": (
        {"median": {"warmup": 5}},
        "pruner: median: unknown option 'warmup' (n_startup_trials, n_warmup_steps, "
        "interval_steps, n_min_trials)",
    ),
    "negative": (
        {"median": {"n_warmup_steps": -1}},
        "pruner: median: n_warmup_steps must be a whole number of at least 0, got -1",
    ),
    "zero interval": (
        {"median": {"interval_steps": 0}},
        "pruner: median: interval_steps must be a whole number of at least 1, got 0",
    ),
    "not a number": (
        {"median": {"n_startup_trials": "five"}},
        "pruner: median: n_startup_trials must be a whole number of at least 0, got 'five'",
    ),
}


@pytest.mark.parametrize(("pruner", "message"), BAD.values(), ids=BAD.keys())
def test_a_bad_pruner_is_named_in_one_line(tmp_path, pruner, message):
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        sweep_with(tmp_path, pruner)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"{tmp_path / 'quick.yaml'}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "error: --workers must be at least 1, got 0 (see --help)"),
        (["--trials", "abc"], "error: argument --trials: invalid int value: 'abc' (see --help)"),
    ],
)
def test_a_bad_command_line_is_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as refused:
        sweep_main([str(tmp_path / "sweep.yaml"), *args])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines() == [message]
