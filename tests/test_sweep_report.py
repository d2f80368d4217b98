"""A sweep's report, from studies made here: its table, its best trial and its plots."""

import shlex
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState, create_trial

from experiments.rundir import RunLock
from experiments.runpath import RunPath
from experiments.sweep import report, spec, study
from experiments.sweep.database import HOLDER
from tests.conftest import config

LR = "model.init_args.optimizer.init_args.lr"
HIDDEN = "model.init_args.network.init_args.hidden_sizes"
Trial = tuple[TrialState, float, str, list[float]]  # state, lr, hidden sizes, values by epoch


def made(tmp_path: Path, trials: list[Trial]) -> tuple[optuna.Study, spec.Sweep, Path]:
    """A sweep over ``LR`` and ``HIDDEN`` whose study holds ``trials``, in their order."""
    tmp_path.mkdir(exist_ok=True)
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


def test_a_running_trial_that_no_worker_holds_is_listed_as_stopped(tmp_path):
    the_study, sweep, sweep_dir = made(
        tmp_path,
        [(TrialState.RUNNING, 0.05, "[5]", [0.4])] * 3 + [(TrialState.RUNNING, 0.1, "[5]", [])],
    )
    runs = [RunPath.of(sweep_dir, number) for number in range(4)]
    for run in runs[:3]:
        run.directory.mkdir(parents=True)
        RunLock(run.directory).release()  # trained here, then stopped: its lock names this host
    held = RunLock(runs[1].directory)  # a worker trains it now
    runs[2].lock.write_text("another-machine 123\n")  # taken over elsewhere; its lock is there
    try:
        text = report.summary(the_study, sweep, sweep_dir, 6)
    finally:
        held.release()
    listed = {line.split()[0]: line.split()[1] for line in text.splitlines() if line[:1].isdigit()}
    # Trial 3 has no run directory here yet: a worker on another machine has just begun it.
    assert listed == {"0": "stopped", "1": "running", "2": "running", "3": "running"}


def test_a_running_trial_its_worker_let_go_is_listed_as_stopped_on_every_machine(tmp_path):
    # Stopped by Ctrl-C on another machine (its worker cleared the holder in the study): no run
    # directory here, yet the table says stopped; a trial still held stays running.
    the_study, sweep, sweep_dir = made(tmp_path, [(TrialState.RUNNING, 0.05, "[5]", [0.4])] * 2)
    let_go, held = the_study.get_trials(deepcopy=False)
    the_study._storage.set_trial_user_attr(let_go._trial_id, HOLDER, None)
    the_study._storage.set_trial_user_attr(held._trial_id, HOLDER, "another-machine 123")
    text = report.summary(the_study, sweep, sweep_dir, 6)
    listed = {line.split()[0]: line.split()[1] for line in text.splitlines() if line[:1].isdigit()}
    assert listed == {"0": "stopped", "1": "running"}


def test_the_best_trial_of_another_machine_is_trained_again_from_its_settings(tmp_path):
    # No run directory here (no shared disk): no best.yaml to name, but its settings are known.
    the_study, sweep, sweep_dir = made(tmp_path, [(TrialState.COMPLETE, 0.1, "[20]", [0.9])])
    report.write(the_study, sweep, sweep_dir)
    assert not (sweep_dir / report.BEST).exists()
    (line,) = [line for line in report.summary(the_study, sweep, sweep_dir, 6).splitlines()
               if line.startswith("Again:")]  # fmt: skip
    command = shlex.split(line.removeprefix("Again:"))
    assert command[:6] == ["python", "-m", "experiments", "fit", "--config", str(sweep.config)]
    assert command[-4:] == [f"--{LR}", "0.1", f"--{HIDDEN}", "[20]"]


def test_parameters_png_marks_pruned_trials_apart_and_averages_the_complete_ones(tmp_path):
    trials = [
        (TrialState.COMPLETE, 0.05, "[5]", [0.5, 0.9]),
        (TrialState.COMPLETE, 0.05, "[5]", [0.6, 0.7]),
        (TrialState.PRUNED, 0.05, "[5]", [0.1]),  # one epoch's score
        (TrialState.COMPLETE, 0.1, "[20]", [0.6]),
    ]
    the_study, sweep, sweep_dir = made(tmp_path, trials)
    figure = report.parameters_figure(report.scored(the_study, sweep), sweep)
    (lr_axes,) = [axes for axes in figure.axes if axes.get_xlabel() == "lr"]
    drawn = dict(zip(*reversed(lr_axes.get_legend_handles_labels()), strict=True))
    means = drawn.pop(report.MEAN).get_segments()
    marked = {
        label: sorted(float(y) for _, y in dots.get_offsets()) for label, dots in drawn.items()
    }
    assert marked == {"complete": [0.6, 0.7, 0.9], "pruned": [0.1]}
    # lr 0.05 without its pruned trial, and lr 0.1
    assert [round(float(line[0][1]), 6) for line in means] == [0.8, 0.6]
    assert "lr=0.05  2       0.8000" in report.summary(the_study, sweep, sweep_dir, 6)


def test_trials_that_tie_with_the_best_are_named_and_the_earliest_wins(tmp_path):
    trials = [
        (TrialState.COMPLETE, 0.05, "[5]", [0.5, 0.7]),
        (TrialState.COMPLETE, 0.1, "[5]", [0.99]),
        (TrialState.COMPLETE, 0.05, "[20]", [0.9, 0.99]),
        (TrialState.PRUNED, 0.1, "[20]", [0.99]),  # pruned: not a candidate
        (TrialState.COMPLETE, 0.1, "[20]", [0.99, 0.98]),
    ]
    the_study, sweep, sweep_dir = made(tmp_path, trials)
    text = report.summary(the_study, sweep, sweep_dir, 6)
    assert "Best:        trial 1, val/r2 0.9900" in text
    tie = "trials 2, 4 tie with trial 1 at 0.9900; the earliest trial wins a tie"
    assert f"Ties:        {tie}" in text
    assert report.tie_text(made(tmp_path / "other", trials[:3])[0], sweep) == (
        "trial 2 ties with trial 1 at 0.9900; the earliest trial wins a tie"
    )
