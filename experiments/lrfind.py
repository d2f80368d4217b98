"""Lightning's learning-rate finder, for the optimiser that a run's config names.

``python -m experiments lr_find`` runs ``Tuner.lr_find`` and writes the loss against the rate
(``lr_find.png``) and the suggestion (``lr_find.txt``) into a run directory of its own.

Lightning's own ``LearningRateFinder`` callback works in a ``fit``
(``--trainer.callbacks+=LearningRateFinder``). Upstream it only sets a ``lr`` attribute of the
module and the optimiser's current rate (Lightning #16787): an optimiser that LightningCLI
builds from the config never hears of it, nor does a scheduler, which starts from the rate it
was built with, nor the run's ``config.yaml``. Here the task's ``learning_rate`` is the rate of
the optimiser its config names; :class:`UseFoundRate` then builds the optimiser (and
scheduler) again with the rate found, and records it in ``config.yaml``, so that the run can
be reproduced with a plain ``fit``.

The suggestion is the rate where the loss falls fastest against the logarithm of the rate
(:func:`suggestion`). Lightning 2.6's ``suggestion()`` takes the slope against the rate itself:
on its exponential sweep the steps between the smallest rates are a billionth of the largest,
so the first wiggle of the loss at 1e-7 outweighs the real descent near 1e-2, and it suggests
rates at which nothing trains (measured here: 1.6e-7 for mlp_classification).
"""

import inspect
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateFinder
from lightning.pytorch.core.saving import save_hparams_to_yaml

from experiments.atomic import write_atomically
from experiments.errors import UserError
from experiments.parser import PROGRAM, load_class

RATE_KEY = "model.init_args.optimizer.init_args.lr"
FIGURE, TEXT = "lr_find.png", "lr_find.txt"
# Networks whose experiment reproduces a source's own update, rate included, step for step.
FIXED_RECIPES = {
    "models.ScratchTwoLayer": "scratch_two_layer reproduces source 004's hand-written update "
    "(W -= 0.07 * W.grad) step for step; a rate found would no longer be that recipe",
}


@dataclass(frozen=True)
class FoundRate:
    """What the finder suggested, and where its figure and text are."""

    rate: float | None
    figure: Path
    text: Path


def check(model_config: dict[str, Any], task: pl.LightningModule) -> None:
    """Refuse a finder where it makes no sense, or where the optimiser has no float rate."""
    network = ((model_config.get("init_args") or {}).get("network") or {}).get("class_path")
    if network in FIXED_RECIPES:
        raise UserError(f"no learning-rate finder for {network}: {FIXED_RECIPES[network]}")
    optimizer = (model_config.get("init_args") or {}).get("optimizer") or {}
    class_path = optimizer.get("class_path") if isinstance(optimizer, dict) else None
    found = load_class(class_path) if isinstance(class_path, str) else None
    takes_rate = found is not None and "lr" in inspect.signature(found).parameters
    rate = getattr(task, "learning_rate", None)
    if not takes_rate or isinstance(rate, bool) or not isinstance(rate, float):
        name = class_path or "the optimizer"
        raise UserError(
            f"lr_find: {name} has no float learning rate option lr to find "
            f"(its rate: {rate!r}); choose an optimizer that takes lr"
        )


def find(
    trainer: pl.Trainer,
    task: pl.LightningModule,
    data: pl.LightningDataModule | None,
    min_lr: float,
    max_lr: float,
    num_training: int,
) -> FoundRate:
    """Run Lightning's finder; write its figure and suggestion into the run's directory."""
    from lightning.pytorch.tuner import Tuner

    if not 0 < min_lr < max_lr:
        raise UserError(f"lr_find: need 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
    if num_training < 2:
        raise UserError(f"lr_find: num_training must be at least 2, got {num_training}")
    finder = Tuner(trainer).lr_find(
        task,
        datamodule=data,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        update_attr=False,
    )
    run_dir = Path(trainer.log_dir or trainer.default_root_dir)
    rate = suggestion(finder) if finder is not None else None
    figure, text = run_dir / FIGURE, run_dir / TEXT
    if trainer.is_global_zero and finder is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        drawn = finder.plot(suggest=False)  # Lightning's marker would be its own suggestion's
        if rate is not None:
            point = finder.results["lr"].index(rate)
            loss = finder.results["loss"][point]
            drawn.axes[0].plot(rate, loss, marker="o", markersize=10, color="red")
        image = io.BytesIO()
        drawn.savefig(image, format="png", dpi=100)
        write_atomically(figure, image.getvalue())
        tried = f"{len(finder.results['lr'])} rates from {min_lr:g} to {max_lr:g}"
        write_atomically(text, f"suggested learning rate: {rate}\ntried: {tried}\n")
    return FoundRate(rate, figure, text)


def suggestion(finder: Any, skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """The rate where the loss falls fastest against log10 of the rate, skipping the first and
    last points as Lightning does; ``None`` with fewer than three usable points."""
    import torch

    rates, losses = finder.results["lr"], finder.results["loss"]
    kept = [
        i
        for i in range(skip_begin, len(losses) - skip_end)
        if math.isfinite(losses[i]) and rates[i] > 0
    ]
    if len(kept) < 3:
        return None
    logs = torch.tensor([math.log10(rates[i]) for i in kept], dtype=torch.float64)
    slope = torch.gradient(
        torch.tensor([losses[i] for i in kept], dtype=torch.float64), spacing=[logs]
    )[0]
    return rates[kept[int(slope.argmin())]]


def fit_command(argv: list[str], rate: float) -> str:
    """The ``fit`` command line that trains with ``rate``: the ``lr_find`` one, its own
    options left out."""
    own = {"--min_lr", "--max_lr", "--num_training", f"--{RATE_KEY}"}
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in own:
            skip = "=" not in arg
            continue
        kept.append("fit" if arg == "lr_find" else arg)
    return " ".join([PROGRAM, *map(quoted, kept), f"--{RATE_KEY}", f"{rate:.3g}"])


def quoted(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def report(found: FoundRate, argv: list[str]) -> str:
    """What ``lr_find`` prints."""
    if found.rate is None:
        return (
            f"No learning rate suggested (the loss did not fall over the rates tried); see "
            f"{found.figure}"
        )
    return (
        f"Suggested learning rate: {found.rate:.3g}\n"
        f"Figure:      {found.figure}\n"
        f"Train with:  {fit_command(argv, found.rate)}"
    )


class LightningsRateLine(logging.Filter):
    """Drops Lightning's "Learning rate set to" line: it names Lightning's own suggestion,
    which :class:`UseFoundRate` replaces (its own line names the rate trained with)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Learning rate set to")


logging.getLogger("lightning.pytorch.tuner.lr_finder").addFilter(LightningsRateLine())


class UseFoundRate(Callback):
    """After Lightning's ``LearningRateFinder`` (earlier among the callbacks): the optimiser
    and scheduler built again with the rate found, and the rate written into the run's
    ``config.yaml``."""

    def __init__(self) -> None:
        self.rate: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        finder = next((c for c in trainer.callbacks if isinstance(c, LearningRateFinder)), None)
        found = getattr(finder, "optimal_lr", None)
        rate = suggestion(found) if found is not None else None
        if rate is None:
            return
        self.rate = pl_module.learning_rate = float(rate)
        trainer.strategy.setup_optimizers(trainer)
        if trainer.is_global_zero:
            print(f"Learning rate set to {self.rate:.4g} (the finder's suggestion)", flush=True)
        config = Path(trainer.log_dir or ".") / "config.yaml"
        if trainer.is_global_zero and config.is_file():
            saved = yaml.safe_load(config.read_text())
            set_rate(saved, self.rate)
            write_atomically(config, yaml.safe_dump(saved, sort_keys=False))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning gives the loggers the hyperparameters the task began with, after
        # on_fit_start (where the finder ran); a TensorBoard or CSV logger's hparams.yaml, which
        # it writes from that copy, is to hold the rate trained with.
        if self.rate is None:
            return
        for logger in trainer.loggers:
            if isinstance(getattr(logger, "hparams", None), dict):
                logger.hparams.update(pl_module.hparams)
                written = Path(logger.log_dir or ".") / "hparams.yaml"
                if trainer.is_global_zero and written.is_file():
                    save_hparams_to_yaml(written, logger.hparams)


def set_rate(config: dict[str, Any], rate: float) -> None:
    """Put ``rate`` into a config (plain values) as the optimiser's ``lr``."""
    node = config
    *path, last = RATE_KEY.split(".")
    for key in path:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = rate
