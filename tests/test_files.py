"""The user's own data: CSV and .npz files train, resume exactly, predict new rows, and bad
files are refused in one line naming the file and what is wrong."""

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import LightningModule

from datamodules import ArrayData, CsvData, DataFileError
from models import load_predictor
from tests.conftest import NO_TEST, config, curves, run_dir

FEATURES = ["width", "height", "depth", "weight"]


def write_csv(path, rows: int = 300, seed: int = 0, labels=("ant", "bee", "cat")) -> None:
    """A table of four features and a label that a linear rule of the features decides."""
    generator = np.random.default_rng(seed)
    x = generator.standard_normal((rows, 4)) * [1.0, 10.0, 0.1, 100.0] + [0.0, 50.0, 1.0, 0.0]
    scores = (x - x.mean(0)) / x.std(0) @ generator.standard_normal((4, len(labels)))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "species", "size"])
        for row, score in zip(x, scores, strict=True):
            writer.writerow(
                [*(f"{v:.5f}" for v in row), labels[score.argmax()], f"{row.sum():.4f}"]
            )


def csv_experiment(tmp_path, kind: str = "classification", **data: object) -> str:
    """An experiment YAML training mlp_classification's (or a regression) network on data.csv."""
    name = "mlp_classification" if kind == "classification" else "two_layer_relu"
    base = yaml.safe_load(Path(config(name)).read_text())
    target = "species" if kind == "classification" else "size"
    base["data"] = {
        "class_path": "datamodules.CsvData",
        "init_args": {
            "path": str(tmp_path / "data.csv"),
            "target": target,
            "features": FEATURES,
            "kind": kind,
            "batch_size": 32,
            **data,
        },
    }
    base["trainer"]["max_epochs"] = 4
    path = tmp_path / f"own_{kind}.yaml"
    path.write_text(yaml.safe_dump(base))
    write_csv(tmp_path / "data.csv")
    return str(path)


def test_labels_become_classes_and_shapes_come_from_the_file(tmp_path):
    write_csv(tmp_path / "data.csv")
    data = CsvData(str(tmp_path / "data.csv"), target="species", kind="classification")
    assert data.input_shape == (5,)  # the file is read when a shape is first asked for
    assert data.features == [*FEATURES, "size"]  # null: every column but the target
    assert data.classes == ["ant", "bee", "cat"]
    assert (data.input_shape, data.num_outputs, data.num_classes) == ((5,), 3, 3)
    regression = CsvData(
        str(tmp_path / "data.csv"), target=["width", "size"], features=FEATURES[1:]
    )
    assert (regression.input_shape, regression.num_outputs) == ((3,), 2)
    assert not hasattr(regression, "num_classes")  # so the CLI links none into the task


def test_a_regression_table_is_read_without_a_warning(tmp_path):
    write_csv(tmp_path / "data.csv")
    data = CsvData(str(tmp_path / "data.csv"), target="size", features=FEATURES, kind="regression")
    # torch warns once per process of a tensor over a read-only array (pandas' column views
    # are, under copy-on-write): the arrays themselves are checked as well.
    frame = data.table(data.path, None)
    assert data.numbers(frame, ["size"], data.path).flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.setup("fit")
    assert data.splits["train"].tensors[1].shape[1:] == (1,)


def test_standardisation_is_fitted_on_the_training_split_only(tmp_path):
    write_csv(tmp_path / "data.csv")
    data = CsvData(str(tmp_path / "data.csv"), target="species", kind="classification")
    data.setup("fit")
    raw_train = data.raw_splits["train"].tensors[0]
    assert torch.allclose(data.mean, raw_train.mean(0))
    assert torch.allclose(data.splits["train"].tensors[0].mean(0), torch.zeros(5), atol=1e-5)
    raw_val = data.raw_splits["val"].tensors[0]
    assert torch.allclose(data.splits["val"].tensors[0], (raw_val - data.mean) / data.std)
    # A checkpoint's statistics are the ones used from then on, whatever the file gives.
    state = data.state_dict()
    other = CsvData(str(tmp_path / "data.csv"), target="species", kind="classification", seed=5)
    other.setup("fit")
    other.load_state_dict(state)
    assert torch.equal(other.mean, data.mean)


@pytest.mark.parametrize(
    ("shape", "network", "kind"),
    [
        ((6,), {"class_path": "models.MLP", "init_args": {"hidden_sizes": [8]}}, "regression"),
        ((2, 8, 8), {"class_path": "models.CNN", "init_args": {"channels": [4]}}, "classification"),
        ((5, 3), {"class_path": "models.RecurrentNet"}, "classification"),
    ],
    ids=["vectors", "images", "sequences"],
)
def test_arrays_of_any_sample_shape_train_their_network(run_cli, tmp_path, shape, network, kind):
    generator = np.random.default_rng(0)
    x = generator.standard_normal((120, *shape)).astype(np.float32)
    y = generator.integers(0, 3, 120) if kind == "classification" else x.reshape(120, -1)[:, :2]
    np.savez(tmp_path / "arrays.npz", inputs=x, y=y)
    task = "models.ClassificationTask" if kind == "classification" else "models.RegressionTask"
    data = {"path": str(tmp_path / "arrays.npz"), "x_key": "inputs", "kind": kind}
    cli = run_cli(
        "fit",
        "--config",
        config("mlp_classification"),
        "--model.class_path",
        task,
        f"--model.init_args.network={json.dumps(network)}",
        f"--data={json.dumps({'class_path': 'datamodules.ArrayData', 'init_args': data})}",
        "--trainer.max_epochs",
        "2",
    )
    assert cli.datamodule.input_shape == shape
    assert cli.trainer.global_step == 2 * 3  # 96 training samples in batches of 32
    assert "test/loss" in cli.trainer.callback_metrics


@pytest.mark.slow  # whole runs compared bit for bit
def test_a_csv_run_resumes_bit_for_bit(run_cli, tmp_path, monkeypatch):
    experiment = csv_experiment(tmp_path)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for directory in (straight, resumed):
        directory.mkdir()
    monkeypatch.chdir(straight)
    run_cli("fit", "--config", experiment, *NO_TEST)
    monkeypatch.chdir(resumed)
    run_cli("fit", "--config", experiment, "--trainer.max_epochs", "2", *NO_TEST)
    # The run's own config says two epochs: going further is said on the command line.
    run_cli(
        "fit", "--config", experiment, "--trainer.max_epochs", "4", "--ckpt_path", "last", *NO_TEST
    )
    one, two = (run_dir(root, "own_classification") for root in (straight, resumed))
    first = torch.load(one / "checkpoints/last.ckpt", weights_only=True)
    second = torch.load(two / "checkpoints/last.ckpt", weights_only=True)
    for name, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][name]), name
    assert curves(one) == curves(two)
    # The classes and the feature columns found in the file are part of the run's config.
    saved = yaml.safe_load((one / "config.yaml").read_text())["data"]["init_args"]
    assert (saved["classes"], saved["features"]) == (["ant", "bee", "cat"], FEATURES)


def test_new_rows_are_predicted_with_their_labels_lines_and_probabilities(run_cli, tmp_path):
    experiment = csv_experiment(tmp_path)
    run_cli("fit", "--config", experiment)
    new = tmp_path / "new.csv"
    write_csv(new, rows=5, seed=3)
    with new.open() as handle:  # new rows come without the target, in any column order
        table = list(csv.DictReader(handle))
    with new.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["weight", "depth", "height", "width"])
        writer.writeheader()
        writer.writerows({k: row[k] for k in writer.fieldnames} for row in table)
    cli = run_cli(
        "predict",
        "--config",
        experiment,
        "--ckpt_path",
        "best",
        "--data.init_args.predict_path",
        str(new),
    )
    with open(cli.trainer.log_dir + "/predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "line",
        "class",
        "probability",
        *(f"probability_{c}" for c in ["ant", "bee", "cat"]),
    ]
    assert [int(row["line"]) for row in rows] == [2, 3, 4, 5, 6]
    task = LightningModule.load_from_checkpoint(cli.config.predict.ckpt_path).eval()
    raw = torch.tensor([[float(row[f]) for f in FEATURES] for row in table])
    with torch.no_grad():
        probabilities = task((raw - cli.datamodule.mean) / cli.datamodule.std).softmax(1)
    labels = [["ant", "bee", "cat"][i] for i in probabilities.argmax(1)]
    assert [row["class"] for row in rows] == labels
    assert [float(row["probability_bee"]) for row in rows] == pytest.approx(
        probabilities[:, 1].tolist()
    )


def write(path, text: str) -> None:
    path.write_text(text)


HEADER = "width,height,depth,weight,species,size\n"
GOOD = "1,2,3,4,ant,1\n2,3,4,5,bee,2\n3,4,5,6,ant,3\n4,5,6,7,bee,4\n5,6,7,8,ant,5\n"
CSV_CASES = {
    "missing file": (None, {}, "data.csv: no such file"),
    "empty file": ("", {}, "data.csv: the file is empty"),
    "no rows": (HEADER, {}, "data.csv: the file has no rows of data"),
    "unknown column": (
        HEADER + GOOD,
        {"target": "specie"},
        "no target column 'specie' (did you mean 'species'?)",
    ),
    "not a number": (
        HEADER + GOOD + "6,7,x8,9,bee,6\n",
        {},
        "data.csv: line 7, column 'depth': 'x8' is not a number",
    ),
    "missing value": (
        HEADER + "1,2,3,4,ant,1\n2,,4,5,bee,2\n" + GOOD,
        {},
        "data.csv: line 3, column 'height': a missing value",
    ),
    "a blank column name": (
        HEADER.replace("height", "") + GOOD,
        {},
        "data.csv: line 1: column 2 has no name; name every column in the header row",
    ),
    "ragged rows": (
        HEADER + GOOD + "6,7,8,9,bee,6,7\n",
        {},
        "data.csv: line 7 has 7 values, where the rows before have 6",
    ),
    "one class": (
        HEADER + GOOD.replace("bee", "ant"),
        {},
        "a classification needs at least 2 classes",
    ),
    "text target in a regression": (
        HEADER + GOOD,
        {"target": "species", "kind": "regression"},
        "column 'species': 'ant' is not a number (the target of a regression must be numeric)",
    ),
}


@pytest.mark.parametrize(("text", "data", "message"), CSV_CASES.values(), ids=CSV_CASES.keys())
def test_a_bad_csv_file_is_refused_in_one_line_and_nothing_is_written(
    run_cli, tmp_path, capsys, text, data, message
):
    experiment = csv_experiment(tmp_path, features=None, **data)
    if text is None:
        (tmp_path / "data.csv").unlink()
    else:
        write(tmp_path / "data.csv", text)
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", experiment, "--trainer.default_root_dir", str(tmp_path / "runs"))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith(f"error: {tmp_path / 'data.csv'}: ")
    assert message in line
    assert not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("arrays", "data", "message"),
    [
        ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, {}, "'x' has 4 samples but 'y' has 3"),
        ({"inputs": np.zeros((4, 2)), "y": np.zeros(4)}, {}, "no array 'x'; it holds inputs, y"),
        (
            {"x": np.zeros((4, 2)), "y": np.array(["a", "b", "a", "b"])},
            {"kind": "regression"},
            "the target of a regression must be numeric",
        ),
        (
            {"x": np.array([[1.0, np.nan]] * 4), "y": np.zeros(4)},
            {},
            "'x'[0, 1] is nan: a missing or infinite value",
        ),
    ],
    ids=["different lengths", "missing key", "text regression target", "missing value"],
)
def test_a_bad_array_file_is_refused_naming_the_file(tmp_path, arrays, data, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    data = ArrayData(str(tmp_path / "bad.npz"), **{"kind": "classification", **data})
    with pytest.raises(DataFileError) as refused:
        data.input_shape  # noqa: B018 (reading it reads the file)
    assert str(refused.value).startswith(f"{tmp_path / 'bad.npz'}: ")
    assert message in str(refused.value)


def test_a_predict_file_without_the_training_features_is_refused(run_cli, tmp_path, capsys):
    experiment = csv_experiment(tmp_path)
    run_cli("fit", "--config", experiment, "--trainer.max_epochs", "1", *NO_TEST)
    write(tmp_path / "new.csv", "width,height,weight\n1,2,3\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            "predict",
            "--config",
            experiment,
            "--ckpt_path",
            "last",
            "--data.init_args.predict_path",
            str(tmp_path / "new.csv"),
        )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line == (
        f"error: {tmp_path / 'new.csv'}: it lacks the feature columns ['depth'] of the training "
        f"data {tmp_path / 'data.csv'}; its columns are width, height, weight"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"--data.init_args.features": "[width, height, depth, size]"},
            "trained on the features ['width', 'height', 'depth', 'weight']",
        ),
        (
            {"--data.init_args.classes": "[ant, bee, cat, dog]"},
            "trained on the classes ['ant', 'bee', 'cat']",
        ),
    ],
    ids=["other columns", "other classes"],
)
def test_a_checkpoint_of_other_columns_or_classes_is_refused(
    run_cli, tmp_path, capsys, change, message
):
    experiment = csv_experiment(tmp_path)
    run_cli("fit", "--config", experiment, "--trainer.max_epochs", "1", *NO_TEST)
    last = run_dir(tmp_path, "own_classification") / "checkpoints/last.ckpt"
    ((key, value),) = change.items()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        # The network's outputs follow the classes: a checkpoint of three is refused for four
        # by its weights; the data's own check names the classes.
        run_cli("test", "--config", experiment, "--ckpt_path", str(last), key, value)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith(f"error: {last}: does not fit")
    assert message in line or "in the checkpoint" in line


def test_new_arrays_are_predicted_by_their_index(run_cli, tmp_path):
    generator = np.random.default_rng(0)
    x = generator.standard_normal((100, 6)).astype(np.float32)
    np.savez(tmp_path / "arrays.npz", x=x, y=x[:, :2].sum(1))
    np.savez(tmp_path / "new.npz", x=x[:3] * 2)
    data = {"path": str(tmp_path / "arrays.npz"), "kind": "regression"}
    args = [
        "--config",
        config("two_layer_relu"),
        f"--data={json.dumps({'class_path': 'datamodules.ArrayData', 'init_args': data})}",
    ]
    run_cli("fit", *args, "--trainer.max_epochs", "2", *NO_TEST)
    cli = run_cli(
        "predict",
        *args,
        "--ckpt_path",
        "last",
        "--data.init_args.predict_path",
        str(tmp_path / "new.npz"),
    )
    with open(cli.trainer.log_dir + "/predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["index"] for row in rows] == ["0", "1", "2"]
    # The predictor takes the raw arrays and answers in the target's units, as predict does.
    expected = load_predictor(cli.config.predict.ckpt_path).predict(x[:3] * 2)["prediction"]
    assert [float(row["prediction"]) for row in rows] == pytest.approx(expected.flatten().tolist())


@pytest.mark.slow(seconds=10)  # trains to convergence
def test_scaled_targets_train_the_diabetes_set_and_answers_are_in_its_units(run_cli, tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    diabetes = datasets.load_diabetes()  # targets from 25 to 346: a loss of 3e4 unscaled
    np.savez(tmp_path / "diabetes.npz", x=diabetes.data, y=diabetes.target)
    data = {"path": str(tmp_path / "diabetes.npz"), "kind": "regression"}
    args = [
        "--config",
        config("wine_flavanoids"),
        "--experiment",
        "diabetes",
        f"--data={json.dumps({'class_path': 'datamodules.ArrayData', 'init_args': data})}",
        "--model.init_args.optimizer.init_args.lr",
        "0.001",
        "--trainer.max_epochs",
        "20",
    ]
    cli = run_cli("fit", *args)  # standardize_target is on by default
    metrics = cli.trainer.callback_metrics
    assert metrics["test/r2"] >= 0.45  # unscaled, these settings give about -2.7
    assert metrics["test/loss"] < 1  # the loss is on the scaled targets ...
    assert metrics["test/mae"] > 20  # ... the metrics in the target's units
    cli = run_cli("predict", *args, "--ckpt_path", "best")
    with open(cli.trainer.log_dir + "/predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    predicted = [float(row["prediction"]) for row in rows]
    assert 100 < np.mean(predicted) < 200  # in the target's units, as the targets beside them
    raw_test = cli.datamodule.raw_splits["test"].tensors[0].numpy()
    answers = load_predictor(cli.config.predict.ckpt_path).predict(raw_test)["prediction"]
    assert answers.flatten().tolist() == pytest.approx(predicted, rel=1e-5)
    # The export answers in the target's units too, from the raw arrays.
    run_cli("export", *args, "--ckpt_path", "best", "--format", "onnx")
    import onnxruntime

    exported = next((Path(cli.trainer.log_dir) / "exports").glob("*.onnx"))
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (onnx_answers,) = session.run(None, {"x": raw_test})
    assert onnx_answers.flatten().tolist() == pytest.approx(predicted, rel=1e-5)
