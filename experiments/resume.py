"""Which checkpoint ``--ckpt_path`` means, and whether it fits the configured run.

``last`` and ``best`` name the newest run of the chosen experiment: its ``last.ckpt``, or its
best checkpoint by ``val/loss``. A file inside ``lightning_logs/<experiment>/version_<n>/``
belongs to that run. Resuming or evaluating happens in the run the checkpoint belongs to, so
its curves continue and its results stay together.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from experiments.errors import UserError
from experiments.runpath import LAST, RunPath, runs_of
from models.loading import CheckpointError, read_checkpoint


@dataclass
class Resolved:
    """A checkpoint file and the run directory it belongs to (``None`` if outside any run)."""

    path: Path
    run: Path | None

    @property
    def version(self) -> int | None:
        return RunPath(self.run).version if self.run else None


@dataclass(frozen=True)
class Limit:
    """A limit of training that a run has reached, and how to go further."""

    trained: str  # what the run has trained: "12 epochs", "300 steps"
    limit: str  # the limit reached: "max_epochs is 12"
    option: str  # the option that raises it: "--trainer.max_epochs"
    further: int  # a value of that option that trains further


class NothingToTrainError(Exception):
    """``fit`` resumed a run that has already reached ``max_epochs`` or ``max_steps``.

    Args:
        reached: The limit that the run has reached.
        checkpoint: The checkpoint file it was to resume from.
    """

    def __init__(self, reached: Limit, checkpoint: Path) -> None:
        super().__init__(f"{checkpoint}: trained {reached.trained}, and {reached.limit}")
        self.reached = reached
        self.checkpoint = checkpoint


def limit_reached(checkpoint: dict, max_epochs: int | None, max_steps: int | None) -> Limit | None:
    """The limit (``max_epochs`` or ``max_steps``, as the Trainer reads them) that the
    checkpoint's run has reached; ``None`` if there is training left to do."""
    steps = -1 if max_steps is None else max_steps
    if max_epochs is None:  # the Trainer's default: 1000 epochs unless max_steps is set
        max_epochs = 1000 if steps == -1 else -1
    step = checkpoint.get("global_step", 0)
    if steps != -1 and step >= steps:
        further = 2 * max(step, steps)
        return Limit(f"{step} steps", f"max_steps is {steps}", "--trainer.max_steps", further)
    # An epoch is done once processed: a checkpoint written at its end counts it so (Lightning
    # marks it completed only after the epoch-end hooks that save the checkpoint).
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    done = progress.get("current", {}).get("processed", checkpoint.get("epoch", 0))
    if max_epochs != -1 and done >= max_epochs:
        further = 2 * max(done, max_epochs)
        return Limit(
            f"{done} epochs", f"max_epochs is {max_epochs}", "--trainer.max_epochs", further
        )
    return None


def resolve(ckpt_path: str, subcommand: str, root: Path, experiment: str) -> Resolved:
    """The checkpoint that ``ckpt_path`` names for ``subcommand`` of ``experiment``."""
    if ckpt_path in ("last", "best"):
        if ckpt_path == "best" and subcommand == "fit":
            raise UserError("fit resumes from --ckpt_path last or a .ckpt file, not 'best'")
        for run in runs_of(root / experiment):
            found = run.last if ckpt_path == "last" else run.best()
            if found is not None and found.is_file():
                return Resolved(found, run.directory)
        what = LAST if ckpt_path == "last" else "best checkpoint"
        raise UserError(
            f"--ckpt_path {ckpt_path}: no {what} to use for experiment '{experiment}' under "
            f"{root / experiment} (nothing to resume; train it first with fit)"
        )
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
    run = RunPath.of_checkpoint(path)
    belongs = run is not None and run.experiment == experiment and run.logs == root.resolve()
    return Resolved(path, run.directory if belongs else None)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; any problem becomes a one-line error.

    The file is opened once: a checkpoint replaced or removed by a run that is training reads
    as the complete file that was there when it was opened.
    """
    with path.open("rb") as file:
        try:
            return read_checkpoint(path, file)
        except CheckpointError as error:
            raise UserError(str(error)) from error


def find_and_load(
    ckpt_path: str, subcommand: str, root: Path, experiment: str, found: Resolved | None = None
) -> tuple[Resolved, dict[str, Any]]:
    """:func:`resolve` ``ckpt_path`` (``found``, where the caller has done so already), then
    :func:`load` the file it names.

    A run that is training replaces its best checkpoint when a better one is written: if the
    file found for ``best`` is gone before it is opened, the newest one is looked up again.
    """
    for _ in range(5):
        found = found or resolve(ckpt_path, subcommand, root, experiment)
        try:
            return found, load(found.path)
        except FileNotFoundError:
            if ckpt_path not in ("last", "best"):
                break
            found = None
    raise UserError(f"--ckpt_path {ckpt_path}: the checkpoint file disappeared while being read")


def run_arguments(
    found: Resolved, checkpoint: dict[str, Any], subcommand: str, trainer: Any
) -> dict[str, int]:
    """The logger arguments of the run that the checkpoint belongs to (none for a file from
    elsewhere: a new run, from its weights and training state). A ``fit`` that continues the
    run says so, or raises :class:`NothingToTrainError` if the run has reached the limits of
    ``trainer`` (its config)."""
    if found.run is None:
        return {}
    run = {"version": found.version}
    if subcommand == "fit":
        reached = limit_reached(checkpoint, trainer.max_epochs, trainer.max_steps)
        if reached is not None:
            raise NothingToTrainError(reached, found.path)
        rank_zero_info(resuming_message(found, checkpoint))
        # Hide anything the interrupted run logged after this checkpoint (a crash mid-epoch),
        # so the curves continue from it without repeated steps.
        run["purge_step"] = int(checkpoint.get("global_step", 0))
    return run


def resuming_message(found: Resolved, checkpoint: dict[str, Any]) -> str:
    """What a ``fit`` that continues a run says before it trains."""
    epoch, step = checkpoint.get("epoch", 0), checkpoint.get("global_step", 0)
    return (
        f"Resuming {found.run} from {found.path.name} (epoch {epoch}, step {step}); "
        "anything the run logged after that step is replaced."
    )


def check_network(checkpoint: dict[str, Any], model: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose task or network differs from the configured one."""
    stored = checkpoint.get("hyper_parameters", {})
    if stored.get("_class_path") and model.get("class_path") != stored["_class_path"]:
        raise UserError(
            f"{path}: checkpoint of a {stored['_class_path']}, the config trains a "
            f"{model.get('class_path')}"
        )
    saved, wanted = stored.get("network"), (model.get("init_args") or {}).get("network")
    if not isinstance(saved, dict) or not isinstance(wanted, dict):
        return
    if saved.get("class_path") != wanted.get("class_path"):
        raise UserError(
            f"{path}: checkpoint of network {saved.get('class_path')}, the config builds "
            f"{wanted.get('class_path')}"
        )
    saved_args, wanted_args = saved.get("init_args") or {}, wanted.get("init_args") or {}
    for key in sorted(saved_args.keys() & wanted_args.keys()):
        if _plain(saved_args[key]) != _plain(wanted_args[key]):
            raise UserError(
                f"{path}: network {key} is {saved_args[key]!r} in the checkpoint but "
                f"{wanted_args[key]!r} in the config"
            )


def check_weights(checkpoint: dict[str, Any], model: torch.nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose tensors do not fit the instantiated model."""
    stored = checkpoint["state_dict"]
    expected = model.state_dict()
    missing = sorted(expected.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.keys())
    if missing or unexpected:
        name = (missing or unexpected)[0]
        side = "lacks" if missing else "has an extra"
        raise UserError(f"{path}: does not fit this model: the checkpoint {side} tensor {name}")
    for name, tensor in expected.items():
        if stored[name].shape != tensor.shape:
            raise UserError(
                f"{path}: does not fit this model: {name} is {list(stored[name].shape)} in the "
                f"checkpoint, {list(tensor.shape)} here (was it trained on other data shapes?)"
            )


def check_data(checkpoint: dict[str, Any], datamodule: Any, path: Path) -> None:
    """Refuse a checkpoint of a file datamodule trained on other columns or classes."""
    state = checkpoint.get(type(datamodule).__qualname__)
    mismatch = getattr(datamodule, "mismatch", None)
    if isinstance(state, dict) and mismatch is not None:
        reason = mismatch(state)
        if reason is not None:
            raise UserError(f"{path}: does not fit this data: the checkpoint was {reason}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
