"""LightningModules that train an injected network: one per kind of problem.

A task owns the loss, the metrics and the optimiser; the network (a plain ``nn.Module``) only
maps inputs to outputs. Under LightningCLI the network and optimiser arrive from YAML as
``class_path``/``init_args`` and are stored in the checkpoint as those plain values, so
``LightningModule.load_from_checkpoint(path)`` rebuilds the task with ``weights_only=True``.
"""

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MetricCollection, R2Score
from torchmetrics.classification import MulticlassAccuracy

from models import _shapes

PLAIN = (type(None), bool, int, float, str)


def is_plain(value: Any) -> bool:
    """True for values that ``torch.load(weights_only=True)`` can read back without pickled code."""
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, list | tuple):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def check_optimizer(optimizer: OptimizerCallable, network: nn.Module) -> None:
    """Build the optimiser once, so that a bad argument is reported before training starts."""
    built = optimizer(network.parameters())
    for group in built.param_groups:
        rate = group.get("lr")
        if isinstance(rate, int | float) and rate <= 0:
            raise ValueError(f"learning rate must be > 0, got {rate}")


class Task(LightningModule):
    """The training logic shared by every task: one step for train, val and test.

    Args:
        network: Maps a batch of inputs to outputs (predictions or logits).
        optimizer: Builds the optimiser from the parameters, e.g. ``torch.optim.SGD``.
        lr_scheduler: Builds a learning-rate scheduler from the optimiser; stepped per epoch.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        # Under LightningCLI the hyperparameters are the config's plain class_path/init_args.
        # Built in Python, network and optimizer are objects: a checkpoint must never hold them,
        # or it stops loading with weights_only=True, so they are dropped (Lightning's advice to
        # ignore the module is then moot, hence the filter).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        self.remove_ignored_hparams([k for k, v in self.hparams.items() if not is_plain(v)])
        self.network = network
        check_optimizer(optimizer, network)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        metrics = self.build_metrics()
        # Attributes rather than an nn.ModuleDict: "train" would clash with Module.train().
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # A diverging loss must show as nan, not be dropped with a warning (the default).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        # Each stage's detached outputs and targets of the running epoch; see shared_step.
        self.epoch_outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        # The Trainer sets _current_fx_name before and after every hook it calls, some forty
        # times a training step. nn.Module.__setattr__ first checks whether the value is a
        # parameter, buffer or submodule, which for the small networks costs a tenth of a step;
        # this attribute is only ever a string or None, so it is set directly.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def build_metrics(self) -> MetricCollection:
        """The task's metrics; cloned once per stage."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Forward and loss for one batch of ``stage``; metrics wait for the end of the epoch.

        Updating torchmetrics objects and calling ``self.log`` on every step cost more than a
        small network's whole step. The detached outputs are kept instead (a few numbers per
        sample, on the device they were computed on) and the epoch's loss and metrics are
        computed from them in one go: the same values, since every metric here is a sum over
        samples. The training loss of the step is written by :meth:`log_step_loss`.
        """
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, y)
        self.epoch_outputs.setdefault(stage, []).append((outputs.detach(), y))
        if stage == "train":
            self.log_step_loss(loss)
        return loss

    def log_step_loss(self, loss: torch.Tensor) -> None:
        """Write ``train/loss_step`` if this step's values reach the loggers.

        ``self.log`` costs 0.45 ms a call (0.09 ms with the CLI's ``experiments/results.py``),
        and once a key is logged Lightning recomputes its logged values after every step of the
        epoch, which together took about a tenth of a small network's training time. The value
        goes instead straight through the function Lightning writes step values with, on the
        same steps (every ``log_every_n_steps``, never while gradients accumulate) and under the
        same step number, with the ``epoch`` scalar beside it, so the curves are unchanged.
        Written during the training step, as ``self.log`` would, the value is in
        ``trainer.callback_metrics`` (a checkpoint may monitor it) and on the progress bar when
        the callbacks look.
        """
        trainer = self.trainer
        # Lightning's own tests, private: the Trainer exposes no public equivalent.
        connector = trainer._logger_connector
        if trainer.fit_loop._should_accumulate() or not (
            connector.should_update_logs or trainer.fast_dev_run
        ):
            return
        # The mean over data-parallel processes, as self.log(sync_dist=True) would log it;
        # cloned, because the reduction may work in place.
        value = trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")
        connector.log_metrics({"train/loss_step": value})
        trainer.callback_metrics["train/loss_step"] = value
        trainer.progress_bar_metrics["train/loss_step"] = value.item()

    def log_epoch_metrics(self, stage: str) -> None:
        """Log ``stage``'s loss and metrics over the epoch's outputs (across all processes)."""
        cached = self.epoch_outputs.pop(stage, [])
        if not cached:
            return
        outputs = torch.cat([output for output, _ in cached])
        targets = torch.cat([target for _, target in cached])
        loss, metrics = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_metrics")
        # The loss is a mean over samples: its epoch value is the mean over the epoch's samples.
        loss.update(self.loss(outputs, targets), weight=len(targets))
        metrics.update(outputs, targets)
        # compute() sums the metric states across data-parallel processes, so every process
        # logs the same global values. sync_dist then only averages equal numbers; it is what
        # tells Lightning the values are global (it warns otherwise). Logged as plain tensors:
        # logging the metric objects themselves costs Lightning several times more.
        values = {f"{stage}/loss_epoch" if stage == "train" else f"{stage}/loss": loss.compute()}
        values |= metrics.compute()
        self.log_dict(values, prog_bar=stage != "test", sync_dist=True)

    def start_epoch(self, stage: str) -> None:
        """Forget what an interrupted pass of ``stage`` left behind."""
        self.epoch_outputs.pop(stage, None)
        getattr(self, f"{stage}_loss").reset()
        getattr(self, f"{stage}_metrics").reset()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """Predictions of one batch, with its targets when the batch has them."""
        x, y = (batch[0], batch[1]) if isinstance(batch, list | tuple) else (batch, None)
        predictions = self.describe_predictions(self(x))
        if y is not None:
            predictions["target"] = y
        return predictions

    def describe_predictions(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named per-sample values derived from the network's outputs."""
        return {"prediction": outputs}

    def on_train_epoch_start(self) -> None:
        self.start_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self.start_epoch("val")

    def on_test_epoch_start(self) -> None:
        self.start_epoch("test")

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics("train")
        if self.lr_scheduler_factory is not None:
            # The learning rate the next epoch will use, once per epoch, beside the curves.
            self.log("train/lr", self.optimizers().param_groups[0]["lr"])

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # load_from_checkpoint builds the network from the stored class_path/init_args and hands
        # it over as an object, which __init__ leaves out of hparams; put the stored plain values
        # back so that a checkpoint saved from the loaded task is as complete as the original.
        for key, value in checkpoint.get("hyper_parameters", {}).items():
            self.hparams.setdefault(key, value)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        # The monitor is read only by ReduceLROnPlateau; other schedulers ignore it.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }


class RegressionTask(Task):
    """Mean squared error, with mean absolute error and R² (averaged over outputs) as metrics."""

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError(), "r2": R2Score()})

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets)


class ClassificationTask(Task):
    """Cross-entropy on logits, with accuracy as the metric.

    Args:
        network: Maps inputs to ``num_classes`` logits per sample.
        num_classes: Number of classes; linked from the datamodule.
        optimizer: Builds the optimiser from the parameters.
        lr_scheduler: Builds a learning-rate scheduler from the optimiser.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        if num_classes is None:  # the CLI links it from the data; regression data has none
            raise ValueError(
                "ClassificationTask needs num_classes, which only a classification datamodule "
                "provides: the task does not fit this data"
            )
        self.num_classes = _shapes.positive("num_classes", num_classes)
        super().__init__(network, optimizer, lr_scheduler)

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"acc": MulticlassAccuracy(self.num_classes, average="micro")})

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def describe_predictions(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        probability, predicted = outputs.softmax(dim=1).max(dim=1)
        return {"class": predicted, "probability": probability}
