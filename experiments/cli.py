"""``python -m experiments {fit,validate,test,predict}``: LightningCLI with the project's policy.

:class:`ExperimentCLI` is the one place that decides the project's policies; the mechanics live
in the modules it names:

* runs: ``lightning_logs/<experiment>/version_<n>/`` under ``--trainer.default_root_dir``, the
  experiment named by ``--experiment`` or the first ``--config`` file; a new run claims its
  directory, and one process at a time trains a run (:mod:`experiments.rundir`);
* checkpoints: ``last.ckpt`` and the best by ``val/loss``, written crash-safe; ``--ckpt_path
  last|best|FILE`` continues or evaluates the run it belongs to, and the config stays the
  truth (:mod:`experiments.resume`, :mod:`experiments.checkpoint`);
* the Trainer: the user's arguments plus the project's callbacks and checkpoint writer
  (:mod:`experiments.assembly`), and the fast path unless ``--fast_path false``
  (:mod:`experiments.fastpath`);
* reports: one line for a mistake (:mod:`experiments.errors`, :mod:`experiments.parser`,
  :mod:`experiments.sanity`), a summary and TensorBoard's hyperparameters tab after a run
  (:mod:`experiments.report`);
* seeding is on by default and the seed is recorded in the saved config.
"""

import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import Namespace
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from datamodules import DataFileError, SplitDataModule
from experiments import assembly, fastpath, report, resume, rundir, threads
from experiments.checkpoint import RunCheckpoint, SafeCheckpointIO
from experiments.errors import UserError
from experiments.figures import FigureLogger
from experiments.interrupt import StopOnSignal
from experiments.parser import PROGRAM, ExperimentParser, condense, network_refusal
from experiments.predictions import PredictionWriter
from experiments.runs import STOPPED_AT, STOPPED_BY
from experiments.sanity import check_linked_overrides, check_run, check_writable
from experiments.settings import flat_hparams
from models import Task

EXPERIMENTS_DIR = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = "mlp_classification"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Shape facts the CLI copies from the datamodule into the network and the task.
LINKED = {
    "data.input_shape": "model.init_args.network.init_args.input_shape",
    "data.num_outputs": "model.init_args.network.init_args.num_outputs",
    "data.num_classes": "model.init_args.num_classes",
}
# The checkpoint policy: the best by val/loss and the newest, after every epoch.
CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val/loss",
    "checkpoint.mode": "min",
    "checkpoint.save_top_k": 1,
    "checkpoint.save_last": True,
    # After every epoch, validated or not, so last.ckpt is always the newest state.
    "checkpoint.save_on_train_epoch_end": True,
    "checkpoint.filename": "best-{epoch}-{step}",
}

# The data are tensors already in memory: worker processes would only add start-up and copying,
# so Lightning's advice to raise num_workers does not apply here.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
# Resuming continues in the run's own checkpoints folder, so its files are expected there.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# Lightning 2.6.6 calls a torch.utils._pytree API that torch 2.13 deprecates; not for users to fix.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class _DropAdverts(logging.Filter):
    """Drops Lightning's "Tip" advertising a cloud service at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())


class NothingToTrainError(Exception):
    """``fit`` resumed a run that has already reached ``max_epochs`` or ``max_steps``."""


class ExperimentCLI(LightningCLI):
    """LightningCLI over every task in ``models`` and every datamodule in ``datamodules``."""

    def __init__(
        self,
        args: Sequence[str] | None = None,
        *,
        run_version: int | None = None,
        run_lock: rundir.RunLock | None = None,
        extra_callbacks: Sequence[Callback] = (),
        **kwargs: object,
    ) -> None:
        """``args`` as for LightningCLI; the rest is for a caller running the CLI in-process
        (a sweep's worker): ``run_version`` names the new run's version instead of the next
        free one, ``run_lock`` is that run's lock, already held, and ``extra_callbacks`` join
        the Trainer's."""
        kwargs.setdefault("seed_everything_default", 0)
        self.stop_on_signal = StopOnSignal()
        self.checkpoint_io = SafeCheckpointIO()
        self.checkpoint: dict | None = None  # the --ckpt_path checkpoint, read once and checked
        self.checkpoint_file: Path | None = None
        self.run_version = run_version
        self.run_lock = run_lock  # held while this process trains its run
        self.own_lock: rundir.RunLock | None = None  # the lock this CLI took, to release
        self.extra_callbacks = list(extra_callbacks)
        self.remove_fast_path: Callable[[], None] | None = None
        self.restore_threads: Callable[[], None] | None = None
        try:
            super().__init__(
                Task,
                SplitDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                # Tasks build their own optimiser from an OptimizerCallable given in the YAML.
                auto_configure_optimizers=False,
                save_config_callback=rundir.KeepExistingConfig,
                parser_class=ExperimentParser,
                args=args,
                **kwargs,
            )
        except NothingToTrainError as done:  # raised before anything is built or written
            if rank_zero_only.rank == 0:
                self.say_nothing_to_train(*done.args)
        except SystemExit:
            # Lightning ends a training stopped at once by a second Ctrl-C with exit(1).
            if self.stop_on_signal.forced is None:
                raise
            trainer = getattr(self, "trainer", None)
            report.forced_stop(trainer, self.stop_on_signal.forced, self.config.fit)
        finally:
            if self.remove_fast_path is not None:
                self.remove_fast_path()
            if self.restore_threads is not None:
                self.restore_threads()
            if self.own_lock is not None:
                self.own_lock.release()

    # Options -------------------------------------------------------------------------------

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        for action in parser._actions:  # argparse keeps no other handle on an added option
            if action.dest == "config":
                action.help = (
                    "An experiment's YAML (experiments/<name>.yaml), or a run's own "
                    "config.yaml to go on with that run; further files apply on top."
                )
        return parser

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The project's own options, right after --config and --seed_everything: before the
        # Trainer's sixty, where --help shows them first.
        super().add_default_arguments_to_parser(parser)
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Run name: runs go to lightning_logs/EXPERIMENT/version_<n>/. "
            "Default: the name of the first --config file.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, evaluate the best checkpoint on the test split in the same run.",
        )
        parser.add_argument(
            "--fast_path",
            type=bool,
            default=True,
            help="Make Lightning's per-step bookkeeping cheap (experiments/fastpath); false runs "
            "plain Lightning, with the same results bit for bit, more slowly.",
        )
        parser.add_argument(
            "--threads",
            type=PositiveInt | Literal["auto"],
            default=threads.AUTO,
            metavar="N|auto",
            help="Threads for PyTorch on the CPU. auto: one for a small network, the CPUs "
            "shared among the run's processes for a large one (experiments/threads.py).",
        )
        # Callback groups of the command line; assembly.callbacks decides which join a Trainer.
        for name, group in (
            ("checkpoint", RunCheckpoint),
            ("figures", FigureLogger),
            ("predictions", PredictionWriter),
        ):
            parser.add_class_arguments(group, name, fail_untyped=False, sub_configs=True)
        parser.set_defaults(CHECKPOINT_DEFAULTS)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Shape facts come from the datamodule once it exists. jsonargparse skips a link whose
        # source the datamodule lacks (num_classes of regression data). Shapes travel as lists:
        # the checkpoint's hparams.yaml must load with yaml.safe_load, which rejects tuples.
        for source, target in LINKED.items():
            compute = list if source == "data.input_shape" else None
            parser.link_arguments(source, target, compute_fn=compute, apply_on="instantiate")

    # Runs and checkpoints ----------------------------------------------------------------------

    def before_instantiate_classes(self) -> None:
        config = self.subcommand_config(self.config)
        if config.experiment is None:
            config.experiment = rundir.experiment_name(config.get("config"), DEFAULT_EXPERIMENT)
        trainer = config.trainer
        if trainer.max_epochs is not None and trainer.max_epochs != -1 and trainer.max_epochs <= 0:
            raise UserError(
                f"trainer.max_epochs must be a positive integer, got {trainer.max_epochs}"
            )
        if config.get("weights_only") is False:
            raise UserError(
                "--weights_only false: checkpoints are only read with weights_only=True here "
                "(tensors and plain values), so a file holding pickled code is never run"
            )
        check_network_contract(config)
        check_linked_overrides(config, LINKED)
        root = Path(trainer.default_root_dir or ".") / rundir.LOG_DIR_NAME
        check_writable(root)
        logger_args = {"save_dir": str(root), "name": config.experiment, "default_hp_metric": False}
        if self.run_version is not None:
            logger_args["version"] = self.run_version
        if config.get("ckpt_path") is not None:
            logger_args |= self.resolve_checkpoint(config, root)
        ours = (
            isinstance(trainer.logger, Namespace) and trainer.logger.class_path == rundir.RUN_LOGGER
        )
        if trainer.logger is None or trainer.logger is True or ours:
            trainer.logger = Namespace(
                class_path=rundir.RUN_LOGGER, init_args=Namespace(**logger_args)
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse the command line; when it names a run, read that run's own config beneath it.

        ``--ckpt_path last``, ``best`` or a file inside a run, and ``--config
        <run>/config.yaml``, name a run: the command then builds the run's model and data as
        the run was trained, from its ``config.yaml``, and the command line's other arguments
        go on top (a ``batch_size``, a ``predict_path``). ``fit`` continues the run with all of
        its config, Trainer included; ``validate``, ``test`` and ``predict`` take its model and
        data, and their Trainer from the config and command line given (all of the run's with
        ``--config <run>/config.yaml``). The user never repeats a run's overrides, and an
        evaluation writes into the run. A checkpoint from outside any run is checked against
        the config given instead.
        """
        super().parse_arguments(parser, args)
        if not isinstance(args, list | tuple | None):
            return
        argv = list(sys.argv[1:] if args is None else args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        configs = [Path(str(path)) for path in config.get("config") or []]
        named = next((run for run in map(rundir.run_of_config, configs) if run), None)
        ckpt_path = config.get("ckpt_path")
        root = Path(config.trainer.default_root_dir or ".") / rundir.LOG_DIR_NAME
        if ckpt_path is None and named is not None:
            # The run named by its config: continue it, or evaluate its best checkpoint, in it.
            found = resume.checkpoint_of(named, "last" if subcommand == "fit" else "best")
            where = ["--trainer.default_root_dir", str(named.parent.parent.parent)]
            where += ["--experiment", named.parent.name]
            if found is not None:
                where += ["--ckpt_path", str(found)]
            elif subcommand == "fit":
                self.run_version = resume.version_of(named)
            else:
                raise UserError(f"{named}: the run has no checkpoint to {subcommand}")
            self.reparse(parser, [*argv, *where])
            return
        if ckpt_path is None:
            return
        experiment = config.experiment or rundir.experiment_name(configs, DEFAULT_EXPERIMENT)
        run = resume.resolve(str(ckpt_path), subcommand, root, experiment).run
        if run is not None and (run / rundir.CONFIG_FILE).is_file() and named != run:
            mine = self.config
            self.reparse(parser, with_config(argv, subcommand, run / rundir.CONFIG_FILE))
            if subcommand != "fit":
                # An evaluation takes the run's model and data, and runs as this command says:
                # its Trainer (devices, strategy, precision) is not the run's, which may have
                # trained on eight GPUs.
                theirs, self.config = self.config, mine
                for key in ("model", "data"):
                    self.config[f"{subcommand}.{key}"] = theirs[f"{subcommand}.{key}"]

    def reparse(self, parser: LightningArgumentParser, args: list[str]) -> None:
        # Not through LightningCLI.parse_arguments: it warns when it gets a list beside
        # sys.argv, which is how a command line rewritten here always comes.
        self.config = parser.parse_args(args)

    def resolve_checkpoint(self, config: Namespace, root: Path) -> dict[str, int]:
        """Turn ``--ckpt_path`` into a checked file; return the logger arguments of its run."""
        found, self.checkpoint = resume.find_and_load(
            str(config.ckpt_path), self.subcommand, root, config.experiment
        )
        model = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False))
        resume.check_network(self.checkpoint, model[self.subcommand]["model"], found.path)
        self.checkpoint_file = found.path
        self.checkpoint_io.preload(found.path, self.checkpoint)
        config.ckpt_path = str(found.path)
        if found.run is None:
            return {}  # a file from elsewhere: a new run, from its weights and training state
        run = {"version": found.version}
        if self.subcommand == "fit":
            trainer = config.trainer
            reached = resume.limit_reached(self.checkpoint, trainer.max_epochs, trainer.max_steps)
            if reached is not None:
                raise NothingToTrainError(*reached)
            step = self.checkpoint.get("global_step", 0)
            rank_zero_info(resume.resuming_message(found, self.checkpoint))
            # Hide anything the interrupted run logged after this checkpoint (a crash mid-epoch),
            # so the curves continue from it without repeated steps.
            run["purge_step"] = int(step)
        return run

    def _parse_ckpt_path(self) -> None:
        # Behaviour, no public hook: LightningCLI would merge the checkpoint's hyperparameters
        # over the config, silently turning one experiment into another. The config stays the
        # truth; the checkpoint is checked against it instead (resume.check_network,
        # resume.check_weights). tests/test_cli.py notices if Lightning stops calling this.
        return

    def _dump_config(self) -> None:
        # Behaviour, no public hook: Lightning copies instantiation-linked values into the
        # checkpoint's hyperparameters by writing them into this dump under
        # model.init_args.network.init_args, and asserts that that dict exists; the dump has
        # none for a network whose arguments are all linked (LinearRegression). Create it so
        # such networks can be trained. tests/test_cli.py trains one.
        if hasattr(self, "config_dump"):
            return
        super()._dump_config()
        network = self.config_dump.get("model", {}).get("init_args", {}).get("network")
        if isinstance(network, dict):
            network.setdefault("init_args", {})

    # The Trainer ---------------------------------------------------------------------------

    def instantiate_classes(self) -> None:
        # A constructor's ValueError (or a task that misses an argument the data cannot link)
        # is a mistake in the config: report it in one line.
        try:
            super().instantiate_classes()
        except DataFileError as error:  # it names the file and what is wrong
            raise UserError(str(error)) from error
        except (ValueError, TypeError) as error:
            raise UserError(f"cannot build the experiment: {condense(str(error))}") from error
        except MisconfigurationException as error:
            raise UserError(f"trainer: {resume.first_line(error)}") from error

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        built = self.subcommand_config(self.config_init)
        trainer_config = dict(built.trainer or {})
        groups = {name: built[name] for name in assembly.GROUPS}
        callbacks = assembly.callbacks(self.subcommand, trainer_config, groups, self.stop_on_signal)
        kwargs.setdefault("callbacks", [*callbacks, *self.extra_callbacks])
        kwargs.setdefault("plugins", assembly.plugins(trainer_config, self.checkpoint_io))
        return super().instantiate_trainer(**kwargs)

    def subcommand_config(self, config: Namespace) -> Namespace:
        """The part of ``config`` for the subcommand being run."""
        return config[self.subcommand] if self.subcommand else config

    # Before and after each subcommand ------------------------------------------------------

    def check_before_running(self) -> None:
        """Checks that need the built model, before the trainer writes anything; then the fast
        path goes in, for as long as the subcommand runs."""
        check_run(self.model, self.datamodule, self.trainer.world_size)
        if self.checkpoint is not None and self.checkpoint_file is not None:
            resume.check_weights(self.checkpoint, self.model, self.checkpoint_file)
            resume.check_data(self.checkpoint, self.datamodule, self.checkpoint_file)
        config = self.subcommand_config(self.config)
        devices = self.trainer.num_devices  # under DDP, one process each
        self.restore_threads = threads.apply(config.threads, self.model, self.datamodule, devices)
        if config.fast_path:
            self.remove_fast_path = fastpath.install(self.trainer, self.model)

    before_validate = before_test = before_predict = check_before_running

    def before_fit(self) -> None:
        self.check_before_running()
        # The first process claims the run (a new one now, by asking for its directory) and
        # holds it while training; the other data-parallel processes write nothing of their own.
        logger = self.trainer.logger
        mine = self.run_lock is None and self.trainer.is_global_zero
        if mine and isinstance(logger, rundir.RunLogger):
            self.run_lock = self.own_lock = rundir.RunLock(Path(logger.log_dir))
        # Where the run goes, in full: a user who started elsewhere than the repository's root
        # sees at once where lightning_logs/ is.
        log_dir = getattr(logger, "log_dir", None)
        if self.trainer.is_global_zero and log_dir:
            print(f"Run directory: {Path(log_dir).resolve()}", flush=True)

    def say_nothing_to_train(self, done: str, limit: str, option: str, further: int) -> None:
        """A resumed run that had already reached its end: say so, and how to go further."""
        where = self.checkpoint_file
        run = self.checkpoint_file.parent.parent if where is not None else None
        name = f"the run {run}" if run is not None and rundir.VERSION.fullmatch(run.name) else where
        print(
            f"Nothing to train: {name} has trained {done}, and {limit}.\n"
            f"To train further: {report.continue_command(self.config.fit)} {option} {further}",
            flush=True,
        )

    def after_fit(self) -> None:
        trainer = self.trainer
        if self.stop_on_signal.received is not None:
            report.interrupted(trainer, self.stop_on_signal.received, self.config.fit)
        metrics = report.stage_metrics(trainer, "val")
        heading = f"At the last epoch ({trainer.current_epoch - 1}):"
        # Read before testing: loading the best checkpoint restores the callback's state too.
        paths = report.checkpoint_paths(trainer)
        stopped = report.stop_reason(trainer)
        run_dir = trainer.log_dir  # a broadcast from the first process: every process asks
        best = None
        if trainer.is_global_zero and run_dir and not trainer.fast_dev_run:
            best = report.best_validation(trainer, Path(run_dir))
        if best is not None:
            heading, metrics = best
        if self.config.fit.test_after_fit and not trainer.fast_dev_run and trainer.state.finished:
            best_file = paths.get("Best") or None
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best_file, verbose=False)
            metrics |= report.stage_metrics(trainer, "test")
        outcome = {}
        if stopped is not None:
            outcome = {STOPPED_BY: stopped[0], STOPPED_AT: trainer.current_epoch - 1}
        self.report(metrics, paths, heading, stopped[1] if stopped else None, outcome)

    def after_validate(self) -> None:
        checkpoint = {"Checkpoint": str(self.config.validate.ckpt_path or "")}
        self.report(report.stage_metrics(self.trainer, "val"), checkpoint)

    def after_test(self) -> None:
        checkpoint = {"Checkpoint": str(self.config.test.ckpt_path or "")}
        self.report(report.stage_metrics(self.trainer, "test"), checkpoint)

    @rank_zero_only
    def after_predict(self) -> None:
        writer = next(
            (cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)), None
        )
        if writer is not None and writer.path is not None:
            print(f"Predictions: {writer.path}", flush=True)

    def report(
        self,
        metrics: dict[str, float],
        paths: dict[str, str],
        heading: str | None = None,
        stopped: str | None = None,
        outcome: dict[str, report.HParam] | None = None,
    ) -> None:
        """Fill TensorBoard's hyperparameters tab and print the summary (first process only)."""
        if self.trainer.fast_dev_run:
            return
        run_dir = self.trainer.log_dir  # a broadcast from the first process: every process asks
        if not self.trainer.is_global_zero:
            return
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False))
        params = flat_hparams(resolved[self.subcommand]) | (outcome or {})
        report.write_hparams(self.trainer, params, sorted(metrics))
        print(report.summary(self.trainer, metrics, paths, run_dir, heading, stopped), flush=True)


def check_network_contract(config: Namespace) -> None:
    """Refuse a network that cannot take the data's shapes, even one that would build without
    them (defaults for ``in_features`` and ``num_classes`` would train the wrong sizes)."""
    network = config.get("model.init_args.network")
    class_path = network.get("class_path") if isinstance(network, Namespace) else None
    refusal = network_refusal(class_path) if isinstance(class_path, str) else None
    if refusal is not None:
        raise UserError(refusal)


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


DESCRIPTION = (
    "Train, evaluate and predict with the experiments of this project, each a YAML file in "
    "experiments/ (the default: mlp_classification). Runs go to "
    "lightning_logs/<experiment>/version_<n>/; --ckpt_path last or best continues or evaluates "
    "the newest run, from its own config. The project's options come first; --trainer.*, "
    "--model.* and --data.* set anything in the YAML, e.g. "
    "--model.init_args.optimizer.init_args.lr 0.01; --model.init_args.network.help models.MLP "
    "lists a network's options."
)
SUBCOMMAND_HELP = {
    "fit": "Train a new run, or continue one with --ckpt_path last; then test its best "
    "checkpoint (--test_after_fit).",
    "validate": "Evaluate a run's checkpoint on the validation split (--ckpt_path best|last|FILE).",
    "test": "Evaluate a run's checkpoint on the test split (--ckpt_path best|last|FILE).",
    "predict": "Write predictions.csv into a run: of the test split, or of the file "
    "--data.init_args.predict_path.",
}


def parser_kwargs(args: Sequence[str]) -> dict[str, Any]:
    """The parsers' settings: what --help says, and the default experiment's YAML when no
    --config is given (for --help, the given config files, so that it shows their values)."""
    given = [a for a in args if a in ("-c", "--config") or a.startswith("--config=")]
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-c", "--config")]
    configs += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    helping = any(a in ("-h", "--help") for a in args)
    defaults = [str(EXPERIMENTS_DIR / f"{DEFAULT_EXPERIMENT}.yaml")] if not given else []
    if helping and configs:
        defaults = [str(Path(c).resolve()) for c in configs]
    kwargs: dict[str, Any] = {"prog": PROGRAM, "description": DESCRIPTION}
    for sub in SUBCOMMANDS:
        kwargs[sub] = {
            "description": SUBCOMMAND_HELP[sub],
            "usage": f"{PROGRAM} {sub} [--config FILE] [options]",
        }
        if defaults:
            kwargs[sub]["default_config_files"] = defaults
    return kwargs


def main(args: Sequence[str] | None = None) -> ExperimentCLI:
    """Run the CLI on ``args`` (the command line when ``None``) and return it.

    A :class:`UserError` ends the program with its one-line message and exit status;
    ``EXPERIMENTS_TRACEBACK=1`` shows the traceback instead.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        return ExperimentCLI(args=args, parser_kwargs=parser_kwargs(argv))
    except UserError as error:
        if os.environ.get("EXPERIMENTS_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(error.exit_code) from None
