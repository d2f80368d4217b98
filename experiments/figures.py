"""Figures of the validation data, drawn every few epochs into TensorBoard's images tab.

What is drawn follows from the task and the data:

* regression: predictions against targets, and for one input feature the data with the
  network's fitted curve (for ``linear_regression``, the line it has recovered);
* classification: the confusion matrix; for two input features also the decision regions over
  the data; for images also a grid of samples with their true and predicted labels.

matplotlib is imported only when a figure is drawn, so that it costs nothing at start-up, and
figures are rendered without pyplot's global state.
"""

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

FIGURE_SIZE = (5.0, 4.0)  # inches
DPI = 80  # so every figure is 400 x 320 pixels


class FigureLogger(Callback):
    """Logs figures of the validation split at validation ends, throttled by epochs.

    Args:
        enabled: Draw figures at all.
        every_n_epochs: Draw after every n-th epoch's validation, and after the last epoch's.
        max_samples: Validation samples drawn at most (figures stay cheap and readable).
    """

    def __init__(self, enabled: bool = True, every_n_epochs: int = 10, max_samples: int = 500):
        if every_n_epochs <= 0:
            raise ValueError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}")
        if max_samples <= 0:
            raise ValueError(f"max_samples must be a positive integer, got {max_samples!r}")
        self.enabled = enabled
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples

    def due(self, trainer: pl.Trainer) -> bool:
        """Whether this validation end should draw."""
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero:
            return False
        epoch = trainer.current_epoch
        return (epoch + 1) % self.every_n_epochs == 0 or epoch + 1 >= (trainer.max_epochs or 0)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = next(
            (lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None
        )
        splits = getattr(trainer.datamodule, "splits", {})
        if writer is None or "val" not in splits or not self.due(trainer):
            return
        x, y = (t[: self.max_samples] for t in splits["val"].tensors)
        with torch.no_grad():
            outputs = pl_module(x.to(pl_module.device)).float().cpu()
        for tag, figure in draw(pl_module, trainer.datamodule, x.cpu(), y.cpu(), outputs):
            writer.add_image(
                f"figures/{tag}", render(figure), trainer.global_step, dataformats="HWC"
            )


def render(figure: Any) -> np.ndarray:
    """The figure as an ``H x W x 3`` uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def new_figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    # Fixed margins: a layout engine would cost more than the drawing itself.
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    figure.subplots_adjust(left=0.15, right=0.95, bottom=0.13, top=0.9)
    return figure, figure.add_subplot()


def draw(
    task: pl.LightningModule, data: Any, x: torch.Tensor, y: torch.Tensor, outputs: torch.Tensor
) -> list[tuple[str, Any]]:
    """The figures that suit ``task`` and ``data``, as ``(tag, figure)`` pairs."""
    from models import ClassificationTask, RegressionTask

    input_shape = tuple(data.input_shape)
    if isinstance(task, RegressionTask):
        figures = [("predicted_vs_target", predicted_vs_target(outputs, y))]
        if input_shape == (1,):
            figures.append(("fit", fitted_curve(task, x, y)))
        return figures
    if isinstance(task, ClassificationTask):
        predicted = outputs.argmax(1)
        figures = [("confusion_matrix", confusion_matrix(predicted, y, task.num_classes))]
        if input_shape == (2,):
            figures.append(("decision_boundary", decision_boundary(task, x, y)))
        if len(input_shape) == 3:
            figures.append(("samples", sample_grid(x, y, predicted)))
        return figures
    return []


def predicted_vs_target(outputs: torch.Tensor, y: torch.Tensor) -> Any:
    figure, axes = new_figure()
    target, predicted = y.flatten().numpy(), outputs.flatten().numpy()
    axes.scatter(target, predicted, s=8, alpha=0.6)
    low, high = float(min(target.min(), predicted.min())), float(max(target.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="black", linewidth=1, label="prediction = target")
    axes.set(xlabel="target", ylabel="prediction", title="Validation: predicted vs target")
    axes.legend(loc="upper left")
    return figure


def fitted_curve(task: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> Any:
    figure, axes = new_figure()
    axes.scatter(x.flatten().numpy(), y.flatten().numpy(), s=8, alpha=0.5, label="validation data")
    grid = torch.linspace(float(x.min()), float(x.max()), 200).unsqueeze(1)
    with torch.no_grad():
        curve = task(grid.to(task.device)).float().cpu()
        at_zero, at_one = task(torch.tensor([[0.0], [1.0]], device=task.device)).float().cpu()
    slope, intercept = float(at_one - at_zero), float(at_zero)
    axes.plot(grid.numpy(), curve.numpy(), color="C3", linewidth=2, label="network")
    axes.set(xlabel="x", ylabel="y", title=f"Fit: y ≈ {slope:.3f} x + {intercept:.3f}")
    axes.legend(loc="upper left")
    return figure


def confusion_matrix(predicted: torch.Tensor, y: torch.Tensor, num_classes: int) -> Any:
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long)
    counts.index_put_((y, predicted), torch.ones_like(y), accumulate=True)
    figure, axes = new_figure()
    axes.imshow(counts.numpy(), cmap="Blues")
    for (row, col), value in np.ndenumerate(counts.numpy()):
        if num_classes <= 12:
            axes.text(col, row, str(value), ha="center", va="center", fontsize=8)
    accuracy = counts.diag().sum().item() / max(counts.sum().item(), 1)
    axes.set(xlabel="predicted", ylabel="true", title=f"Validation confusion (acc {accuracy:.3f})")
    axes.set_xticks(range(num_classes))
    axes.set_yticks(range(num_classes))
    return figure


def decision_boundary(task: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> Any:
    low, high = x.min(0).values - 0.5, x.max(0).values + 0.5
    u = torch.linspace(float(low[0]), float(high[0]), 150)
    v = torch.linspace(float(low[1]), float(high[1]), 150)
    grid_u, grid_v = torch.meshgrid(u, v, indexing="xy")
    points = torch.stack([grid_u.flatten(), grid_v.flatten()], 1)
    with torch.no_grad():
        regions = task(points.to(task.device)).argmax(1).cpu().view(grid_u.shape)
    figure, axes = new_figure()
    axes.contourf(grid_u.numpy(), grid_v.numpy(), regions.numpy(), alpha=0.3, cmap="coolwarm")
    axes.scatter(x[:, 0].numpy(), x[:, 1].numpy(), c=y.numpy(), s=12, cmap="coolwarm")
    axes.set(xlabel="x0", ylabel="x1", title="Decision regions and validation points")
    return figure


def sample_grid(x: torch.Tensor, y: torch.Tensor, predicted: torch.Tensor, count: int = 16) -> Any:
    count = min(count, len(x))
    columns = 4
    rows = (count + columns - 1) // columns
    images = x[:count].float()
    low = images.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = images.flatten(1).max(1).values.view(-1, 1, 1, 1)
    images = (images - low) / (high - low + 1e-8)
    if images.shape[1] != 3:  # one channel, or a number that is no colour image: the first
        images = images[:, :1].expand(-1, 3, -1, -1)
    _, _, height, width = images.shape
    gap = max(2, height // 4)  # room for each label above its image
    mosaic = torch.ones(rows * (height + gap), columns * (width + 2), 3)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + gap) + gap, (index % columns) * (width + 2)
        mosaic[top : top + height, left : left + width] = image.permute(1, 2, 0)
    # One image with text, not a subplot per sample: a grid of axes costs several times more.
    figure, axes = new_figure()
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
    axes.imshow(mosaic.numpy(), interpolation="nearest")
    for index in range(count):
        colour = "green" if bool(predicted[index] == y[index]) else "red"
        axes.text(
            (index % columns) * (width + 2) + width / 2,
            (index // columns) * (height + gap) + gap - 1,
            f"{int(y[index])}→{int(predicted[index])}",
            ha="center",
            va="bottom",
            fontsize=7,
            color=colour,
        )
    axes.axis("off")
    axes.set_title("Validation samples: true→predicted", fontsize=9)
    return figure
