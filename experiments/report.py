"""What a run tells its user: the terminal summary and TensorBoard's hyperparameters tab."""

import signal
from collections.abc import Mapping
from typing import Any, NoReturn

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

HParam = bool | int | float | str


def flat_hparams(config: Mapping[str, Any]) -> dict[str, HParam]:
    """The run's plain settings for the hyperparameters tab, from its resolved config.

    ``{class_path, init_args}`` nodes become ``name: class_path`` plus ``name.arg`` entries;
    lists become text, and unset (null) values are left out.
    """
    flat: dict[str, HParam] = {}

    def visit(name: str, value: Any) -> None:
        if isinstance(value, Mapping) and "class_path" in value:
            flat[name] = value["class_path"]
            for key, inner in (value.get("init_args") or {}).items():
                visit(f"{name}.{key}", inner)
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                visit(f"{name}.{key}" if name else key, inner)
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif isinstance(value, list | tuple):
            flat[name] = str(list(value))

    model = dict(config.get("model") or {})
    visit("task", {"class_path": model.get("class_path"), "init_args": {}})
    for key, value in (model.get("init_args") or {}).items():
        visit(key, value)
    visit("data", config.get("data"))
    visit("seed", config.get("seed_everything"))
    visit("max_epochs", (config.get("trainer") or {}).get("max_epochs"))
    return flat


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
    trainer: pl.Trainer, metrics: Mapping[str, float], paths: Mapping[str, str], run_dir: str
) -> str:
    """A short table of final metrics, then where the run, its checkpoints and TensorBoard are."""
    lines = []
    if metrics:
        width = max(len(name) for name in metrics)
        lines += [f"{'metric':<{width}}  value", f"{'-' * width}  --------"]
        lines += [f"{name:<{width}}  {value:.4f}" for name, value in sorted(metrics.items())]
        lines.append("")
    lines.append(f"Run:         {run_dir}")
    lines += [f"{label + ':':<12} {path}" for label, path in paths.items() if path]
    save_dir = next(
        (lg.save_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None
    )
    if save_dir:
        lines.append(f"TensorBoard: tensorboard --logdir {save_dir}")
    return "\n".join(lines)


def stage_metrics(trainer: pl.Trainer, *stages: str) -> dict[str, float]:
    """The epoch-level metrics of ``stages`` that the trainer holds now."""
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if name.split("/")[0] in stages and not name.endswith("_step")
    }


def interrupted(trainer: pl.Trainer, signum: int, config: Mapping[str, Any]) -> NoReturn:
    """Say where the stopped run's checkpoint is and how to continue; exit with 128 + signum."""
    paths = checkpoint_paths(trainer)
    if trainer.is_global_zero:
        command = "python -m experiments fit"
        if config.get("config"):
            command += f" --config {config['config'][0]}"
        print(
            f"Stopped by {signal.Signals(signum).name} after epoch "
            f"{trainer.current_epoch - 1}: checkpoint {paths.get('Last', '(none)')}\n"
            f"Continue with: {command} --ckpt_path last",
            flush=True,
        )
    raise SystemExit(128 + signum)
