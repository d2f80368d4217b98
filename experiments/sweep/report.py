"""A sweep's results: the table of trials, the best one as ``best.yaml``, and two plots.

``best.yaml`` is the best trial's own ``config.yaml`` less what tied it to its run (its name,
its logger, the checkpoint it resumed from, the sweep's quiet terminal), so that
``python -m experiments fit --config lightning_logs/<sweep>/best.yaml`` trains it again as a
new run, to the same score on the same machine.
"""

import fcntl
import os
import shlex
import socket
import statistics
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from experiments.atomic import write_atomically
from experiments.runpath import RunPath
from experiments.sweep.database import HOLDER
from experiments.sweep.spec import Sweep
from experiments.sweep.worker import best_value, sweep_lock
from experiments.tables import table

BEST = "best.yaml"
HISTORY = "history.png"
PARAMETERS = "parameters.png"
STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.FAIL: "failed",
    TrialState.WAITING: "waiting",
}


def left_here(run: RunPath) -> bool:
    """Whether a trial the study calls running was last trained on this machine and is held by
    no process now: its worker stopped (Ctrl-C) or died, and it goes on when the sweep is run
    again. A trial last trained on another machine counts as running: its lock is not here."""
    try:
        handle = os.open(run.lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        holder = os.read(handle, 200).decode(errors="replace").split()
        if not holder or holder[0] != socket.gethostname():
            return False
        try:  # only tried: the lock is dropped with the handle, and nothing is written in it
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    finally:
        os.close(handle)


def let_go(trial: FrozenTrial) -> bool:
    """Whether a worker stopped ``trial`` and said so in the study (on any machine): it set
    the trial's holder when it took it, and cleared it when it stopped."""
    return HOLDER in trial.user_attrs and trial.user_attrs[HOLDER] is None


def states(study: optuna.Study, sweep_dir: Path) -> dict[int, str]:
    """Each trial's state as the table names it: ``stopped`` for a running one that its worker
    let go, or that was left here (its worker died)."""
    trials = study.get_trials(deepcopy=False)
    named = {t.number: STATES.get(t.state, t.state.name.lower()) for t in trials}
    for trial in trials:
        if trial.state == TrialState.RUNNING and let_go(trial):
            named[trial.number] = "stopped"
    running = [t.number for t in trials if t.state == TrialState.RUNNING and not let_go(t)]
    if running:
        # Workers take trials under the sweep's lock: a trial just begun holds its run's lock
        # before this looks, and a look never keeps a worker from taking a trial.
        with sweep_lock(sweep_dir):
            for number in running:
                if left_here(RunPath.of(sweep_dir, number)):
                    named[number] = "stopped"
    return named


# How the plots mark a trial by its state; trials without a score are not drawn.
MARKS = (
    (TrialState.COMPLETE, "o", "complete"),
    (TrialState.PRUNED, "x", "pruned"),
    (TrialState.RUNNING, "^", "unfinished"),
)
MEAN = "mean of complete trials"


def short(key: str) -> str:
    """A space key as a column name: its last part (``lr`` for ``...optimizer.init_args.lr``)."""
    return key.split(".")[-1]


def scored(study: optuna.Study, sweep: Sweep) -> list[tuple[FrozenTrial, float | None]]:
    """Every trial with its score, best first (trials without one last, in number order)."""
    trials = [(t, best_value(t, sweep.direction)) for t in study.get_trials(deepcopy=False)]
    sign = -1 if sweep.direction == "maximize" else 1

    def order(item: tuple[FrozenTrial, float | None]) -> tuple:
        trial, score = item
        return (score is None, sign * score if score is not None else 0.0, trial.number)

    return sorted(trials, key=order)


def best_trials(study: optuna.Study, sweep: Sweep) -> list[tuple[FrozenTrial, float]]:
    """The complete trials with the best score, in number order: the first is the best, as the
    earliest trial wins a tie (a validation accuracy often ties, a count of right answers)."""
    complete = [
        (t, s) for t, s in scored(study, sweep) if t.state == TrialState.COMPLETE and s is not None
    ]
    return [(t, s) for t, s in complete if s == complete[0][1]]


def best_trial(study: optuna.Study, sweep: Sweep) -> tuple[FrozenTrial, float] | None:
    """The complete trial with the best score; the earliest of those that tie."""
    best = best_trials(study, sweep)
    return best[0] if best else None


def tie_text(study: optuna.Study, sweep: Sweep) -> str | None:
    """What the report says of trials that tie with the best, if any."""
    best = best_trials(study, sweep)
    if len(best) < 2:
        return None
    (first, score), others = best[0], [str(t.number) for t, _ in best[1:]]
    which = f"trials {', '.join(others)} tie" if len(others) > 1 else f"trial {others[0]} ties"
    return f"{which} with trial {first.number} at {score:.4f}; the earliest trial wins a tie"


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary(study: optuna.Study, sweep: Sweep, sweep_dir: Path, target: int) -> str:
    """The trials sorted by score, the spread per choice, and the best trial."""
    trials = scored(study, sweep)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t, _ in trials)
    lines = [
        f"sweep {sweep.name}: {done} of {target} trials finished or pruned; "
        f"score: best {sweep.metric} over the epochs ({sweep.direction})",
        "",
    ]
    header = ["trial", "state", sweep.metric, *(short(k) for k in sweep.space), "epochs", "run"]
    rows = [header]
    named = states(study, sweep_dir)
    for trial, score in trials:
        params = [
            value_text(sweep.space[k].decode(trial.params[k])) if k in trial.params else "-"
            for k in sweep.space
        ]
        rows.append(
            [
                str(trial.number),
                named[trial.number],
                "-" if score is None else f"{score:.4f}",
                *params,
                str(len(trial.intermediate_values)),
                str(RunPath.of(sweep_dir, trial.number)),
            ]
        )
    lines.append(table(rows))
    for key, dim in sweep.space.items():
        if dim.choices is None or len(dim.choices) < 2:
            continue
        spread = [["", "trials", "mean", "std", "min", "max"]]
        for choice in dim.choices:
            scores = [
                s
                for t, s in trials
                if s is not None
                and t.state == TrialState.COMPLETE
                and key in t.params
                and sweep.space[key].decode(t.params[key]) == choice
            ]
            if scores:
                spread.append(
                    [
                        f"{short(key)}={value_text(choice)}",
                        str(len(scores)),
                        f"{statistics.fmean(scores):.4f}",
                        f"{statistics.stdev(scores):.4f}" if len(scores) > 1 else "-",
                        f"{min(scores):.4f}",
                        f"{max(scores):.4f}",
                    ]
                )
        if len(spread) > 2:
            lines += ["", f"{sweep.metric} of the complete trials by {short(key)}:", table(spread)]
    best = best_trial(study, sweep)
    if best is not None:
        trial, score = best
        settings = ", ".join(
            f"{key}={value_text(sweep.space[key].decode(value))}"
            for key, value in trial.params.items()
        )
        lines += [
            "",
            f"Best:        trial {trial.number}, {sweep.metric} {score:.4f}: {settings}",
            *([f"Ties:        {tie}"] if (tie := tie_text(study, sweep)) else []),
            f"Again:       {again(trial, sweep, sweep_dir)}",
            f"Plots:       {sweep_dir / HISTORY}, {sweep_dir / PARAMETERS}",
            f"TensorBoard: tensorboard --logdir {sweep_dir}",
        ]
    return "\n".join(lines)


def again(trial: FrozenTrial, sweep: Sweep, sweep_dir: Path) -> str:
    """The command that trains ``trial`` again: from ``best.yaml`` where its run is here, else
    (it ran on another machine, where its run and ``best.yaml`` are) from its settings."""
    if RunPath.of(sweep_dir, trial.number).config.is_file():
        return f"python -m experiments fit --config {sweep_dir / BEST}"
    params = {key: sweep.space[key].decode(value) for key, value in trial.params.items()}
    return shlex.join(["python", "-m", "experiments", "fit", *sweep.trial_args(params)])


def best_config(study: optuna.Study, sweep: Sweep, sweep_dir: Path) -> dict[str, Any] | None:
    """The best trial's ``config.yaml``, less what tied it to its run."""
    best = best_trial(study, sweep)
    if best is None:
        return None
    path = RunPath.of(sweep_dir, best[0].number).config
    if not path.is_file():
        return None
    config = yaml.safe_load(path.read_text())
    for key in ("experiment", "ckpt_path"):
        config.pop(key, None)
    for key in ("logger", "enable_progress_bar", "enable_model_summary"):
        config.get("trainer", {}).pop(key, None)
    return config


def write(study: optuna.Study, sweep: Sweep, sweep_dir: Path) -> None:
    """``best.yaml`` and the plots, in the sweep's directory."""
    config = best_config(study, sweep, sweep_dir)
    if config is not None:
        best, score = best_trial(study, sweep)
        header = (
            f"# Sweep {sweep.name}: trial {best.number}, the best {sweep.metric} ({score:.6g}).\n"
            f"# python -m experiments fit --config {sweep_dir / BEST} trains it again.\n"
        )
        tie = tie_text(study, sweep)
        if tie is not None:
            header += f"# {tie[0].upper()}{tie[1:]}.\n"
        write_atomically(sweep_dir / BEST, header + yaml.safe_dump(config, sort_keys=False))
    trials = scored(study, sweep)
    if any(score is not None for _, score in trials):
        plot_history(trials, sweep, sweep_dir / HISTORY)
        save(parameters_figure(trials, sweep), sweep_dir / PARAMETERS)


def save(figure: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=90)


def plot_history(trials: list[tuple[FrozenTrial, float | None]], sweep: Sweep, path: Path) -> None:
    """Each trial's score by its number, and the best so far."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.0, 4.0))
    axes = figure.add_subplot()
    ordered = sorted((t.number, s, t.state) for t, s in trials if s is not None)
    for state, marker, label in MARKS:
        points = [(n, s) for n, s, st in ordered if st == state]
        if points:
            axes.scatter(*zip(*points, strict=True), marker=marker, label=label, alpha=0.8)
    best, running = None, []
    for number, score, state in ordered:
        if state == TrialState.COMPLETE:
            better = best is None or (
                score > best if sweep.direction == "maximize" else score < best
            )
            best = score if better else best
        if best is not None:
            running.append((number, best))
    if running:
        axes.step(*zip(*running, strict=True), where="post", color="black", label="best so far")
    axes.set(xlabel="trial", ylabel=sweep.metric, title=f"{sweep.name}: score of each trial")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axes.get_legend_handles_labels()[0]:  # matplotlib warns of a legend with nothing in it
        axes.legend()
    figure.tight_layout()
    save(figure, path)


def parameters_figure(trials: list[tuple[FrozenTrial, float | None]], sweep: Sweep) -> Any:
    """The score against each parameter, complete, pruned and unfinished trials marked apart:
    a pruned trial's score is that of its few epochs. Over choices, a line marks the mean of
    the complete trials, as the table gives it."""
    from matplotlib.figure import Figure

    keys = list(sweep.space)
    figure = Figure(figsize=(4.0 * len(keys), 3.6))
    for index, key in enumerate(keys, start=1):
        axes = figure.add_subplot(1, len(keys), index)
        dim = sweep.space[key]
        points = [
            (dim.decode(t.params[key]), s, t.state)
            for t, s in trials
            if s is not None and key in t.params
        ]
        for state, marker, label in MARKS:
            # Over choices, a trial sits at its choice's position; over a range, at its value.
            shown = [
                (v if dim.choices is None else dim.choices.index(v), s)
                for v, s, st in points
                if st == state
            ]
            if shown:
                axes.scatter(*zip(*shown, strict=True), marker=marker, label=label, alpha=0.7)
        if dim.choices is not None:
            means = [
                (position, statistics.fmean(scores))
                for position, choice in enumerate(dim.choices)
                if (
                    scores := [
                        s for v, s, st in points if st == TrialState.COMPLETE and v == choice
                    ]
                )
            ]
            if means:
                positions, values = zip(*means, strict=True)
                starts, ends = [p - 0.3 for p in positions], [p + 0.3 for p in positions]
                axes.hlines(values, starts, ends, color="black", label=MEAN)
            axes.set_xticks(range(len(dim.choices)), [value_text(c) for c in dim.choices])
        elif dim.log:
            axes.set_xscale("log")
        axes.set(xlabel=short(key), ylabel=sweep.metric if index == 1 else "")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.suptitle(f"{sweep.name}: {sweep.metric} by parameter")
    figure.tight_layout()
    return figure
