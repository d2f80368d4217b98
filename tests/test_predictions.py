"""``predict`` writes one CSV row per sample into the run, matching the model row for row."""

import csv

import pytest
import torch
from lightning.pytorch import LightningModule

from experiments.predictions import PredictionWriter, table
from tests.conftest import config


@pytest.mark.parametrize("name", ["scratch_two_layer", "two_layer_relu"])
def test_predictions_file_matches_the_model_row_for_row(run_cli, tmp_path, capsys, name):
    run_cli("fit", "--config", config(name), "--trainer.max_epochs", "3")
    ckpt = tmp_path / f"lightning_logs/{name}/version_0/checkpoints/last.ckpt"
    cli = run_cli("predict", "--config", config(name), "--ckpt_path", str(ckpt))
    path = cli.trainer.log_dir + "/predictions.csv"
    assert f"Predictions: {path}" in capsys.readouterr().out
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))

    task = LightningModule.load_from_checkpoint(ckpt).eval()
    x, y = cli.datamodule.splits["test"].tensors
    with torch.no_grad():
        outputs = task(x)
    assert len(rows) == len(x)
    assert [int(r["index"]) for r in rows] == list(range(len(x)))
    assert [float(r["target"]) for r in rows] == pytest.approx(y.flatten().tolist())
    if name == "scratch_two_layer":
        probability, predicted = outputs.softmax(1).max(1)
        assert [int(r["class"]) for r in rows] == predicted.tolist()
        assert [float(r["probability"]) for r in rows] == pytest.approx(probability.tolist())
    else:
        assert [float(r["prediction"]) for r in rows] == pytest.approx(outputs.flatten().tolist())


def test_the_table_splits_multi_output_columns_and_keeps_integers():
    header, rows = table(
        {"class": torch.tensor([1, 0]), "prediction": torch.tensor([[0.5, 1.5], [2.0, 3.0]])},
        [4, 9],
    )
    assert header == ["index", "class", "prediction_0", "prediction_1"]
    assert rows == [[4, 1, 0.5, 1.5], [9, 0, 2.0, 3.0]]
    assert isinstance(rows[0][1], int)


def test_the_file_name_must_be_a_plain_name():
    with pytest.raises(ValueError, match=r"filename must be a plain file name, got '\.\./x\.csv'"):
        PredictionWriter("../x.csv")
