"""``python -m experiments.sweep SWEEP.yaml [--trials N] [--workers W] [--storage URL] [--report]``.

The command checks the sweep file against its experiment, opens (or makes) the study, and runs
``W`` workers: this process is one, and starts the others as processes of their own, each with
its share of the CPU cores and, on a machine with several GPUs, a GPU of its own. On Linux
without CUDA they are forks of this process, which has imported Lightning already (3 to 5 s a
process on a 2-core machine); elsewhere, or with ``EXPERIMENTS_SWEEP_SPAWN=1``, fresh ones.
When they are done it prints the results, and writes ``best.yaml`` and the plots beside the
trials. Run again, the same command continues the study: trials stopped or left by a worker
that died go on from their checkpoints, and the study ends with exactly ``N`` finished or
pruned trials.
"""

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from experiments.errors import OneLineParser, UserError, exit_status, reader_gone
from experiments.runpath import log_root

USAGE = "python -m experiments.sweep"
# The study's database URL, where a command line (which every user of the machine can read)
# should not hold it; the workers a sweep starts get it here too.
STORAGE = "EXPERIMENTS_STORAGE"
SPAWN = "EXPERIMENTS_SWEEP_SPAWN"  # 1: workers start as fresh processes, never as forks


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog=USAGE,
        description="Run a hyperparameter sweep: trials are ordinary runs of the experiment, "
        "in lightning_logs/<sweep>/version_<trial>/, the study beside them.",
    )
    parser.add_argument("sweep", type=Path, help="the sweep file, e.g. experiments/sweeps/x.yaml")
    parser.add_argument(
        "--trials", type=int, help="finished or pruned trials to reach (default: the file's)"
    )
    parser.add_argument("--workers", type=int, default=1, help="trials at once on this machine")
    parser.add_argument(
        "--storage",
        help="a database URL for the study (postgresql://user@host/db), for workers on several "
        f"machines; also read from ${STORAGE}, which keeps a password in it off the command "
        "line (libpq's ~/.pgpass and $PGPASSWORD work too); "
        "default: lightning_logs/<sweep>/study.journal",
    )
    parser.add_argument(
        "--population",
        help="trials trained at once as one batched network, or auto (default: the file's "
        "population, else auto)",
    )
    parser.add_argument("--report", action="store_true", help="print the results; run no trial")
    # Set for the workers this command starts: which one, and the directory it found runs in.
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Messages name the storage as the user gave it: the option, or the environment variable.
    args.storage_given_as = "--storage"
    if args.storage is None and os.environ.get(STORAGE):
        args.storage, args.storage_given_as = os.environ[STORAGE], f"${STORAGE}"
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.trials is not None and args.trials < 1:
        parser.error(f"--trials must be at least 1, got {args.trials}")
    return args


def devices_of(worker: int) -> str:
    """A worker's ``--trainer.devices``: a GPU of its own where there are several."""
    import torch

    gpus = torch.cuda.device_count()
    return f"[{worker % gpus}]" if gpus > 1 else "1"


def start_workers(
    args: argparse.Namespace, count: int, root: Path
) -> list["subprocess.Popen | Forked"]:
    """Workers 1 to ``count - 1``, as processes of their own: forks where they can be."""
    if can_fork():
        return [fork_worker(args, index, root) for index in range(1, count)]
    command = [sys.executable, "-m", "experiments.sweep", str(args.sweep), "--workers", str(count)]
    command += ["--root", str(root)]
    if args.trials is not None:
        command += ["--trials", str(args.trials)]
    env = {**os.environ, STORAGE: args.storage} if args.storage else None
    if args.population is not None:
        command += ["--population", args.population]
    # Each worker in a session of its own: a terminal's Ctrl-C reaches only this process, which
    # passes it on once. Were the workers in its process group as well, each would get the
    # signal twice, directly and passed on, and a second signal gives the running epoch up.
    return [
        subprocess.Popen([*command, "--worker", str(index)], env=env, start_new_session=True)
        for index in range(1, count)
    ]


def can_fork() -> bool:
    """Whether workers may be forks of this process.

    Only on Linux (elsewhere system libraries are not safe to fork), with no other thread
    running (a lock one holds would stay held in the fork), and without CUDA, which does not
    survive a fork. OpenMP's threads do not either: the sweep's check runs on one thread
    (:func:`one_thread`), so that no OpenMP thread exists yet when the workers are forked.
    """
    if os.environ.get(SPAWN) == "1" or not sys.platform.startswith("linux"):
        return False
    import torch

    return threading.active_count() == 1 and torch.cuda.device_count() == 0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """PyTorch on one thread inside: a libgomp thread pool started before a fork hangs the
    first parallel operation in the fork (tried: a matrix product after ``os.fork()``)."""
    import torch

    count = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(count)


class Forked:
    """A worker forked from this process: the part of ``subprocess.Popen`` the leader uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)


def fork_worker(args: argparse.Namespace, index: int, root: Path) -> Forked:
    """Worker ``index``, forked: it runs as a started one would, then leaves without running
    anything of the leader's (its ``finally`` blocks, its exit handlers)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else what is buffered would be written twice
    # Signals wait until the fork has its own handlers: the leader's would pass them on.
    leader = os.getpid()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        pid = os.fork()
    finally:
        if os.getpid() == leader:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if pid:
        return Forked(pid)
    status = 1
    try:
        os.setsid()  # a session of its own, as a started worker's (see start_workers)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        status = guarded(argparse.Namespace(**{**vars(args), "worker": index, "root": root}))
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def until_one_ends(processes: Sequence["subprocess.Popen | Forked"], seconds: float) -> None:
    """Sleep ``seconds``, or less if one of ``processes`` that runs now ends meanwhile: its
    trials are then finished, or left to take over."""
    running = [process for process in processes if process.poll() is None]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in running):
            return
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def end_with_the_leader() -> None:
    """Have the kernel send this worker SIGTERM when the process that started it dies, even by
    SIGKILL: the worker then stops after its epoch, checkpointed, as on any SIGTERM (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the leader died before the line above: nobody to outlive
        sys.exit(128 + signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    from experiments.sweep import checks, report, spec, study
    from experiments.sweep.worker import POLL_SECONDS, Worker

    sweep = spec.load(args.sweep, args.trials)
    leading = args.worker is None
    if leading:
        with one_thread():
            root = Path(checks.check(sweep).config.trainer.default_root_dir or ".")
    else:
        root = args.root
    sweep_dir = log_root(root) / sweep.name
    if args.report and args.storage is None and not (sweep_dir / study.JOURNAL).exists():
        raise UserError(
            f"no study {sweep.name!r} in {sweep_dir / study.JOURNAL}: run the sweep first"
        )
    where = study.storage(args.storage, sweep_dir, args.storage_given_as)
    the_study = study.open_study(sweep, where, args.storage, create=leading and not args.report)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    target = sweep.trials
    size = study.grid_size(sweep)
    if size is not None and target > size:
        print(f"the grid has {size} points: {size} trials, not {target}", flush=True)
        target = size
    if args.report:
        print(report.summary(the_study, sweep, sweep_dir, target), flush=True)
        report.write(the_study, sweep, sweep_dir)
        return 0
    index = args.worker or 0
    population = sweep.population
    if args.population is not None:
        population = spec.population_size(args.population, "--population")
    kind = Worker
    options = {}
    if population != 1:
        from experiments.population.worker import PopulationWorker

        kind, options = PopulationWorker, {"population": population}
    worker = kind(
        sweep,
        the_study,
        where,
        sweep_dir,
        target,
        devices=devices_of(index),
        sharing=args.workers,
        **options,
    )
    if not leading:
        end_with_the_leader()
        worker.waits = False
        return worker.run()
    if population == "auto":  # the workers it starts take the size it chose (and say nothing)
        args.population = str(getattr(worker, "population", 1))
    others: list[subprocess.Popen | Forked] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        for process in others:
            if process.poll() is None:
                process.send_signal(signum)
        worker.asked_to_stop(signum, frame)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        others += start_workers(args, args.workers, root)
        if worker.stop is not None:  # asked to stop while they were being started
            for process in others:
                process.send_signal(worker.stop)
        worker.signal_handler = forward
        worker.pause = lambda: until_one_ends(others, POLL_SECONDS)
        status = worker.run()
        for process in others:
            process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    stopped = [p.returncode for p in others if p.returncode and p.returncode >= 128]
    status = status or (stopped[0] if stopped else 0)
    print(report.summary(the_study, sweep, sweep_dir, target), flush=True)
    report.write(the_study, sweep, sweep_dir)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(arguments(argv))


def guarded(args: argparse.Namespace) -> int:
    """:func:`run`, its errors as one line and an exit status."""
    try:
        return run(args)
    except UserError as error:
        return exit_status(error)
    except KeyboardInterrupt:  # Ctrl-C before the workers' own handlers were set: nothing ran
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `| head`: the trials being trained stop, as after a crash
        return reader_gone()
    except Exception as error:
        if not from_the_database(error):
            raise
        from experiments.sweep.database import cause
        from experiments.sweep.study import shown

        return exit_status(
            UserError(f"{args.storage_given_as} {shown(args.storage)}: {cause(error)}", exit_code=1)
        )


def from_the_database(error: BaseException) -> bool:
    """Whether ``error`` is the study's database (or its driver) refusing a call."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(error, SQLAlchemyError | optuna.exceptions.StorageInternalError)
