"""``python -m experiments {fit,validate,test,predict}``: LightningCLI with the project's policy.

This is the one place that decides run naming, log layout, checkpoint policy and how data
shapes reach the network:

* a run of experiment ``NAME`` is written to ``lightning_logs/NAME/version_<n>/`` (under
  ``--trainer.default_root_dir`` when given) with TensorBoard events, the resolved
  ``config.yaml`` and ``checkpoints/`` holding ``last.ckpt`` and the best checkpoint by
  ``val/loss``;
* ``NAME`` is ``--experiment`` or else the file name of the first ``--config``; without any
  config the default experiment is trained;
* seeding is on by default and the seed is recorded in the saved config.
"""

import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from datamodules import SyntheticDataModule
from experiments import report, results, resume
from experiments.board import RunLogger
from experiments.checkpoint import RandomState, RunCheckpoint, SafeCheckpointIO
from experiments.errors import UserError
from experiments.figures import FigureLogger
from experiments.hooks import skip_unused_batch_hooks
from experiments.interrupt import StopOnSignal
from experiments.parser import ExperimentParser, condense
from experiments.predictions import PredictionWriter
from experiments.profiler import NoProfiler
from experiments.progress import ProgressBar
from experiments.rundir import RunLock
from experiments.sanity import (
    FiniteLoss,
    check_linked_overrides,
    check_output_shape,
    check_writable,
)
from models import Task

EXPERIMENTS_DIR = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = "mlp_classification"
LOG_DIR_NAME = "lightning_logs"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Shape facts the CLI copies from the datamodule into the network and the task.
LINKED = {
    "data.input_shape": "model.init_args.network.init_args.input_shape",
    "data.num_outputs": "model.init_args.network.init_args.num_outputs",
    "data.num_classes": "model.init_args.num_classes",
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


def experiment_name(config_files: Sequence[object] | None) -> str:
    """The experiment a run belongs to: the stem of the first config file, or the default."""
    for path in config_files or ():
        return Path(str(path)).stem
    return DEFAULT_EXPERIMENT


class KeepExistingConfig(SaveConfigCallback):
    """Saves config.yaml into a new run; a resumed or evaluated run keeps the one it has."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir  # a broadcast from the first process: every process asks
        exists = trainer.is_global_zero and (Path(log_dir) / self.config_filename).is_file()
        if trainer.strategy.broadcast(exists):
            self.already_saved = True
            return
        super().setup(trainer, pl_module, stage)


class ExperimentCLI(LightningCLI):
    """LightningCLI over every task in ``models`` and every datamodule in ``datamodules``."""

    def __init__(self, args: Sequence[str] | None = None, **kwargs: object) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        results.install()  # self.log without Lightning's walk through its result: results.py
        self.stop_on_signal = StopOnSignal()
        self.checkpoint: dict | None = None  # the --ckpt_path checkpoint, read once and checked
        self.checkpoint_file: Path | None = None
        self.run_lock: RunLock | None = None  # held while this process trains its run
        self.checkpoint_io = SafeCheckpointIO()
        try:
            super().__init__(
                Task,
                SyntheticDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                # Tasks build their own optimiser from an OptimizerCallable given in the YAML.
                auto_configure_optimizers=False,
                save_config_callback=KeepExistingConfig,
                parser_class=ExperimentParser,
                args=args,
                **kwargs,
            )
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Run name: runs go to lightning_logs/EXPERIMENT/version_<n>/. "
            "Defaults to the name of the first --config file.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, evaluate the best checkpoint on the test split in the same run.",
        )
        # Shape facts come from the datamodule once it exists. jsonargparse skips a link whose
        # source the datamodule lacks (num_classes of regression data). Shapes travel as lists:
        # the checkpoint's hparams.yaml must load with yaml.safe_load, which rejects tuples.
        for source, target in LINKED.items():
            compute = list if source == "data.input_shape" else None
            parser.link_arguments(source, target, compute_fn=compute, apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(FigureLogger, "figures")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                # After every epoch, validated or not, so last.ckpt is always the newest state.
                "checkpoint.save_on_train_epoch_end": True,
                "checkpoint.filename": "best-{epoch}-{step}",
            }
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.experiment is None:
            config.experiment = experiment_name(config.get("config"))
        trainer = config.trainer
        if trainer.max_epochs is not None and trainer.max_epochs != -1 and trainer.max_epochs <= 0:
            raise UserError(
                f"trainer.max_epochs must be a positive integer, got {trainer.max_epochs}"
            )
        check_linked_overrides(config, LINKED)
        root = Path(trainer.default_root_dir or ".") / LOG_DIR_NAME
        check_writable(root)
        logger_args = {"save_dir": str(root), "name": config.experiment, "default_hp_metric": False}
        if config.get("ckpt_path") is not None:
            logger_args |= self.resolve_checkpoint(config, root)
        if trainer.logger is None or trainer.logger is True:
            trainer.logger = Namespace(
                class_path="experiments.board.RunLogger",
                init_args=Namespace(**logger_args),
            )

    def resolve_checkpoint(self, config: Namespace, root: Path) -> dict[str, int]:
        """Turn ``--ckpt_path`` into a checked file, and say which run it continues."""
        found, self.checkpoint = resume.find_and_load(
            str(config.ckpt_path), self.subcommand, root, config.experiment
        )
        self.checkpoint_file = found.path
        self.checkpoint_io.preload(found.path, self.checkpoint)
        model = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False))
        resume.check_network(self.checkpoint, model[self.subcommand]["model"], found.path)
        config.ckpt_path = str(found.path)
        if found.run is None:
            return {}
        run = {"version": found.version}
        if self.subcommand == "fit":
            epoch, step = self.checkpoint.get("epoch", 0), self.checkpoint.get("global_step", 0)
            rank_zero_info(
                f"Resuming {found.run} from {found.path.name} (epoch {epoch}, step {step}); "
                "anything the run logged after that step is replaced."
            )
            # Hide anything the interrupted run logged after this checkpoint (a crash mid-epoch),
            # so the curves continue from it without repeated steps.
            run["purge_step"] = int(self.checkpoint.get("global_step", 0))
        return run

    def _parse_ckpt_path(self) -> None:
        # LightningCLI would merge the checkpoint's hyperparameters over the config, silently
        # turning one experiment into another. The config stays the truth; the checkpoint is
        # checked against it instead (resume.check_network, resume.check_weights).
        return

    def instantiate_classes(self) -> None:
        # A constructor's ValueError (or a task that misses an argument the data cannot link)
        # is a mistake in the config: report it in one line.
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            raise UserError(f"cannot build the experiment: {condense(str(error))}") from error
        except MisconfigurationException as error:
            raise UserError(f"trainer: {resume.first_line(error)}") from error

    def instantiate_trainer(self, **kwargs: object) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        kwargs.setdefault("plugins", [*plugins, self.checkpoint_io])
        if config.get("profiler") is None:
            kwargs.setdefault("profiler", NoProfiler())
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        extra = [RandomState(), self.stop_on_signal, FiniteLoss()]
        # The default bar, unless the user chose a bar of their own or none at all.
        if config.get("enable_progress_bar") is not False and not any(
            isinstance(callback, ProgressBarBase) for callback in callbacks
        ):
            extra.append(ProgressBar())
        kwargs.setdefault("callbacks", [*callbacks, *extra])
        return super().instantiate_trainer(**kwargs)

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        # The checkpoint group's callback is always built; with --trainer.enable_checkpointing
        # false the Trainer would refuse to start because of it, so it is left out instead.
        if config.get("enable_checkpointing") is False:
            callbacks = [c for c in callbacks if not isinstance(c, Checkpoint)]
        # The predictions group's writer only acts under predict.
        if self.subcommand is not None and self.subcommand != "predict":
            writer = self._get(self.config_init, "predictions")
            callbacks = [c for c in callbacks if c is not writer]
        trainer = super()._instantiate_trainer(config, callbacks)
        # Otherwise the Trainer calls every callback, and the model, on every per-batch hook
        # whether it implements it or not: see hooks.py.
        skip_unused_batch_hooks(trainer.callbacks, self.model)
        return trainer

    def check_before_running(self) -> None:
        """Checks that need the built model, before the trainer writes anything."""
        check_output_shape(self.model, self.datamodule)
        processes = self.trainer.world_size
        for split, size in self.datamodule.split_sizes().items():
            if size < processes:
                raise UserError(
                    f"the {split} split has {size} samples, fewer than the {processes} "
                    "data-parallel processes: use more samples or fewer devices"
                )
        if self.checkpoint is not None and self.checkpoint_file is not None:
            resume.check_weights(self.checkpoint, self.model, self.checkpoint_file)

    before_validate = before_test = before_predict = check_before_running

    def before_fit(self) -> None:
        self.check_before_running()
        # The first process claims the run (a new one now, by asking for its directory) and
        # holds it while training; the other data-parallel processes write nothing of their own.
        logger = self.trainer.logger
        if isinstance(logger, RunLogger) and self.trainer.is_global_zero:
            self.run_lock = RunLock(Path(logger.log_dir))

    def _dump_config(self) -> None:
        # Lightning copies instantiation-linked values into the checkpoint's hyperparameters by
        # writing them into this dump under model.init_args.network.init_args, and asserts that
        # that dict exists; the dump has none for a network whose arguments are all linked
        # (LinearRegression). Create it so such networks can be trained.
        if hasattr(self, "config_dump"):
            return
        super()._dump_config()
        network = self.config_dump.get("model", {}).get("init_args", {}).get("network")
        if isinstance(network, dict):
            network.setdefault("init_args", {})

    def after_fit(self) -> None:
        trainer = self.trainer
        if self.stop_on_signal.received is not None:
            self.report_interruption(self.stop_on_signal.received)
        metrics = report.stage_metrics(trainer, "val")
        # Read before testing: loading the best checkpoint restores the callback's state too.
        paths = report.checkpoint_paths(trainer)
        if self.config.fit.test_after_fit and not trainer.fast_dev_run and trainer.state.finished:
            best = paths.get("Best") or None
            trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
            metrics |= report.stage_metrics(trainer, "test")
        self.report(metrics, paths)

    def after_validate(self) -> None:
        checkpoint = {"Checkpoint": str(self.config.validate.ckpt_path or "")}
        self.report(report.stage_metrics(self.trainer, "val"), checkpoint)

    def after_test(self) -> None:
        checkpoint = {"Checkpoint": str(self.config.test.ckpt_path or "")}
        self.report(report.stage_metrics(self.trainer, "test"), checkpoint)

    def report_interruption(self, signum: int) -> None:
        """Say where the stopped run's checkpoint is and how to continue; exit 128 + signum."""
        paths = report.checkpoint_paths(self.trainer)
        if self.trainer.is_global_zero:
            config = self.config.fit
            command = "python -m experiments fit"
            if config.get("config"):
                command += f" --config {config.config[0]}"
            print(
                f"Stopped by {signal.Signals(signum).name} after epoch "
                f"{self.trainer.current_epoch - 1}: checkpoint {paths.get('Last', '(none)')}\n"
                f"Continue with: {command} --ckpt_path last",
                flush=True,
            )
        raise SystemExit(128 + signum)

    @rank_zero_only
    def after_predict(self) -> None:
        writer = next(
            (cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)), None
        )
        if writer is not None and writer.path is not None:
            print(f"Predictions: {writer.path}", flush=True)

    def report(self, metrics: dict[str, float], paths: dict[str, str]) -> None:
        """Fill TensorBoard's hyperparameters tab and print the summary (first process only)."""
        if self.trainer.fast_dev_run:
            return
        run_dir = self.trainer.log_dir  # a broadcast from the first process: every process asks
        if not self.trainer.is_global_zero:
            return
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False))
        params = report.flat_hparams(resolved[self.subcommand])
        report.write_hparams(self.trainer, params, sorted(metrics))
        print(report.summary(self.trainer, metrics, paths, run_dir), flush=True)


def default_config_kwargs(args: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Parser settings that load the default experiment's YAML when no --config is given."""
    if any(a in ("-c", "--config") or a.startswith("--config=") for a in args):
        return {}
    default = str(EXPERIMENTS_DIR / f"{DEFAULT_EXPERIMENT}.yaml")
    return {sub: {"default_config_files": [default]} for sub in SUBCOMMANDS}


def main(args: Sequence[str] | None = None) -> ExperimentCLI:
    """Run the CLI on ``args`` (the command line when ``None``) and return it.

    A :class:`UserError` ends the program with its one-line message and exit status;
    ``EXPERIMENTS_TRACEBACK=1`` shows the traceback instead.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        return ExperimentCLI(args=args, parser_kwargs=default_config_kwargs(argv))
    except UserError as error:
        if os.environ.get("EXPERIMENTS_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(error.exit_code) from None
