"""The Trainer of ``python -m experiments``: Lightning's, with two further commands.

LightningCLI makes a subcommand of each Trainer method that ``subcommands()`` names, with the
method's arguments as its options; :class:`ExperimentTrainer` adds ``export`` and ``lr_find``.
"""

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from experiments import export as exporting
from experiments import lrfind


class ExperimentTrainer(Trainer):
    """``lightning.pytorch.Trainer`` with :meth:`export` and :meth:`lr_find`."""

    exported: exporting.Exported | None = None
    found_rate: lrfind.FoundRate | None = None

    def export(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | Path | None = None,
        format: exporting.Format = "onnx",
        weights_only: bool | None = None,
    ) -> exporting.Exported:
        """Write a run's checkpoint as an ONNX, TorchScript or pt2 file, preprocessing inside.

        The file is checked against the checkpoint on the test split before it is put in place.

        Args:
            model: The run's task.
            datamodule: The run's data.
            ckpt_path: The checkpoint: 'best', 'last' or a .ckpt file (or name the run by its
                config.yaml).
            format: onnx (run in onnxruntime), torchscript (torch.jit.load) or pt2
                (torch.export.load).
            weights_only: As for the other subcommands: checkpoints are read with
                weights_only=True.
        """
        path = Path(str(ckpt_path))
        # The checkpoint writer reads with weights_only (the CLI has read and checked it).
        checkpoint: dict[str, Any] = self.strategy.checkpoint_io.load_checkpoint(path)
        run_dir = Path(self.log_dir or path.parent)
        self.exported = exporting.export(model, datamodule, checkpoint, path, run_dir, format)
        return self.exported

    def lr_find(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        min_lr: float = 1e-8,
        max_lr: float = 1.0,
        num_training: int = 100,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
    ) -> lrfind.FoundRate:
        """Find a learning rate for the config's optimizer with Lightning's finder.

        The figure and the suggestion go into a run of their own.

        Args:
            model: The task.
            datamodule: The data.
            min_lr: The smallest rate tried.
            max_lr: The largest rate tried.
            num_training: Training steps, one rate each.
            ckpt_path: Not taken: the finder starts a new run from the config (a run's
                config.yaml holds the key).
            weights_only: As for fit (a run's config.yaml holds it).
        """
        self.found_rate = lrfind.find(self, model, datamodule, min_lr, max_lr, num_training)
        return self.found_rate
