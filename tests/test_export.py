"""python -m experiments export: a run as one file, preprocessing inside, checked for parity."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from models import load_predictor
from tests.conftest import MLP_RUN, NO_TEST, config
from tests.test_resume import evil_checkpoint

RUN = "lightning_logs/mlp_classification/version_0"


@pytest.mark.parametrize("format", ["onnx", "torchscript", "pt2"])
def test_a_run_exports_and_its_file_answers_as_the_checkpoint(trained, run_cli, capsys, format):
    trained(*MLP_RUN)
    run_cli("export", "--config", config("mlp_classification"), "--ckpt_path", "last",
            "--format", format)  # fmt: skip
    printed = capsys.readouterr().out
    suffix = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}[format]
    path = f"{RUN}/exports/last{suffix}"
    assert f"Exported:    {path}" in printed
    difference = float(printed.split("max |exported - checkpoint| = ")[1].split()[0])
    assert difference <= 1e-5
    # Used without this project: raw inputs in, class probabilities out, names in the metadata.
    x = np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        (answers,) = session.run(None, {"x": x})
        meta = session.get_modelmeta().custom_metadata_map
    else:
        extra = {"metadata.json": ""}
        if format == "torchscript":
            module = torch.jit.load(path, _extra_files=extra)
        else:
            module = torch.export.load(path, extra_files=extra).module()
        answers = module(torch.from_numpy(x)).detach().numpy()
        meta = json.loads(extra["metadata.json"])
    assert json.loads(meta["classes"]) == [0, 1]
    expected = load_predictor(f"{RUN}/checkpoints/last.ckpt")(x).numpy()
    assert np.abs(answers - expected).max() <= 1e-5


class Branchy(nn.Module):
    """Decides on the values of its inputs: torch.export cannot follow that."""

    def __init__(self, input_shape: list[int], num_outputs: int) -> None:
        super().__init__()
        self.layer = nn.Linear(input_shape[0], num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.layer(x)
        return -self.layer(x)


def test_bad_exports_are_refused_in_one_line_and_nothing_is_written(run_cli, tmp_path, capsys):
    mlp = config("mlp_classification")

    def refused(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            run_cli("export", "--config", mlp, *args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        return err[-1]

    assert "export needs a trained run: --ckpt_path best|last|FILE" in refused()
    assert "--ckpt_path best: no best checkpoint to use for experiment" in refused(
        "--ckpt_path", "best"
    )
    marker, evil = tmp_path / "payload-ran", tmp_path / "evil.ckpt"
    evil_checkpoint(evil, marker)
    assert "refused: it holds pickled code or objects" in refused("--ckpt_path", str(evil))
    assert not marker.exists()
    run_cli("fit", "--config", mlp, "--model.init_args.network.class_path",
            "tests.test_export.Branchy", "--trainer.max_epochs", "1", *NO_TEST)  # fmt: skip
    assert "format" in refused("--ckpt_path", "last", "--format", "tflite")
    line = refused("--ckpt_path", "last", "--format", "pt2")
    assert line.startswith("error: Branchy cannot be exported to pt2: ")
    assert line.endswith("try another --format (onnx, torchscript)")
    assert not (tmp_path / RUN / "exports").exists() or not list(
        (tmp_path / RUN / "exports").iterdir()
    )


@pytest.mark.slow(seconds=20)
@pytest.mark.parametrize(
    "experiment", ["recurrent", "cnn", "scratch_two_layer", "linear_regression"]
)
def test_every_kind_of_network_exports(trained_runs, tmp_path, run_cli, capsys, experiment):
    args = ("--config", config(experiment), "--trainer.max_epochs", "1", *NO_TEST)
    trained_runs.copy(tmp_path, *args)
    run_cli("export", "--config", config(experiment), "--ckpt_path", "last", "--format", "pt2")
    assert "Exported:" in capsys.readouterr().out
