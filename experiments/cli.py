"""``python -m experiments {fit,validate,test,predict,export,lr_find}``: LightningCLI with the
project's policy.

:class:`ExperimentCLI` is the one place that decides the project's policies, each hook a line or
a few that name the module holding the policy's body:

* options: the project's own, their help, the checkpoint policy's defaults, and the data's
  shapes linked into the network (:mod:`experiments.options`);
* runs: ``lightning_logs/<experiment>/version_<n>/`` under ``--trainer.default_root_dir``
  (:mod:`experiments.runpath`), the experiment named by ``--experiment`` or the first
  ``--config`` file; a new run claims its directory, and one process at a time trains a run
  (:mod:`experiments.rundir`); a command that names a run works in it, from its config
  (:mod:`experiments.namedrun`);
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
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, LearningRateFinder
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from datamodules import SplitDataModule
from experiments import (
    assembly,
    export,
    fastpath,
    lrfind,
    namedrun,
    options,
    report,
    resume,
    rundir,
    threads,
)
from experiments.checkpoint import SafeCheckpointIO
from experiments.errors import UserError, exit_status
from experiments.fastpath.undo import Undo
from experiments.interrupt import SignalHandler, StopOnSignal
from experiments.options import DEFAULT_EXPERIMENT, LINKED
from experiments.parser import BUILD_ERRORS, ExperimentParser, build_error
from experiments.runpath import experiment_name, log_root
from experiments.sanity import check_config, check_run, check_writable
from experiments.settings import flat_hparams
from experiments.trainer import ExperimentTrainer
from models import Task

# The data are tensors already in memory: worker processes would only add start-up and copying,
# so Lightning's advice to raise num_workers does not apply here.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
# Resuming continues in the run's own checkpoints folder, so its files are expected there.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# An epoch of fewer batches than log_every_n_steps: the epoch's values are logged all the same,
# and step values every that many steps across epochs; where the user set no interval, one
# no longer than an epoch is set (rundir.StepPointEveryEpoch). Nothing for the user to fix.
warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
# Lightning 2.6.6 calls a torch.utils._pytree API that torch 2.13 deprecates; not for users to fix.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class _DropAdverts(logging.Filter):
    """Drops Lightning's "Tip" advertising a cloud service at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())


class ExperimentCLI(LightningCLI):
    """LightningCLI over every task in ``models`` and every datamodule in ``datamodules``."""

    def __init__(
        self,
        args: Sequence[str] | None = None,
        *,
        run_version: int | None = None,
        run_lock: rundir.RunLock | None = None,
        extra_callbacks: Sequence[Callback] = (),
        on_signal: SignalHandler | None = None,
        **kwargs: object,
    ) -> None:
        """``args`` as for LightningCLI; the rest is for a caller running the CLI in-process
        (a sweep's worker): ``run_version`` names the new run's version instead of the next
        free one, ``run_lock`` is that run's lock, already held, ``extra_callbacks`` join
        the Trainer's, and ``on_signal`` is told of a Ctrl-C or SIGTERM that stops training."""
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("trainer_class", ExperimentTrainer)  # with export and lr_find
        self.argv: list[str] = []  # the command line, for the commands that lr_find prints
        self.stop_on_signal = StopOnSignal(pass_on=on_signal)
        self.checkpoint_io = SafeCheckpointIO()
        self.found: resume.Resolved | None = None  # the --ckpt_path file and its run
        self.checkpoint: dict | None = None  # the --ckpt_path checkpoint, read once and checked
        self.resolved: dict[str, Any] | None = None  # the config as plain values, dumped once
        self.run_version = run_version
        self.run_lock = run_lock  # held while this process trains its run
        self.own_lock: rundir.RunLock | None = None  # the lock this CLI took, to release
        self.extra_callbacks = list(extra_callbacks)
        self.remove_fast_path: Undo | None = None
        self.restore_threads: Undo | None = None
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
        except resume.NothingToTrainError as done:  # raised before anything is built or written
            if rank_zero_only.rank == 0:
                print(report.nothing_to_train(done, self.config.fit), flush=True)
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

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's four, and ``export`` and ``lr_find`` (:class:`ExperimentTrainer`)."""
        return {
            **LightningCLI.subcommands(),
            "export": {"model", "datamodule"},
            "lr_find": {"model", "datamodule"},
        }

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        options.explain_config(parser)
        return parser

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The project's own options, right after --config and --seed_everything: before the
        # Trainer's sixty, where --help shows them first.
        super().add_default_arguments_to_parser(parser)
        options.add_options(parser)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        options.link_shapes(parser)

    # Runs and checkpoints ----------------------------------------------------------------------

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse the command line; when it names a run, read that run's own config beneath it
        (:mod:`experiments.namedrun`)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None or not isinstance(args, list | tuple | None):
            return
        argv = list(sys.argv[1:] if args is None else args)
        self.argv = argv
        choice = namedrun.choose(self.config[subcommand], subcommand, argv)
        self.found = choice.found
        if choice.version is not None:
            self.run_version = choice.version
        if choice.argv is not None:
            given = self.config
            # Not through LightningCLI.parse_arguments: it warns when it gets a list beside
            # sys.argv, which is how a command line rewritten here always comes.
            self.config = parser.parse_args(choice.argv)
            if choice.own_trainer:
                self.config = namedrun.with_run_model_and_data(given, self.config, subcommand)

    def before_instantiate_classes(self) -> None:
        config = self.subcommand_config(self.config)
        if config.experiment is None:
            config.experiment = experiment_name(config.get("config"), DEFAULT_EXPERIMENT)
        check_config(config, LINKED)
        root = log_root(config.trainer.default_root_dir)
        check_writable(root)
        run = {"version": self.run_version} if self.run_version is not None else {}
        if self.subcommand == "lr_find" and config.get("ckpt_path") is not None:
            raise UserError(
                f"lr_find starts a new run from the config; it takes no --ckpt_path "
                f"(given: {config.ckpt_path})"
            )
        if self.subcommand == "export" and config.get("ckpt_path") is None:
            raise UserError(
                "export needs a trained run: --ckpt_path best|last|FILE, or the run's "
                "config.yaml as --config"
            )
        if config.get("ckpt_path") is not None:
            run |= self.load_checkpoint(config, root)
        rundir.log_with_run_logger(config.trainer, root, config.experiment, **run)

    def load_checkpoint(self, config: Namespace, root: Path) -> dict[str, int]:
        """Read and check the ``--ckpt_path`` file; return the logger arguments of its run."""
        found, self.checkpoint = resume.find_and_load(
            str(config.ckpt_path), self.subcommand, root, config.experiment, self.found
        )
        self.found = found
        resume.check_network(self.checkpoint, self.resolved_config()["model"], found.path)
        self.checkpoint_io.preload(found.path, self.checkpoint)
        config.ckpt_path = str(found.path)
        return resume.run_arguments(found, self.checkpoint, self.subcommand, config.trainer)

    def resolved_config(self) -> dict[str, Any]:
        """The subcommand's config as plain values, link targets included, dumped on first use.

        No hook changes what is read from it (the model, the data, the seed, the Trainer's
        epochs and callbacks) once the arguments are parsed.
        """
        if self.resolved is None:
            # Checked when parsed: a second check would cost as much as the dump.
            dumped = self.parser.dump(self.config, skip_link_targets=False, skip_validation=True)
            self.resolved = yaml.safe_load(dumped)
        return self.subcommand_config(self.resolved)

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
        # The dump is Lightning's (skip_link_targets and skip_none off), without checking the
        # config again: it was checked when parsed, and the check costs as much as the dump.
        if hasattr(self, "config_dump"):
            return
        dumped = self.parser.dump(
            self.config, skip_link_targets=False, skip_none=False, skip_validation=True
        )
        self.config_dump = self.subcommand_config(yaml.safe_load(dumped))
        network = self.config_dump.get("model", {}).get("init_args", {}).get("network")
        if isinstance(network, dict):
            network.setdefault("init_args", {})

    # The Trainer ---------------------------------------------------------------------------

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except BUILD_ERRORS as error:  # a mistake in the config: one line
            raise build_error(error) from error

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        built = self.subcommand_config(self.config_init)
        trainer_config = dict(built.trainer or {})
        groups = {name: built[name] for name in assembly.GROUPS}
        callbacks = assembly.callbacks(self.subcommand, trainer_config, groups, self.stop_on_signal)
        kwargs.setdefault("callbacks", [*callbacks, *self.extra_callbacks])
        kwargs.setdefault("plugins", assembly.plugins(trainer_config, self.checkpoint_io))
        return super().instantiate_trainer(**kwargs)

    def subcommand_config(self, config: Any) -> Any:
        """The part of ``config`` for the subcommand being run."""
        return config[self.subcommand] if self.subcommand else config

    # Before and after each subcommand ------------------------------------------------------

    def check_before_running(self) -> None:
        """Checks that need the built model, before the trainer writes anything; then the fast
        path goes in, for as long as the subcommand runs."""
        check_run(self.model, self.datamodule, self.trainer.world_size)
        if self.checkpoint is not None and self.found is not None:
            resume.check_weights(self.checkpoint, self.model, self.found.path)
            resume.check_data(self.checkpoint, self.datamodule, self.found.path)
        config = self.subcommand_config(self.config)
        devices = self.trainer.num_devices  # under DDP, one process each
        self.restore_threads = threads.apply(config.threads, self.model, self.datamodule, devices)
        if config.fast_path:
            self.remove_fast_path = fastpath.install(self.trainer, self.model)

    before_validate = before_test = before_predict = before_export = check_before_running

    def before_lr_find(self) -> None:
        lrfind.check(self.resolved_config()["model"], self.model)
        self.check_before_running()
        report.run_directory(self.trainer)

    def before_fit(self) -> None:
        if any(isinstance(c, LearningRateFinder) for c in self.trainer.callbacks):
            lrfind.check(self.resolved_config()["model"], self.model)
        self.check_before_running()
        if self.run_lock is None:  # held while training, by the first process
            self.run_lock = self.own_lock = rundir.lock_run(self.trainer)
        report.run_directory(self.trainer)

    def after_fit(self) -> None:
        trainer = self.trainer
        for callback in trainer.callbacks:
            if isinstance(callback, lrfind.UseFoundRate) and callback.rate is not None:
                lrfind.set_rate(self.resolved_config(), callback.rate)  # the HParams tab's
        if self.stop_on_signal.received is not None:
            report.interrupted(trainer, self.stop_on_signal.received, self.config.fit)
        results = report.fit_results(trainer)
        if self.config.fit.test_after_fit and not trainer.fast_dev_run and trainer.state.finished:
            best = results.paths.get("Best") or None
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
            results.metrics |= report.stage_metrics(trainer, "test")
        self.summarise(results)

    def after_validate(self) -> None:
        ckpt_path = self.config.validate.ckpt_path
        self.summarise(report.evaluation_results(self.trainer, "val", ckpt_path))

    def after_test(self) -> None:
        ckpt_path = self.config.test.ckpt_path
        self.summarise(report.evaluation_results(self.trainer, "test", ckpt_path))

    @rank_zero_only
    def after_predict(self) -> None:
        report.predictions(self.trainer)

    @rank_zero_only
    def after_export(self) -> None:
        print(export.report(self.trainer.exported), flush=True)

    @rank_zero_only
    def after_lr_find(self) -> None:
        print(lrfind.report(self.trainer.found_rate, self.argv), flush=True)

    def summarise(self, results: report.Results) -> None:
        """Fill TensorBoard's hyperparameters tab and print the summary (first process only)."""
        if self.trainer.fast_dev_run:
            return
        run_dir = self.trainer.log_dir  # a broadcast from the first process: every process asks
        if self.trainer.is_global_zero:
            report.tell(self.trainer, flat_hparams(self.resolved_config()), results, run_dir)


def main(args: Sequence[str] | None = None) -> ExperimentCLI:
    """Run the CLI on ``args`` (the command line when ``None``) and return it.

    A :class:`UserError` ends the program with its one-line message and exit status;
    ``EXPERIMENTS_TRACEBACK=1`` shows the traceback instead.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        return ExperimentCLI(args=args, parser_kwargs=options.parser_kwargs(argv))
    except UserError as error:
        raise SystemExit(exit_status(error)) from None
