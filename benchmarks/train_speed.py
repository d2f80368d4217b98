"""Training speed: this project's ``fit`` against plain PyTorch loops on the same workload.

For each workload (an experiment's network, optimiser and batch size on its data) and dataset
size, these ways of training run interleaved over several rounds:

* ``plain``: the source material's loop, ``DataLoader(TensorDataset(x, y), shuffle=True)``,
  with the optimiser built as the source builds it (PyTorch's default implementation);
* ``batched``: a plain loop indexing whole batches from a permutation, same optimiser;
* ``batched-opt``: the batched loop with the optimiser exactly as the experiment configures it
  (the YAMLs ask for the fused implementation): the floor for this project's own steps;
* ``lightning``: Lightning's own loop around the same network, loss and optimiser as
  configured, on the same batches, with nothing else (no logging, callbacks, progress bar or
  checkpoints): the least a step can cost under a Trainer;
* ``project``: ``python -m experiments fit`` with the experiment's YAML defaults (progress bar,
  TensorBoard curves, checkpoints, figures and epoch metrics on), run in-process, timing the
  training steps with everything around them except the validation passes;
* ``project+val``: the same runs, validation passes (and the figures drawn there) included.

Time per training step is that of the fastest epoch after the first (the first warms up):
on a shared machine, neighbours slow some epochs down by up to 2x, and the fastest epoch is the
figure least disturbed by them, for every way alike. Ratios are against ``plain`` in the same
round; the spread is the lowest and highest ratio over the rounds. Also printed: the
start-up time of ``python -m experiments fit --help`` against ``python -c "import lightning"``.

Run: ``.venv/bin/python -m benchmarks.train_speed`` (``--quick`` for a short check).
"""

import argparse
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("mlp_classification", "two_layer_relu", "cnn")
WAYS = ("plain", "batched", "batched-opt", "lightning", "project", "project+val")


class StepTimer(Callback):
    """Wall time per training step of each epoch after the first, with and without validation.

    An epoch runs from its start to the next epoch's start (or the end of training): every
    training step with its hooks, logging and progress bar, the epoch-end metrics and the
    checkpoints. Validation (with the figures drawn from it) is timed apart, since the plain
    loops do none.
    """

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float, int]] = []  # (seconds, validating, steps)
        self._start: float | None = None
        self._steps = 0
        self._validating = 0.0
        self._validation_start: float | None = None

    def _close_epoch(self, trainer) -> None:
        if self._start is not None:
            elapsed = time.perf_counter() - self._start
            self.epochs.append((elapsed, self._validating, trainer.global_step - self._steps))
        self._start, self._steps, self._validating = None, trainer.global_step, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close_epoch(trainer)
        if trainer.current_epoch >= 1:
            self._start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._validation_start is not None:
            self._validating += time.perf_counter() - self._validation_start
            self._validation_start = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._close_epoch(trainer)

    @property
    def per_step(self) -> float:
        """Seconds per training step in the fastest epoch, validation excluded."""
        return min((elapsed - validating) / steps for elapsed, validating, steps in self.epochs)

    @property
    def per_step_with_validation(self) -> float:
        """Seconds per training step in the fastest epoch, validation included."""
        return min(elapsed / steps for elapsed, _, steps in self.epochs)


def build(name: str, num_samples: int):
    """The experiment's task and datamodule as the CLI builds them, without training."""
    from experiments.cli import ExperimentCLI

    cli = ExperimentCLI(
        args=[
            "--config",
            str(REPO / "experiments" / f"{name}.yaml"),
            "--data.init_args.num_samples",
            str(num_samples),
            "--trainer.logger",
            "false",
        ],
        run=False,
    )
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule


def plain_loop(
    name: str, num_samples: int, epochs: int, batched: bool, as_configured: bool = False
) -> float:
    """Seconds per step of a plain loop's fastest epoch after the first; the source's optimiser
    unless ``as_configured``.

    The source builds its optimiser with the class and learning rate alone, so it runs
    PyTorch's default implementation; ``as_configured`` keeps the experiment's settings
    (``fused: true`` in the YAMLs).
    """
    task, data = build(name, num_samples)
    network, loss_fn = task.network, task.loss
    optimizer = task.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    if not as_configured:
        settings = {**optimizer.defaults, "fused": None, "foreach": None}
        optimizer = type(optimizer)(network.parameters(), **settings)
    x, y = data.splits["train"].tensors
    batch = data.batch_size or len(x)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    network.train()
    per_step = []
    for _ in range(epochs):
        start, steps = time.perf_counter(), 0
        if batched:
            order = torch.randperm(len(x))
            batches = (
                (x[order[i : i + batch]], y[order[i : i + batch]]) for i in range(0, len(x), batch)
            )
        else:
            batches = loader
        for inputs, targets in batches:
            loss = loss_fn(network(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        per_step.append((time.perf_counter() - start) / steps)
    return min(per_step[1:])


class BareTask(LightningModule):
    """An experiment's network, loss and optimiser in a LightningModule that does nothing else."""

    def __init__(self, task: LightningModule) -> None:
        super().__init__()
        self.network = task.network
        self.loss_fn = task.loss
        self.optimizer_factory = task.optimizer_factory

    def training_step(self, batch: tuple, batch_idx: int):
        x, y = batch
        return self.loss_fn(self.network(x), y)

    def configure_optimizers(self):
        return self.optimizer_factory(self.parameters())


def bare_lightning(name: str, num_samples: int, epochs: int) -> float:
    """Seconds per step of Lightning's own loop: no logging, callbacks, bar or checkpoints."""
    task, data = build(name, num_samples)
    timer = StepTimer()
    trainer = Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(BareTask(task), train_dataloaders=data.train_dataloader())
    return timer.per_step


def project_fit(name: str, num_samples: int, epochs: int, extra: Sequence[str] = ()) -> StepTimer:
    """``python -m experiments fit`` in-process in a temporary directory, output discarded;
    ``extra`` arguments go at the end of the command line."""
    from experiments.cli import main

    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as directory, open(os.devnull, "w") as sink:
        os.chdir(directory)
        try:
            # The progress bar still draws (its cost counts), into the void rather than here.
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                cli = main(
                    [
                        "fit",
                        "--config",
                        str(REPO / "experiments" / f"{name}.yaml"),
                        "--data.init_args.num_samples",
                        str(num_samples),
                        "--trainer.max_epochs",
                        str(epochs),
                        "--test_after_fit",
                        "false",
                        "--trainer.callbacks+=benchmarks.train_speed.StepTimer",
                        *extra,
                    ]
                )
        finally:
            os.chdir(previous)
    # Run as a script, this module is __main__: the CLI imported its own copy of StepTimer.
    return next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "StepTimer")


def startup(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, small sizes only")
    parser.add_argument(
        "--workloads", nargs="+", choices=WORKLOADS, default=WORKLOADS, help="what to train"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    sizes = {
        "mlp_classification": (1000, 5000),
        "two_layer_relu": (1000, 5000),
        "cnn": (1000, 5000),
    }
    epochs = {"mlp_classification": 6, "two_layer_relu": 6, "cnn": 3}
    rounds = 1 if args.quick else args.rounds
    sys.argv = ["experiments"]
    # The runs' own start-up lines would interleave with the table.
    for logger in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} round(s)")
    print(
        f"{'workload':<20}{'N':>6}  {'way':<12}{'ms/step':>9}{'samples/s':>11}{'ratio':>7}  spread"
    )
    for name in args.workloads:
        for size in sizes[name][:1] if args.quick else sizes[name]:
            results: dict[str, list[float]] = {way: [] for way in WAYS}
            for _ in range(rounds):
                results["plain"].append(plain_loop(name, size, epochs[name], batched=False))
                results["batched"].append(plain_loop(name, size, epochs[name], batched=True))
                results["batched-opt"].append(
                    plain_loop(name, size, epochs[name], batched=True, as_configured=True)
                )
                results["lightning"].append(bare_lightning(name, size, epochs[name]))
                timer = project_fit(name, size, epochs[name])
                results["project"].append(timer.per_step)
                results["project+val"].append(timer.per_step_with_validation)
            batch = build(name, size)[1].batch_size
            for way, times in results.items():
                ratios = [t / p for t, p in zip(times, results["plain"], strict=True)]
                per_step = statistics.median(times)
                print(
                    f"{name:<20}{size:>6}  {way:<12}{per_step * 1e3:>9.3f}"
                    f"{batch / per_step:>11.0f}{statistics.median(ratios):>7.2f}  "
                    f"{min(ratios):.2f}-{max(ratios):.2f}"
                )
    repeats = 1 if args.quick else 3
    help_time = startup([sys.executable, "-m", "experiments", "fit", "--help"], repeats)
    import_time = startup([sys.executable, "-c", "import lightning"], repeats)
    print(
        f"start-up: 'python -m experiments fit --help' {help_time:.2f} s, "
        f"'python -c \"import lightning\"' {import_time:.2f} s"
    )


if __name__ == "__main__":
    main()
