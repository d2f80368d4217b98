"""Shared fixtures and helpers: the CLI in-process or in a subprocess, and a run's curves.

Every test that runs the CLI does so inside its own temporary directory. PyTorch, Lightning and
TensorBoard are not imported at the top of this file: with pytest-xdist, the process that hands
tests to the workers loads it too, and has no use for them (4 s of imports).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from experiments.cli import ExperimentCLI

# The networks here do microseconds of arithmetic per step: a second thread per process only
# competes with the other pytest workers and the processes tests start. Set before anything
# imports torch, which reads it once; the processes that tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
# No progress bar, no model summary, and no figures: drawing them costs a fit about 0.3 s, and
# only the tests of figures (which switch them on) look at them.
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
QUIET += ("--figures.enabled", "false")
NO_TEST = ("--test_after_fit", "false")


def quiet(args: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """QUIET, but for figures where ``args`` ask for them either way."""
    return QUIET[:-2] if "--figures.enabled" in args else QUIET


# The run that most tests of a trained run read (the `trained` fixture): the default
# experiment, two epochs, not tested.
MLP_RUN = ("--trainer.max_epochs", "2", *NO_TEST)
# A regression run that holds every regression scalar, validated twice (every 10 epochs), tested.
LINEAR_RUN = ("--config", str(REPO / "experiments" / "linear_regression.yaml"))
LINEAR_RUN += ("--trainer.max_epochs", "20")
Curves = dict[str, list[tuple[int, float]]]


def pytest_configure(config: pytest.Config) -> None:
    """Import Lightning before pytest starts capturing logs, as a command does before anything
    logs: Lightning gives its logger a handler of its own, and stops it propagating, only where
    the root logger has none; under pytest's capture it would propagate, and tests of what it
    prints would see another setting than a user's. Not in the pytest-xdist process that only
    hands tests to the workers."""
    handing_out = getattr(config.option, "numprocesses", None) and not hasattr(
        config, "workerinput"
    )
    if not handing_out:
        import experiments.cli  # noqa: F401


def fit_in(root: Path, *args: str) -> ExperimentCLI:
    """``python -m experiments fit ARGS`` in-process, in ``root``, without progress bar, model
    summary or figures; for fixtures wider than a test, which ``run_cli`` cannot serve."""
    from experiments.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["experiments"])
        patch.chdir(root)
        return main(["fit", *args, *quiet(args)])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (by ``slow(seconds=N)``, then the other slow ones), so that none
    of them starts late and runs alone at the end while the other pytest workers are idle."""

    def expected_seconds(item: pytest.Item) -> float:
        marks = list(item.iter_markers("slow"))
        return max((mark.kwargs.get("seconds", 1.0) for mark in marks), default=0.0)

    items.sort(key=expected_seconds, reverse=True)


class TrainedRuns:
    """Runs that many tests read, each trained once per test session and copied for each test.

    A run is keyed by its ``fit`` arguments. The first test that asks trains it in a cache
    directory; every test gets its own copy of that ``lightning_logs/``, which it may change as
    it likes (continue the run, evaluate it). A run trained under the working directory's
    relative ``lightning_logs`` names nothing outside it, so a copy is a whole run of its own.
    With several pytest workers (``-n``), the cache is shared: a lock lets one worker train
    while the others wait for it.
    """

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def train(self, *args: str, times: int = 1) -> tuple[Path, str]:
        """The directory in which ``fit ARGS`` was trained (``times`` runs of it, one after
        the other: version_0, version_1, ...), and what the last fit printed."""
        key = hashlib.sha256("\0".join([str(times), *args]).encode()).hexdigest()[:16]
        home = self.cache / key
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / f"{key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = home / "printed.txt"
            if not done.exists():
                shutil.rmtree(home, ignore_errors=True)
                home.mkdir()
                for _ in range(times):
                    printed = io.StringIO()
                    with contextlib.redirect_stdout(printed):
                        fit_in(home, *args)
                done.write_text(printed.getvalue())
        return home, done.read_text()

    def copy(self, into: Path, *args: str, times: int = 1) -> str:
        """``into/lightning_logs`` as ``fit ARGS`` leaves it; what the fit printed."""
        home, printed = self.train(*args, times=times)
        copy_tree(home / "lightning_logs", into / "lightning_logs")
        return printed


def copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, files hard-linked together in it (a last.ckpt that is the
    best checkpoint under a second name) hard-linked together in the copy too."""
    first: dict[int, str] = {}

    def copy(src: str, dst: str) -> None:
        inode = os.stat(src).st_ino
        if inode in first:
            os.link(first[inode], dst)
        else:
            shutil.copy2(src, dst)
            first[inode] = dst

    shutil.copytree(source, target, copy_function=copy, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> TrainedRuns:
    """The session's :class:`TrainedRuns`, shared by every worker of one pytest run."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # each worker has a folder of its own below the run's
    return TrainedRuns(base / "trained-runs")


@pytest.fixture
def trained(
    trained_runs: TrainedRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., str]:
    """Copy the run ``fit ARGS`` into ``tmp_path`` (the working directory); what it printed."""
    monkeypatch.chdir(tmp_path)

    def copy(*args: str, times: int = 1) -> str:
        return trained_runs.copy(tmp_path, *args, times=times)

    return copy


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

    from experiments.cli import main

    def run(subcommand: str, *args: str) -> ExperimentCLI:
        return main([subcommand, *args, *quiet(args)])

    return run


def config(name: str) -> str:
    """Absolute path of ``experiments/<name>.yaml``."""
    return str(REPO / "experiments" / f"{name}.yaml")


def run_dir(root: Path, experiment: str, version: int = 0) -> Path:
    """``root/lightning_logs/<experiment>/version_<version>``."""
    return root / "lightning_logs" / experiment / f"version_{version}"


def written_by(events: Path) -> int:
    """The pid in an event file's name: ``events.out.tfevents.<time>.<host>.<pid>.<n>``."""
    return int(events.name.split(".")[-2])


def curves(run: Path, pid: int | None = None) -> Curves:
    """Every scalar series of the run, as TensorBoard reads it (only what ``pid`` wrote, if given).

    A whole run is read as TensorBoard reads a directory: a resumed run's later event files
    hide what an interrupted one wrote after the step it resumed from. Each series is in step
    order (the order of the files and of the points in them is the writers' business).
    """
    if pid is None:
        sources = [Path(run)]
    else:
        sources = [
            p for p in sorted(Path(run).glob("events.out.tfevents.*")) if written_by(p) == pid
        ]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: Curves = {}
    for source in sources:
        events = EventAccumulator(str(source), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return {tag: sorted(points) for tag, points in series.items()}


def last_values(run: Path) -> dict[str, float]:
    """The final point of every scalar series of the run."""
    return {tag: points[-1][1] for tag, points in curves(run).items()}


def experiments_command(*args: str, quiet: bool = True) -> list[str]:
    """The command line ``python -m experiments ARGS``; if ``quiet``, without the progress bar
    and without figures (importing matplotlib and drawing cost a process about a second)."""
    quieter = ["--trainer.enable_progress_bar", "false", "--figures.enabled", "false"]
    return [sys.executable, "-m", "experiments", *args, *(quieter if quiet else [])]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for the CLI in a subprocess: the tests' own modules importable."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


def run_experiments(
    cwd: Path, *args: str, quiet: bool = True, timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess:
    """Run ``python -m experiments ARGS`` in ``cwd`` to its end; output captured as text."""
    kwargs.setdefault("env", subprocess_env())
    return subprocess.run(
        experiments_command(*args, quiet=quiet),
        cwd=cwd,
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
    kwargs.setdefault("env", subprocess_env())
    return subprocess.Popen(experiments_command(*args, quiet=quiet), cwd=cwd, text=True, **kwargs)


class PostgresServer:
    """A throwaway PostgreSQL server that a test may restart, as an administrator would.

    Args:
        url: Its base URL.
        pg_ctl: Its ``pg_ctl``, with what runs it as the server's user.
        data: Its data directory.
        log: Its log file.
        options: The server's own options (its port, its socket's folder, ...).
    """

    def __init__(self, url: str, pg_ctl: list[str], data: Path, log: Path, options: str) -> None:
        self.url, self.pg_ctl, self.data, self.log = url, pg_ctl, data, log
        self.options = options

    def control(self, *args: str) -> None:
        """``pg_ctl -D DATA ARGS``, waiting for it to be done."""
        command = [*self.pg_ctl, "-D", str(self.data), "-w", *args]
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed, the server back at once."""
        # As in start(): the log named.
        self.control("-m", "fast", "-o", self.options, "-l", str(self.log), "restart")

    def start(self) -> None:
        """``pg_ctl start``: back after :meth:`stop`."""
        # Its log named, or the server would keep pg_ctl's output open, and this call would
        # never end.
        self.control("-o", self.options, "-l", str(self.log), "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: gone, until :meth:`start`."""
        self.control("-m", "fast", "stop")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on 127.0.0.1, in a temporary folder.

    The server binaries come from Debian's package (``initdb`` and ``pg_ctl`` on the PATH, or
    under /usr/lib/postgresql). Where there are none the tests that need it skip, saying so,
    unless ``EXPERIMENTS_REQUIRE_POSTGRES`` is set (as CI sets it): then they fail.
    """
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    initdb = shutil.which("initdb") or next((str(b / "initdb") for b in binaries), None)
    if initdb is None or not Path(initdb).exists():
        message = "no PostgreSQL server here (initdb not found); install Debian's postgresql"
        if os.environ.get("EXPERIMENTS_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    pg_ctl = str(Path(os.path.realpath(initdb)).with_name("pg_ctl"))
    home = Path(tempfile.mkdtemp(prefix="experiments-pg-"))
    # initdb refuses to run as root: the server then runs as Debian's postgres user.
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = home / "data"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], **quiet
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    url = f"postgresql://postgres@127.0.0.1:{port}"
    server = PostgresServer(url, [*run_as, pg_ctl], data, home / "log", options)
    server.start()
    try:
        yield server
    finally:
        server.control("-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(postgres_server: PostgresServer) -> str:
    """The base URL of the throwaway PostgreSQL server (see :func:`postgres_server`)."""
    return postgres_server.url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_database(server: str, name: str) -> str:
    """A new, empty database on the ``postgres`` server; its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"
