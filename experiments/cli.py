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
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from datamodules import SyntheticDataModule
from experiments import report
from experiments.checkpoint import RunCheckpoint
from experiments.figures import FigureLogger
from experiments.predictions import PredictionWriter
from models import Task

EXPERIMENTS_DIR = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = "mlp_classification"
LOG_DIR_NAME = "lightning_logs"
SUBCOMMANDS = ("fit", "validate", "test", "predict")

# The data are tensors already in memory: worker processes would only add start-up and copying,
# so Lightning's advice to raise num_workers does not apply here.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
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


class ExperimentCLI(LightningCLI):
    """LightningCLI over every task in ``models`` and every datamodule in ``datamodules``."""

    def __init__(self, args: Sequence[str] | None = None, **kwargs: object) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        super().__init__(
            Task,
            SyntheticDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            # Tasks build their own optimiser from an OptimizerCallable given in the YAML.
            auto_configure_optimizers=False,
            args=args,
            **kwargs,
        )

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
        network = "model.init_args.network.init_args"
        parser.link_arguments(
            "data.input_shape", f"{network}.input_shape", compute_fn=list, apply_on="instantiate"
        )
        for source, target in (
            ("data.num_outputs", f"{network}.num_outputs"),
            ("data.num_classes", "model.init_args.num_classes"),
        ):
            parser.link_arguments(source, target, apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.add_lightning_class_args(FigureLogger, "figures")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}",
            }
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.experiment is None:
            config.experiment = experiment_name(config.get("config"))
        trainer = config.trainer
        if trainer.logger is None or trainer.logger is True:
            root = Path(trainer.default_root_dir or ".") / LOG_DIR_NAME
            trainer.logger = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(
                    save_dir=str(root), name=config.experiment, default_hp_metric=False
                ),
            )

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

    @rank_zero_only
    def after_predict(self) -> None:
        writer = next(
            (cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)), None
        )
        if writer is not None and writer.path is not None:
            print(f"Predictions: {writer.path}", flush=True)

    @rank_zero_only
    def report(self, metrics: dict[str, float], paths: dict[str, str]) -> None:
        """Fill TensorBoard's hyperparameters tab and print the summary."""
        if self.trainer.fast_dev_run:
            return
        resolved = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False))
        params = report.flat_hparams(resolved[self.subcommand])
        report.write_hparams(self.trainer, params, sorted(metrics))
        print(report.summary(self.trainer, metrics, paths), flush=True)


def default_config_kwargs(args: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Parser settings that load the default experiment's YAML when no --config is given."""
    if any(a in ("-c", "--config") or a.startswith("--config=") for a in args):
        return {}
    default = str(EXPERIMENTS_DIR / f"{DEFAULT_EXPERIMENT}.yaml")
    return {sub: {"default_config_files": [default]} for sub in SUBCOMMANDS}


def main(args: Sequence[str] | None = None) -> ExperimentCLI:
    """Run the CLI on ``args`` (the command line when ``None``) and return it."""
    argv = sys.argv[1:] if args is None else list(args)
    return ExperimentCLI(args=args, parser_kwargs=default_config_kwargs(argv))
