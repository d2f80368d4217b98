"""What a run tells its user: the summary on the terminal, and what TensorBoard shows of it
(curves, figures, the hyperparameters tab), asked of the real TensorBoard server over HTTP."""

import io
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments.figures import DPI, FIGURE_SIZE
from experiments.settings import flat_hparams
from tests.conftest import config, fit_in

EPOCHS = 20
RUN = "scratch_two_layer/version_0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TensorBoard:
    """A TensorBoard server on 127.0.0.1 over ``logdir``, stopped on exit."""

    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        executable = Path(sys.executable).with_name("tensorboard")
        self.process = subprocess.Popen(
            [
                str(executable),
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--reload_interval",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def get(self, path: str, **query: str) -> bytes:
        url = f"http://127.0.0.1:{self.port}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()

    def json(self, path: str, **query: str):
        return json.loads(self.get(path, **query))

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_for_run(self, run: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {self.process.stderr.read().decode()}")
            try:
                if run in self.json("/data/runs"):
                    tags = self.json("/data/plugin/scalars/tags").get(run, {})
                    if "test/acc" in tags:  # the whole run has been read
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"TensorBoard did not list {run} within {timeout} s")

    def __enter__(self) -> "TensorBoard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A short scratch_two_layer run (two input features), served by a real TensorBoard."""
    root = tmp_path_factory.mktemp("board")
    epochs = ["--trainer.max_epochs", str(EPOCHS)]
    fit_in(root, "--config", config("scratch_two_layer"), *epochs, "--figures.enabled", "true")
    with TensorBoard(root / "lightning_logs") as server:
        server.wait_for_run(RUN)
        yield server


@pytest.mark.slow  # a TensorBoard server process
def test_the_run_is_listed(board):
    assert board.json("/data/runs") == [RUN]


@pytest.mark.slow  # a TensorBoard server process
def test_curves_have_one_point_per_epoch(board):
    tags = board.json("/data/plugin/scalars/tags")[RUN]
    expected = {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc"}
    assert expected | {"test/loss", "test/acc"} <= set(tags)
    for tag in ("train/loss_epoch", "val/loss", "val/acc"):
        points = board.json("/data/plugin/scalars/scalars", run=RUN, tag=tag)
        assert len(points) == EPOCHS, tag
        steps = [step for _, step, _ in points]
        assert steps == sorted(set(steps)), f"{tag} repeats or goes back in steps"
    # Full batch: one training step per epoch, logged every step.
    assert len(board.json("/data/plugin/scalars/scalars", run=RUN, tag="train/loss_step")) == EPOCHS


@pytest.mark.slow  # a TensorBoard server process
def test_figures_are_in_the_images_tab(board):
    tags = board.json("/data/plugin/images/tags")[RUN]
    assert set(tags) == {"figures/confusion_matrix", "figures/decision_boundary"}
    for tag in tags:
        entries = board.json("/data/plugin/images/images", run=RUN, tag=tag)
        assert len(entries) == EPOCHS // 10  # every 10 epochs, the last one included
        png = board.get("/data/plugin/images/individualImage?" + entries[-1]["query"])
        image = Image.open(io.BytesIO(png))
        assert image.size == (int(FIGURE_SIZE[0] * DPI), int(FIGURE_SIZE[1] * DPI))
        assert np.asarray(image.convert("L")).std() > 5  # drawn, not blank


@pytest.mark.slow  # a TensorBoard server process
def test_hyperparameters_tab_holds_settings_and_final_metrics(board):
    experiment = board.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {
        "task",
        "network",
        "network.hidden_size",
        "optimizer",
        "optimizer.lr",
        "seed",
    } <= hparams
    assert "hp_metric" not in hparams
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert metrics == {"val/loss", "val/acc", "test/loss", "test/acc"}


def test_summary_after_fit_shows_final_metrics_and_paths(run_cli, capsys):
    cli = run_cli("fit", "--config", config("scratch_two_layer"), "--trainer.max_epochs", "30")
    out = capsys.readouterr().out
    test_acc = cli.trainer.callback_metrics["test/acc"].item()
    assert f"test/acc   {test_acc:.4f}" in out
    assert "val/acc " in out
    assert "val/loss " in out
    assert "Best:        lightning_logs/scratch_two_layer/version_0/checkpoints/best-" in out
    assert "Last:        lightning_logs/scratch_two_layer/version_0/checkpoints/last.ckpt" in out


def test_the_hyperparameters_are_the_runs_plain_settings():
    resolved = {
        "seed_everything": 3,
        "trainer": {"max_epochs": 7, "devices": "auto"},
        "model": {
            "class_path": "models.ClassificationTask",
            "init_args": {
                "network": {"class_path": "models.MLP", "init_args": {"hidden_sizes": [5, 2]}},
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
                "lr_scheduler": None,
            },
        },
        "data": {"class_path": "datamodules.FeatureClassificationData", "init_args": {"seed": 1}},
    }
    assert flat_hparams(resolved) == {
        "task": "models.ClassificationTask",
        "network": "models.MLP",
        "network.hidden_sizes": "[5, 2]",
        "optimizer": "torch.optim.SGD",
        "optimizer.lr": 0.1,
        "data": "datamodules.FeatureClassificationData",
        "data.seed": 1,
        "seed": 3,
        "max_epochs": 7,
    }
