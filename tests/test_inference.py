"""A trained run in Python: the predictor takes raw inputs and answers as ``predict`` does."""

import csv

import numpy as np
import pandas as pd
import pytest
import torch

from models import InputError, load_predictor
from models.loading import CheckpointError
from tests.conftest import NO_TEST
from tests.test_files import FEATURES, csv_experiment, write_csv
from tests.test_resume import evil_checkpoint


@pytest.fixture
def csv_run(run_cli, tmp_path):
    """A classification trained on data.csv, and the predictions of ``predict`` on new rows."""
    experiment = csv_experiment(tmp_path)
    run_cli("fit", "--config", experiment, "--trainer.max_epochs", "2", *NO_TEST)
    new = tmp_path / "new.csv"
    write_csv(new, rows=6, seed=3)
    cli = run_cli(
        "predict", "--config", experiment, "--ckpt_path", "last",
        "--data.init_args.predict_path", str(new),
    )  # fmt: skip
    with open(cli.trainer.log_dir + "/predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return cli.config.predict.ckpt_path, new, rows


def test_raw_rows_get_the_answers_that_predict_gives(csv_run):
    checkpoint, new, rows = csv_run
    predictor = load_predictor(checkpoint)
    # The raw rows, the features' scales untouched, their columns in another order.
    table = pd.read_csv(new)[["weight", "species", "depth", "width", "height"]]
    answers = predictor.predict(table)
    assert answers["class"] == [row["class"] for row in rows]
    expected = [float(row["probability"]) for row in rows]
    assert answers["probability"].tolist() == pytest.approx(expected, abs=1e-6)
    assert predictor.classes == ["ant", "bee", "cat"]
    # The same rows as an array of the feature columns, in the run's order.
    as_array = predictor(table[FEATURES].to_numpy())
    assert torch.allclose(as_array, answers["probabilities"])
    # The task and the plain network stay reachable; they take standardised inputs.
    assert predictor.task.network is predictor.network
    standardised = (
        torch.tensor(table[FEATURES].to_numpy(), dtype=torch.float32) - predictor.model.mean
    ) / predictor.model.std
    with torch.no_grad():
        assert torch.allclose(predictor.network(standardised).softmax(1), as_array)


def test_inputs_that_do_not_fit_are_refused_in_one_line(csv_run):
    checkpoint, new, _ = csv_run
    predictor, table = load_predictor(checkpoint), pd.read_csv(new)
    for given, message in [
        (
            table.drop(columns=["depth"]),
            "the inputs lack the feature columns ['depth'] that the run was trained on; they "
            "have width, height, weight, species, size",
        ),
        (table[FEATURES].to_numpy()[:, :3], "inputs of shape [6, 3]: this run takes [N, 4]"),
        (table.assign(depth=["x"] * len(table)), "row 0, column 'depth': 'x' is not a number"),
        (table.assign(depth=[float("nan")] * len(table)), "row 0, column 'depth': a missing value"),
    ]:
        with pytest.raises(InputError) as refused:
            predictor(given)
        assert str(refused.value) == message


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    marker, evil = tmp_path / "payload-ran", tmp_path / "evil.ckpt"
    evil_checkpoint(evil, marker)
    with pytest.raises(CheckpointError, match="refused: it holds pickled code or objects"):
        load_predictor(evil)
    assert not marker.exists()


def test_generated_data_needs_no_preprocessing(trained):
    trained("--trainer.max_epochs", "2", *NO_TEST)
    predictor = load_predictor("lightning_logs/mlp_classification/version_0/checkpoints/last.ckpt")
    x = np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32)
    with torch.no_grad():
        expected = predictor.task(torch.from_numpy(x)).softmax(1)
    assert torch.allclose(predictor(x), expected)
    assert predictor.classes == [0, 1]
    with pytest.raises(InputError, match="this run was not trained on named columns"):
        predictor({"a": [1.0]})
