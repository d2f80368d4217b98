"""Shared fixtures: every test that runs the CLI does so inside its own temporary directory."""

from collections.abc import Callable
from pathlib import Path

import pytest

from experiments.cli import ExperimentCLI, main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


@pytest.fixture(scope="session", autouse=True)
def _no_runs_written_to_the_repository():
    """The suite writes only to temporary directories: no lightning_logs/ appears in the repo."""
    before = (REPO / "lightning_logs").exists()
    yield
    assert (REPO / "lightning_logs").exists() == before, "a test wrote lightning_logs/ in the repo"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a real command line: LightningCLI warns when it gets both args and pytest's argv."""
    monkeypatch.setattr("sys.argv", ["experiments"])


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ExperimentCLI]:
    """Run ``python -m experiments`` in-process with cwd = ``tmp_path`` and no progress bar."""
    monkeypatch.chdir(tmp_path)

    def run(subcommand: str, *args: str) -> ExperimentCLI:
        return main([subcommand, *args, *QUIET])

    return run


def config(name: str) -> str:
    """Absolute path of ``experiments/<name>.yaml``."""
    return str(REPO / "experiments" / f"{name}.yaml")
