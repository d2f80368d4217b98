"""``python -m experiments export``: a run's checkpoint as one file that needs only its runtime.

The file holds :class:`models.inference.RawInputModel`: the run's input standardisation, the
network, and the output mapping (class probabilities, or values in the target's units), so it
takes raw inputs as the data file holds them. Its metadata say how to read it (the class names,
the feature columns, the input shape) where the format keeps metadata: ONNX's
``metadata_props``, TorchScript's and ``torch.export``'s extra files (``metadata.json``).

The file is written under a hidden name in ``<run>/exports/``, loaded back in its own runtime
(ONNX in onnxruntime) and compared with the checkpoint's answers on the test split; only a file
that agrees within :data:`TOLERANCE` is renamed into place.
"""

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from datamodules import SplitDataModule
from experiments.atomic import partial_name, publish
from experiments.errors import UserError, first_line
from models import Task
from models.inference import Preprocessing, RawInputModel

Format = Literal["onnx", "torchscript", "pt2"]
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
# The largest difference from the checkpoint's answers that an export may have, for answers of
# at most 1 (probabilities, scaled values); larger answers (a target in the hundreds) are
# allowed as much relative to their size: float32 resolves 300 only to 3e-5.
TOLERANCE = 1e-5
METADATA = "metadata.json"  # the extra file that TorchScript and pt2 files carry


@dataclass(frozen=True)
class Exported:
    """An export written: the file, and how far its answers are from the checkpoint's."""

    path: Path
    difference: float
    allowed: float
    samples: int
    runtime: str


def metadata(preprocessing: Preprocessing, task: Task) -> dict[str, str]:
    """What a user of the file needs to read it, as strings (ONNX keeps only strings)."""
    classification = preprocessing.classes is not None
    return {
        "task": type(task).__name__,
        "input": "float32 [batch, " + ", ".join(map(str, preprocessing.input_shape)) + "], raw "
        "(as the data file holds it; the standardisation is inside)",
        "output": "class probabilities [batch, classes]"
        if classification
        else "predictions [batch, outputs] in the target's units",
        "input_shape": json.dumps(list(preprocessing.input_shape)),
        "features": json.dumps(preprocessing.features),
        "classes": json.dumps(preprocessing.classes),
    }


def reference(task: Task, data: SplitDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split's raw inputs, and the checkpoint's answers for them as ``predict``
    gives them: through the data's own preprocessing and the task."""
    raw = data.raw_splits["test"].tensors[0]
    served = data.splits["test"].tensors[0]
    task.target_scale = getattr(data, "target_scale", None)
    with torch.no_grad():
        described = task.describe_predictions(task(served))
    return raw, described.get("probabilities", described.get("prediction"))


def restore(task: Task, data: SplitDataModule, checkpoint: dict[str, Any]) -> None:
    """Put the checkpoint's weights into ``task`` and its data state into ``data``, then set
    the data up: the preprocessing as trained."""
    task.load_state_dict(checkpoint["state_dict"])
    task.eval()
    state = checkpoint.get(type(data).__qualname__)
    if state is not None:
        data.load_state_dict(state)
    data.setup("test")


@contextlib.contextmanager
def quiet_exporter():
    """Keep the exporters' progress lines and advice off the user's screen."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def batch_dimension() -> dict[str, dict[int, Any]]:
    """The inputs' first dimension left free: the file takes any number of samples."""
    return {"x": {0: torch.export.Dim("batch")}}


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, str]) -> None:
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes=batch_dimension(),
        verbose=False,
    )
    program.model.metadata_props.update(meta)
    program.save(str(path))


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def write_torchscript(
    model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, str]
) -> None:
    traced = torch.jit.trace(model, (example,))
    torch.jit.save(traced, str(path), _extra_files={METADATA: json.dumps(meta)})


def run_torchscript(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.jit.load(str(path))(x)


def write_pt2(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, str]) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=batch_dimension())
    torch.export.save(program, str(path), extra_files={METADATA: json.dumps(meta)})


def run_pt2(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(x)


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript, "pt2": write_pt2}
RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript, "pt2": run_pt2}
RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "pt2": "torch.export.load"}


def check_runtime(format: Format) -> None:
    """Refuse ONNX where its packages are missing, naming the extra that installs them."""
    if format != "onnx":
        return
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise UserError(
                f"--format onnx needs the package {module}: pip install -e '.[export]'"
            ) from None


def export(
    task: Task,
    data: SplitDataModule,
    checkpoint: dict[str, Any],
    checkpoint_path: Path,
    run_dir: Path,
    format: Format,
) -> Exported:
    """Write the run's checkpoint as ``<run_dir>/exports/<checkpoint name><suffix>``, checked
    against the checkpoint's answers on the test split; raise :class:`UserError` if the
    network cannot take the format or the file does not agree."""
    check_runtime(format)
    restore(task, data, checkpoint)
    preprocessing = Preprocessing.of_checkpoint(checkpoint, task)
    model = RawInputModel(task.network, preprocessing).eval()
    raw, expected = reference(task, data)
    meta = metadata(preprocessing, task)
    target = run_dir / "exports" / f"{checkpoint_path.stem}{SUFFIXES[format]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_name(target).with_suffix(SUFFIXES[format])
    network = type(task.network).__name__
    try:
        try:
            with quiet_exporter():
                WRITERS[format](model, raw, partial, meta)
        except Exception as error:  # each exporter has its own many exceptions
            raise UserError(
                f"{network} cannot be exported to {format}: {first_line(error)}; try another "
                f"--format ({', '.join(f for f in WRITERS if f != format)})"
            ) from error
        with quiet_exporter():
            answers = RUNNERS[format](partial, raw)
        difference = (answers - expected).abs().max().item()
        allowed = TOLERANCE * max(1.0, expected.abs().max().item())
        if not difference <= allowed:
            raise UserError(
                f"the {format} file of {network} differs from the checkpoint by {difference:.3g} "
                f"on the test split (more than {allowed:.3g}); nothing was written",
                exit_code=1,
            )
        publish(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return Exported(target, difference, allowed, len(raw), RUNTIMES[format])


def report(exported: Exported) -> str:
    """What ``export`` prints."""
    allowed = f"at most {TOLERANCE:g}"
    if exported.allowed > TOLERANCE:
        allowed += f" of the largest answer: {exported.allowed:.3g}"
    return (
        f"Exported:    {exported.path}\n"
        f"Parity:      max |exported - checkpoint| = {exported.difference:.3g} on the "
        f"{exported.samples} test samples ({exported.runtime}; {allowed})"
    )
