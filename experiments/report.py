"""What a run tells its user: the terminal summary and TensorBoard's hyperparameters tab."""

import math
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.loggers import TensorBoardLogger

from experiments.predictions import PredictionWriter
from experiments.resume import NothingToTrainError
from experiments.runpath import RunPath
from experiments.runs import STOPPED_AT, STOPPED_BY, read_scalars
from experiments.settings import HParam


def write_hparams(trainer: pl.Trainer, params: dict[str, HParam], metric_tags: list[str]) -> None:
    """Fill the hyperparameters tab: ``params`` beside the latest values of ``metric_tags``.

    Lightning's ``log_hyperparams(params, metrics)`` would also write each metric again as a
    scalar, adding a duplicate point to curves such as ``val/loss``; TensorBoard only needs the
    tag names, and reads their values from the run's existing scalars.
    """
    from torch.utils.tensorboard.summary import hparams

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and metric_tags:
            summaries = hparams(params, dict.fromkeys(metric_tags, 0.0))
            # torch's SummaryWriter has no public way to add a ready-made summary to its own
            # event file (add_hparams writes a new run); Lightning's log_hyperparams uses this.
            writer = logger.experiment._get_file_writer()
            for summary in summaries:
                writer.add_summary(summary, trainer.global_step)
            writer.flush()


def checkpoint_paths(trainer: pl.Trainer) -> dict[str, str]:
    """The run's best and last checkpoint files, as the checkpoint callback knows them now."""
    checkpoint = trainer.checkpoint_callback
    if not isinstance(checkpoint, ModelCheckpoint) or not checkpoint.last_model_path:
        return {}
    return {"Best": checkpoint.best_model_path, "Last": checkpoint.last_model_path}


def summary(
    trainer: pl.Trainer,
    metrics: Mapping[str, float],
    paths: Mapping[str, str],
    run_dir: str,
    heading: str | None = None,
    stopped: str | None = None,
) -> str:
    """The run's metrics under ``heading`` (which says what they are measured on), why it
    stopped early if it did, then where the run, its checkpoints and TensorBoard are."""
    lines = [heading] if heading and metrics else []
    if metrics:
        width = max(len(name) for name in metrics)
        lines += [f"{'metric':<{width}}  value", f"{'-' * width}  --------"]
        lines += [f"{name:<{width}}  {value:.4f}" for name, value in sorted(metrics.items())]
        lines.append("")
    if stopped:
        lines.append(f"Stopped:     {stopped}")
    lines.append(f"Run:         {run_dir}")
    lines += [f"{label + ':':<12} {path}" for label, path in paths.items() if path]
    save_dir = next(
        (lg.save_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None
    )
    if save_dir:
        lines.append(f"TensorBoard: tensorboard --logdir {save_dir}")
    return "\n".join(lines)


def best_validation(trainer: pl.Trainer, run_dir: Path) -> tuple[str, dict[str, float]] | None:
    """The validation metrics logged at the best checkpoint's step, and a heading naming it.

    The best checkpoint is the one ``test`` evaluates and the runs table reports; the metrics
    of the last epoch may be worse. Read from the run's event files (written so far), so a
    checkpoint from before a resume counts too. ``None`` without a best checkpoint.
    """
    checkpoint = trainer.checkpoint_callback
    if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.best_model_score is None:
        return None
    score = float(checkpoint.best_model_score)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.flush()
    scalars = read_scalars(run_dir)
    step = next(
        (
            s
            for s, value in scalars.get(checkpoint.monitor or "", [])
            if math.isclose(value, score, rel_tol=1e-6, abs_tol=1e-12)
        ),
        None,
    )
    if step is None:
        return None
    metrics = {
        tag: value
        for tag, points in scalars.items()
        if tag.startswith("val/")
        for s, value in points
        if s == step
    }
    epoch = next((int(v) for s, v in scalars.get("epoch", []) if s == step), None)
    where = f"epoch {epoch}" if epoch is not None else f"step {step}"
    return f"At the best checkpoint ({where}, by {checkpoint.monitor}):", metrics


def stop_reason(trainer: pl.Trainer) -> tuple[str, str] | None:
    """What stopped training before ``max_epochs``, and a line saying so; ``None`` otherwise.

    EarlyStopping (with the epoch and its monitored value), ``max_time`` and ``max_steps``.
    A signal and a diverging loss have their own messages.
    """
    epoch = trainer.current_epoch - 1  # the last epoch trained, numbered from 0
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            # Lightning 2.6 words the reason (patience, threshold, divergence, not finite).
            why = getattr(callback, "stopping_reason_message", None) or (
                f"{callback.monitor} did not improve in {callback.patience} validations; best "
                f"{float(callback.best_score):.4g}"
            )
            why = why.replace(" Signaling Trainer to stop.", "").rstrip(".")
            return "EarlyStopping", f"after epoch {callback.stopped_epoch} by EarlyStopping: {why}"
    max_epochs = trainer.max_epochs
    if max_epochs not in (None, -1) and trainer.current_epoch >= max_epochs:
        return None
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None and remaining <= 0:
        return "max_time", f"after epoch {epoch}: the time limit max_time was reached"
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return "max_steps", f"after epoch {epoch}: max_steps={trainer.max_steps} reached"
    return None


def stage_metrics(trainer: pl.Trainer, *stages: str) -> dict[str, float]:
    """The epoch-level metrics of ``stages`` that the trainer holds now."""
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.split("/")[0] in stages and not name.endswith("_step")
    }


@dataclass
class Results:
    """What a command reports: its metrics, under a heading that says what they are measured
    on; its checkpoint files; what stopped it early, and what the hyperparameters tab records
    of that."""

    metrics: dict[str, float]
    paths: dict[str, str]
    heading: str | None = None
    stopped: str | None = None
    outcome: dict[str, HParam] = field(default_factory=dict)


def fit_results(trainer: pl.Trainer) -> Results:
    """The results of the fit that ``trainer`` has just ended, before any test after it.

    The validation metrics are those at the best checkpoint where the first process can read
    them, else those of the last epoch. Read before testing: loading the best checkpoint
    restores the checkpoint callback's state too.
    """
    metrics = stage_metrics(trainer, "val")
    heading = f"At the last epoch ({trainer.current_epoch - 1}):"
    paths = checkpoint_paths(trainer)
    stopped = stop_reason(trainer)
    run_dir = trainer.log_dir  # a broadcast from the first process: every process asks
    best = None
    if trainer.is_global_zero and run_dir and not trainer.fast_dev_run:
        best = best_validation(trainer, Path(run_dir))
    if best is not None:
        heading, metrics = best
    if stopped is None:
        return Results(metrics, paths, heading)
    outcome = {STOPPED_BY: stopped[0], STOPPED_AT: trainer.current_epoch - 1}
    return Results(metrics, paths, heading, stopped[1], outcome)


def evaluation_results(trainer: pl.Trainer, stage: str, ckpt_path: object) -> Results:
    """The results of ``validate`` or ``test``: the stage's metrics, of the checkpoint given."""
    return Results(stage_metrics(trainer, stage), {"Checkpoint": str(ckpt_path or "")})


def tell(trainer: pl.Trainer, settings: dict[str, HParam], results: Results, run_dir: str) -> None:
    """Fill TensorBoard's hyperparameters tab with the run's ``settings`` and ``results``, and
    print the summary."""
    write_hparams(trainer, settings | results.outcome, sorted(results.metrics))
    text = summary(
        trainer, results.metrics, results.paths, run_dir, results.heading, results.stopped
    )
    print(text, flush=True)


def run_directory(trainer: pl.Trainer) -> None:
    """Where the run goes, in full: a user who started elsewhere than the repository's root
    sees at once where lightning_logs/ is."""
    log_dir = getattr(trainer.logger, "log_dir", None)
    if trainer.is_global_zero and log_dir:
        print(f"Run directory: {Path(log_dir).resolve()}", flush=True)


def predictions(trainer: pl.Trainer) -> None:
    """Where ``predict`` wrote its predictions."""
    writer = next((cb for cb in trainer.callbacks if isinstance(cb, PredictionWriter)), None)
    if writer is not None and writer.path is not None:
        print(f"Predictions: {writer.path}", flush=True)


def continue_command(config: Mapping[str, Any]) -> str:
    """The command that continues the run of this ``fit`` from its last checkpoint."""
    command = "python -m experiments fit"
    first = Path(str(config["config"][0])) if config.get("config") else None
    if first is not None and RunPath.of_config(first) is not None:
        return f"{command} --config {first}"  # that run, however many have started since
    if first is not None:
        command += f" --config {first}"
    if config.get("experiment") and (first is None or config["experiment"] != first.stem):
        command += f" --experiment {config['experiment']}"
    return f"{command} --ckpt_path last"


def nothing_to_train(done: NothingToTrainError, config: Mapping[str, Any]) -> str:
    """What a ``fit`` says that resumed a run which had already reached its end, and how to
    train it further."""
    run = RunPath.of_checkpoint(done.checkpoint, resolve=False)
    name = f"the run {run}" if run is not None else done.checkpoint
    reached = done.reached
    return (
        f"Nothing to train: {name} has trained {reached.trained}, and {reached.limit}.\n"
        f"To train further: {continue_command(config)} {reached.option} {reached.further}"
    )


def interrupted(trainer: pl.Trainer, signum: int, config: Mapping[str, Any]) -> NoReturn:
    """Say where the stopped run's checkpoint is and how to continue; exit with 128 + signum."""
    paths = checkpoint_paths(trainer)
    if trainer.is_global_zero:
        print(
            f"Stopped by {signal.Signals(signum).name} after epoch "
            f"{trainer.current_epoch - 1}: checkpoint {paths.get('Last', '(none)')}\n"
            f"Continue with: {continue_command(config)}",
            flush=True,
        )
    raise SystemExit(128 + signum)


def forced_stop(trainer: pl.Trainer | None, signum: int, config: Mapping[str, Any]) -> NoReturn:
    """After a second signal, which stopped training at once: name the last complete checkpoint
    (the one of the last finished epoch) and how to continue; exit with 128 + signum."""
    last = None
    if trainer is not None and trainer.is_global_zero:
        last = checkpoint_paths(trainer).get("Last")
    if trainer is None or trainer.is_global_zero:
        complete = last and Path(last).is_file()
        found = f"last complete checkpoint {last}" if complete else "no complete checkpoint yet"
        print(
            f"Stopped at once by a second {signal.Signals(signum).name}: {found}\n"
            f"Continue with: {continue_command(config)}",
            flush=True,
        )
    raise SystemExit(128 + signum)
