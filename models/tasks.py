"""LightningModules that train an injected network: one per kind of problem.

A task owns the loss, the metrics and the optimiser; the network (a plain ``nn.Module``) only
maps inputs to outputs. Under LightningCLI the network and optimiser arrive from YAML as
``class_path``/``init_args`` and are stored in the checkpoint as those plain values, so
``LightningModule.load_from_checkpoint(path)`` rebuilds the task with ``weights_only=True``.
"""

import inspect
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanAbsoluteError, Metric, R2Score
from torchmetrics.classification import MulticlassAccuracy

from models import checks

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


def check_optimizer(optimizer: OptimizerCallable, network: nn.Module) -> Any:
    """Build the optimiser once, so that a bad argument is reported before training starts;
    return its learning rate."""
    built = optimizer(network.parameters())
    for group in built.param_groups:
        rate = group.get("lr")
        if isinstance(rate, int | float) and rate <= 0:
            raise ValueError(f"learning rate must be > 0, got {rate}")
    return built.param_groups[0].get("lr") if built.param_groups else None


class WithRate:
    """An optimiser factory whose optimisers start at another learning rate."""

    def __init__(self, factory: OptimizerCallable, rate: float) -> None:
        self.factory = factory
        self.rate = rate

    def __call__(self, parameters: Any) -> torch.optim.Optimizer:
        optimizer = self.factory(parameters)
        for group in optimizer.param_groups:
            group["lr"] = self.rate
        return optimizer


class Task(LightningModule):
    """The training logic shared by every task: one step for train, val and test.

    The loss is logged on every step with ``self.log`` (per step and per epoch in training, per
    epoch in evaluation); the metrics are torchmetrics objects, one collection per stage,
    updated every step and logged at the end of the epoch.

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
        self.save_plain_hyperparameters()
        self.network = network
        self.configured_rate = check_optimizer(optimizer, network)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        # One set per stage, as attributes: a key "train" would clash with Module.train().
        self.train_metrics = nn.ModuleDict(self.build_metrics())
        self.val_metrics = nn.ModuleDict(self.build_metrics())
        self.test_metrics = nn.ModuleDict(self.build_metrics())
        # The mean and standard deviation of the targets, where the data scales them for the
        # loss (datamodules.FileData.target_scale): the network predicts scaled targets.
        self.target_scale: tuple[torch.Tensor, torch.Tensor] | None = None

    def save_plain_hyperparameters(self) -> None:
        """Save the constructor's arguments as hyperparameters, keeping only plain values.

        Under LightningCLI the network and the optimiser are saved as the config's plain
        ``class_path``/``init_args``. Built in Python they are objects, which a checkpoint must
        never hold (it would stop loading with ``weights_only=True``), so they are left out.
        """
        with warnings.catch_warnings():
            # Lightning advises ignoring a module argument; it is dropped right below.
            warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`.*")
            self.save_hyperparameters(frame=inspect.currentframe().f_back)
        for key in [key for key, value in self.hparams.items() if not is_plain(value)]:
            del self.hparams[key]
        self.save_hyperparameters(dict(self.hparams))  # what the loggers are given, too

    @property
    def learning_rate(self) -> Any:
        """The learning rate of the optimiser the config names, which Lightning's
        learning-rate finder reads and sets; set, later optimisers start from it."""
        return self.configured_rate

    @learning_rate.setter
    def learning_rate(self, rate: float) -> None:
        self.configured_rate = rate
        factory = self.optimizer_factory
        base = factory.factory if isinstance(factory, WithRate) else factory
        self.optimizer_factory = WithRate(base, rate)
        optimizer = self.hparams.get("optimizer")
        if isinstance(optimizer, dict) and isinstance(optimizer.get("init_args"), dict):
            optimizer["init_args"]["lr"] = rate  # the checkpoint's record of the run

    def build_metrics(self) -> dict[str, Metric]:
        """The task's metrics by name, new ones on every call (one set per stage)."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def scaled(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets as the network learns them: scaled, where the data scales them."""
        if self.target_scale is None:
            return targets
        mean, std = self.target_scale
        return (targets - mean) / std

    def unscaled(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's outputs in the targets' own units."""
        if self.target_scale is None:
            return outputs
        mean, std = self.target_scale
        return outputs * std + mean

    def take_target_scale(self) -> None:
        """Take the data's target scale, on the device; called once the trainer has restored
        a checkpoint's data state, before any step."""
        found = getattr(self.trainer.datamodule, "target_scale", None)
        self.target_scale = None if found is None else tuple(t.to(self.device) for t in found)

    def shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Forward, loss and metric updates for one batch of ``stage``; the loss on scaled
        targets, the metrics in the targets' own units."""
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, self.scaled(y))
        detached = self.unscaled(outputs.detach())
        for metric in getattr(self, f"{stage}_metrics").values():
            metric.update(detached, y)
        # Averaged across data-parallel processes (sync_dist), so every process logs the same.
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=len(y),
            sync_dist=True,
        )
        return loss

    def log_epoch_metrics(self, stage: str) -> None:
        """Log ``stage``'s metrics over the epoch (summed across processes), then reset them."""
        metrics = getattr(self, f"{stage}_metrics")
        values = {f"{stage}/{name}": metric.compute() for name, metric in metrics.items()}
        self.log_dict(values, prog_bar=stage != "test", sync_dist=True)
        self.reset_metrics(stage)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """Predictions of one batch, with its targets when the batch has them."""
        x, *rest = batch if isinstance(batch, list | tuple) else (batch,)
        predictions = self.describe_predictions(self(x))
        if rest:
            predictions["target"] = rest[0]
        return predictions

    def describe_predictions(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named per-sample values derived from the network's outputs."""
        return {"prediction": self.unscaled(outputs)}

    def reset_metrics(self, stage: str) -> None:
        """Forget what an interrupted pass of ``stage`` may have left in its metrics."""
        for metric in getattr(self, f"{stage}_metrics").values():
            metric.reset()

    def on_fit_start(self) -> None:
        self.take_target_scale()

    def on_validation_start(self) -> None:
        self.take_target_scale()

    def on_test_start(self) -> None:
        self.take_target_scale()

    def on_predict_start(self) -> None:
        self.take_target_scale()

    def on_train_epoch_start(self) -> None:
        self.reset_metrics("train")

    def on_validation_epoch_start(self) -> None:
        self.reset_metrics("val")

    def on_test_epoch_start(self) -> None:
        self.reset_metrics("test")

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

    def build_metrics(self) -> dict[str, Metric]:
        return {"mae": MeanAbsoluteError(), "r2": R2Score()}

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
        self.num_classes = checks.at_least("num_classes", num_classes)
        super().__init__(network, optimizer, lr_scheduler)

    def build_metrics(self) -> dict[str, Metric]:
        # The datamodules hand over labels in range: the per-batch validation is not needed.
        return {"acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def describe_predictions(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        probabilities = outputs.softmax(dim=1)
        probability, predicted = probabilities.max(dim=1)
        return {"class": predicted, "probability": probability, "probabilities": probabilities}
