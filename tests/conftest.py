"""Shared fixtures: every test that runs the CLI does so inside its own temporary directory."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def experiments_command(*args: str, quiet: bool = True) -> list[str]:
    """The command line ``python -m experiments ARGS``, without the progress bar if ``quiet``."""
    bar = ["--trainer.enable_progress_bar", "false"] if quiet else []
    return [sys.executable, "-m", "experiments", *args, *bar]


def subprocess_env() -> dict[str, str]:
    """The environment for the CLI in a subprocess: the tests' own modules importable."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_experiments(
    cwd: Path, *args: str, quiet: bool = True, timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Run ``python -m experiments ARGS`` in ``cwd`` to its end; output captured as text."""
    return subprocess.run(
        experiments_command(*args, quiet=quiet),
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def start_experiments(cwd: Path, *args: str, quiet: bool = True, **kwargs: Any) -> subprocess.Popen:
    """Start ``python -m experiments ARGS`` in ``cwd``; output piped as text unless redirected."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        experiments_command(*args, quiet=quiet),
        cwd=cwd,
        env=subprocess_env(),
        text=True,
        **kwargs,
    )
