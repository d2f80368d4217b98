"""The command line of ``python -m experiments``: the project's options, their help and defaults.

* ``--experiment``, ``--test_after_fit``, ``--fast_path`` and ``--threads``, then the callback
  groups ``--checkpoint.*``, ``--figures.*`` and ``--predictions.*``, with the checkpoint policy
  as their defaults;
* the shape facts that the data gives the network and the task (:data:`LINKED`);
* what ``--help`` says, and the default experiment's YAML when no ``--config`` is given.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.cli import LightningArgumentParser

from experiments import threads
from experiments.checkpoint import RunCheckpoint
from experiments.figures import FigureLogger
from experiments.parser import PROGRAM
from experiments.predictions import PredictionWriter
from experiments.runpath import BEST_FILENAME

EXPERIMENTS_DIR = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = "mlp_classification"
SUBCOMMANDS = ("fit", "validate", "test", "predict", "export", "lr_find")
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
    "checkpoint.filename": BEST_FILENAME,
}
CONFIG_HELP = (
    "An experiment's YAML (experiments/<name>.yaml), or a run's own "
    "config.yaml to go on with that run; further files apply on top."
)
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
    "export": "Write a run's checkpoint (--ckpt_path best|last|FILE) as an ONNX, TorchScript or "
    "torch.export file in <run>/exports/, preprocessing inside, checked on the test split.",
    "lr_find": "Find a learning rate for the config's optimizer with Lightning's finder; write "
    "its figure into a run of its own and print the fit command that uses it.",
}


def explain_config(parser: LightningArgumentParser) -> None:
    """Say what ``--config`` takes here: an experiment's YAML or a run's own config."""
    for action in parser._actions:  # argparse keeps no other handle on an added option
        if action.dest == "config":
            action.help = CONFIG_HELP


def add_options(parser: LightningArgumentParser) -> None:
    """The project's own options and callback groups, with the checkpoint policy's defaults."""
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
        # Not PositiveInt: its refusal of 0 would read "expected one of 'auto'"; sanity.py
        # says what is wanted.
        type=int | Literal["auto"],
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


def link_shapes(parser: LightningArgumentParser) -> None:
    """Link the data's shape facts into the network's and the task's arguments.

    Shape facts come from the datamodule once it exists. jsonargparse skips a link whose source
    the datamodule lacks (num_classes of regression data). Shapes travel as lists: the
    checkpoint's hparams.yaml must load with yaml.safe_load, which rejects tuples.
    """
    for source, target in LINKED.items():
        compute = list if source == "data.input_shape" else None
        parser.link_arguments(source, target, compute_fn=compute, apply_on="instantiate")


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
