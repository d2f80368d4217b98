"""A command that names a run works in that run, from the run's own config.

``--ckpt_path last``, ``best`` or a file inside a run, and ``--config <run>/config.yaml``, name a
run: the command then builds the run's model and data as the run was trained, from its
``config.yaml``, and the command line's other arguments go on top (a ``batch_size``, a
``predict_path``). ``fit`` continues the run with all of its config, Trainer included;
``validate``, ``test`` and ``predict`` take its model and data, and their Trainer from the config
and command line given (all of the run's with ``--config <run>/config.yaml``). The user never
repeats a run's overrides, and an evaluation writes into the run. A checkpoint from outside any
run is checked against the config given instead.

:func:`choose` reads the parsed command line once and says what to parse instead, if anything.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jsonargparse import Namespace

from experiments import resume
from experiments.errors import UserError
from experiments.options import DEFAULT_EXPERIMENT
from experiments.runpath import RunPath, experiment_name, log_root


@dataclass(frozen=True)
class Choice:
    """The run a command works in, as its command line names it."""

    found: resume.Resolved | None = None  # the --ckpt_path checkpoint and its run
    version: int | None = None  # a named run that fit continues without a checkpoint
    argv: list[str] | None = None  # the command line to parse instead, reading the run's config
    own_trainer: bool = False  # an evaluation keeps the Trainer of the command given


def choose(config: Namespace, subcommand: str, argv: Sequence[str]) -> Choice:
    """What the parsed ``config`` of ``subcommand``, from the command line ``argv``, names."""
    configs = [Path(str(path)) for path in config.get("config") or []]
    named = next((run for run in map(RunPath.of_config, configs) if run), None)
    ckpt_path = config.get("ckpt_path")
    if subcommand == "lr_find":  # a new run of the experiment, from the config alone
        if named is not None:
            # The fit command it prints would continue that run, not train a new one.
            raise UserError(
                f"lr_find takes an experiment's YAML, not the config.yaml of the run {named}: "
                "copy it to a YAML file of its own to start new runs from it"
            )
        return Choice()
    if ckpt_path is None and named is not None:
        # The run named by its config: continue it, or evaluate its best checkpoint, in it.
        found = named.checkpoint("last" if subcommand == "fit" else "best")
        where = ["--trainer.default_root_dir", str(named.root), "--experiment", named.experiment]
        if found is not None:
            # Resolved as the command rewritten here reads it: in that run's root and experiment.
            root = log_root(str(named.root))
            resolved = resume.resolve(str(found), subcommand, root, named.experiment)
            return Choice(found=resolved, argv=[*argv, *where, "--ckpt_path", str(found)])
        if subcommand == "fit":
            stopped_in_population(named)
            return Choice(version=named.version, argv=[*argv, *where])
        raise UserError(f"{named}: the run has no checkpoint to {subcommand}")
    if ckpt_path is None:
        return Choice()
    root = log_root(config.trainer.default_root_dir)
    experiment = config.experiment or experiment_name(configs, DEFAULT_EXPERIMENT)
    found = resume.resolve(str(ckpt_path), subcommand, root, experiment)
    run = RunPath(found.run) if found.run is not None else None
    if run is not None and run.config.is_file() and named != run:
        argv = with_config(argv, subcommand, run.config)
        return Choice(found=found, argv=argv, own_trainer=subcommand != "fit")
    return Choice(found=found)


def stopped_in_population(run: RunPath) -> None:
    """Refuse to train again a sweep's trial that was stopped inside its population: its
    training state is in the population's checkpoint, not in the run (which has no
    ``last.ckpt`` of its own until it leaves the population)."""
    from experiments.population.training import saved_members, saved_population

    checkpoint = saved_population(run)
    if checkpoint is not None and run.version in saved_members(checkpoint):
        raise UserError(
            f"{run} was stopped while it trained in {checkpoint.parent.name}, whose checkpoint "
            f"{checkpoint} holds its training: run its sweep again to go on with it (fit "
            "continues it once it has finished there)"
        )


def with_run_model_and_data(given: Namespace, runs: Namespace, subcommand: str) -> Namespace:
    """``given`` with the model and data of the run's config ``runs``.

    An evaluation takes the run's model and data, and runs as this command says: its Trainer
    (devices, strategy, precision) is not the run's, which may have trained on eight GPUs.
    """
    for key in ("model", "data"):
        given[f"{subcommand}.{key}"] = runs[f"{subcommand}.{key}"]
    return given


def with_config(argv: Sequence[str], subcommand: str, config: Path) -> list[str]:
    """``argv`` with ``config`` in place of its first config file (the experiment's), right
    after the subcommand; any further config files still apply on top of it."""
    kept: list[str] = []
    replaced = skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-c", "--config") and not replaced:
            replaced = skip = True
        elif arg.startswith("--config=") and not replaced:
            replaced = True
        else:
            kept.append(arg)
    at = kept.index(subcommand) + 1 if subcommand in kept else 0
    return [*kept[:at], "--config", str(config), *kept[at:]]
