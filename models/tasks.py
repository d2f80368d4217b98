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
from torchmetrics import MeanAbsoluteError, MetricCollection, R2Score
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

    def build_metrics(self) -> MetricCollection:
        """The task's metrics; cloned once per stage."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Forward, loss, metric update and loss logging for one batch of ``stage``."""
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, y)
        getattr(self, f"{stage}_metrics").update(outputs.detach(), y)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=len(x),
        )
        return loss

    def log_epoch_metrics(self, stage: str) -> None:
        """Compute, log and reset ``stage``'s metrics once per epoch (synchronised across ranks)."""
        metrics = getattr(self, f"{stage}_metrics")
        self.log_dict(metrics.compute(), prog_bar=stage == "val")
        metrics.reset()

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
