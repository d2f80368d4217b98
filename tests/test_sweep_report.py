"""A sweep's report, from studies made here: its table, its best trial and its plots."""

import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState, create_trial

from experiments.sweep import report, spec, study
from tests.conftest import config

LR = "model.init_args.optimizer.init_args.lr"
HIDDEN = "model.init_args.network.init_args.hidden_sizes"
Trial = tuple[TrialState, float, str, list[float]]  # state, lr, hidden sizes, values by epoch


def made(tmp_path: Path, trials: list[Trial]) -> tuple[optuna.Study, spec.Sweep, Path]:
    """A sweep over ``LR`` and ``HIDDEN`` whose study holds ``trials``, in their order."""
    path = tmp_path / "quick.yaml"
    content = {
        "config": config("two_layer_relu"),
        "metric": "val/r2",
        "direction": "maximize",
        "trials": 6,
        "sampler": "tpe",
        "pruner": "none",
        "space": {LR: [0.05, 0.1], HIDDEN: [[5], [20]]},
    }
    path.write_text(yaml.safe_dump(content))
    sweep = spec.load(path)
    sweep_dir = tmp_path / "lightning_logs" / "quick"
    the_study = study.open_study(sweep, study.storage(None, sweep_dir), None, create=True)
    distributions = {key: dim.distribution() for key, dim in sweep.space.items()}
    for state, lr, hidden, values in trials:
        the_study.add_trial(
            create_trial(
                state=state,
                params={LR: lr, HIDDEN: hidden},
                distributions=distributions,
                intermediate_values=dict(enumerate(values)),
                value=max(values) if state == TrialState.COMPLETE else None,
            )
        )
    return the_study, sweep, sweep_dir


def test_the_plots_of_a_sweep_stopped_before_any_trial_ended_warn_of_nothing(tmp_path):
    # Stopped by Ctrl-C in its first trial: one trial with scores, neither complete nor pruned.
    the_study, sweep, sweep_dir = made(tmp_path, [(TrialState.RUNNING, 0.05, "[5]", [0.4])])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report.write(the_study, sweep, sweep_dir)
    assert (sweep_dir / report.HISTORY).is_file()
