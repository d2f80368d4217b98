"""A sweep checked against the experiment it sweeps, before any trial runs or anything is written.

The base experiment is built once through the CLI, as a trial would be, without training; then
every key of the space is parsed with each of its choices (or both ends of its range) by the
CLI's own parser, so an unknown key or a value its type refuses is named as the CLI names it;
and the metric must be one the experiment's task logs once per epoch.
"""

import difflib
from argparse import ArgumentError

from experiments.cli import ExperimentCLI
from experiments.errors import UserError
from experiments.parser import explain
from experiments.sweep.spec import Sweep, cli_value
from experiments.sweep.worker import quiet_trial as quiet


def epoch_metrics(task: object) -> list[str]:
    """The scalars ``task`` logs once per epoch that a sweep can be scored by.

    Validation's, and training's per-epoch values; test metrics are measured once, after
    training, on data that must not choose the hyperparameters.
    """
    names = ["loss", *getattr(task, "build_metrics", dict)()]
    train = ["train/loss_epoch" if name == "loss" else f"train/{name}" for name in names]
    return [*(f"val/{name}" for name in names), *train]


def check(sweep: Sweep) -> ExperimentCLI:
    """Refuse a sweep that cannot run, in one line; return the base experiment, as built."""
    base = sweep.trial_args({})
    try:
        with quiet():
            cli = ExperimentCLI(args=base, run=False, parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        raise UserError(f"{sweep.path}: the base experiment: {explain(base, str(error))}") from None
    except UserError as error:
        raise UserError(f"{sweep.path}: the base experiment: {error}") from None
    options = [o for action in cli.parser._actions for o in action.option_strings]
    samples = {key: dimension.samples() for key, dimension in sweep.space.items()}
    # The keys' i-th samples are parsed together (a parse costs a tenth of a second or more);
    # a round that is refused is parsed again key by key, to name the key and value refused.
    for round_ in range(max(len(values) for values in samples.values())):
        chosen = {key: values[min(round_, len(values) - 1)] for key, values in samples.items()}
        together = [a for key, v in chosen.items() for a in (f"--{key}", cli_value(v))]
        try:
            with quiet():
                cli.parser.parse_args([*base, *together])
            continue
        except ArgumentError:
            pass
        for key, value in chosen.items():
            argv = [*base, f"--{key}", cli_value(value)]
            try:
                with quiet():
                    cli.parser.parse_args(argv)
            except ArgumentError as error:
                raise UserError(
                    f"{sweep.path}: space: {key}: {value!r}: {explain(argv, str(error), options)}"
                ) from None
    metrics = epoch_metrics(cli.model)
    if sweep.metric not in metrics:
        close = difflib.get_close_matches(sweep.metric, metrics, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        why = (
            " (test metrics come once, after training)" if sweep.metric.startswith("test/") else ""
        )
        raise UserError(
            f"{sweep.path}: metric {sweep.metric} is not one that {type(cli.model).__name__} "
            f"logs every epoch{why}{hint}; it logs {', '.join(metrics)}"
        )
    return cli
