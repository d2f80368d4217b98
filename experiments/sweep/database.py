"""A study kept in a database server that several machines share: who holds which trial, and
riding out the server's restarts.

Liveness is kept in the database, where every machine sees it: the worker training a trial
records a heartbeat for it (Optuna's own, ``RDBStorage(heartbeat_interval=...)``) while it
trains, and a running trial whose heartbeat is older than the grace period has lost its worker.
A machine's own files (a run's ``run.lock``) say nothing of another machine's trials.

A database that does not answer for a moment (a restart, a failover) is waited for: every call
the workers make is retried with backoff for up to :data:`PATIENCE` seconds.
"""

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage

from experiments.errors import UserError, first_line

T = TypeVar("T")

GRACE = "EXPERIMENTS_SWEEP_GRACE"  # seconds without a heartbeat before a trial is taken over
PATIENCE_VARIABLE = "EXPERIMENTS_SWEEP_PATIENCE"  # seconds a worker waits for the database
# A worker that outlives an outage records its heartbeat again within PATIENCE, plus a backoff
# step and a heartbeat interval, of the last one: the default grace exceeds that, so no live
# trial is taken over because the database was away.
PATIENCE = 120
DEFAULT_GRACE = 180
LONGEST_PAUSE = 8.0  # the backoff's cap, in seconds
HOLDER = "worker"  # the trial's user attribute naming the worker that trains it; None: stopped
# The first key of the PostgreSQL advisory lock a claim holds (the second is the study's id):
# "SW" for sweep, so that the lock stays out of the way of other users of the database.
LOCK_SPACE = 0x5357


def seconds_from(variable: str, default: int) -> int:
    """A whole number of seconds from the environment ``variable``, else ``default``."""
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{variable}={text!r}: expected a whole number of seconds, at least 1")
    return value


def grace_period() -> int:
    """Seconds without a heartbeat after which a running trial's worker counts as gone."""
    return seconds_from(GRACE, DEFAULT_GRACE)


def heartbeat_interval(grace: int) -> int:
    """Seconds between a worker's heartbeats: several fit in the grace period."""
    return max(1, min(10, grace // 4))


def patience() -> int:
    """Seconds a worker waits for a database that does not answer."""
    return seconds_from(PATIENCE_VARIABLE, PATIENCE)


class StorageAwayError(UserError):
    """The study's database did not answer for :func:`patience` seconds.

    Args:
        error: The last error the database gave.
        stopped: What the worker did about it.
    """

    def __init__(self, error: BaseException, stopped: str = "stopped") -> None:
        self.error = error
        super().__init__(
            f"the study's database has not answered for {patience()} s ({cause(error)}): "
            f"{stopped}; run the same command again once it answers",
            exit_code=1,
        )


def cause(error: BaseException) -> str:
    """The first line of the innermost error: what the driver said, not Optuna's wrapping."""
    while error.__cause__ is not None:
        error = error.__cause__
    return first_line(error)


def transient(error: BaseException) -> bool:
    """Whether ``error`` is a lost or refused connection, which a retry may get past."""
    from sqlalchemy import exc

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, exc.OperationalError | exc.InterfaceError):
            return True
        if isinstance(seen, exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__
    return False


def patiently(call: Callable[[], T]) -> T:
    """``call()``, retried with backoff while the database does not answer, for
    :func:`patience` seconds at most; then :class:`StorageAwayError`."""
    start = time.monotonic()
    pause = 0.5
    while True:
        try:
            return call()
        except Exception as error:
            if not transient(error):
                raise
            if time.monotonic() - start + pause > patience():
                raise StorageAwayError(error) from None
            time.sleep(pause)
            pause = min(2 * pause, LONGEST_PAUSE)


def tracked(storage: BaseStorage) -> bool:
    """Whether ``storage`` keeps heartbeats (the sweep's database storage does)."""
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def stale_trial_ids(storage: BaseStorage, study: optuna.Study) -> set[int]:
    """The running trials of ``study`` whose heartbeat is older than the grace period.

    ``_get_stale_trial_ids`` is private: Optuna's public use of it, ``fail_stale_trials``,
    fails those trials, where a sweep goes on with them in their own run directories
    (tests/test_sweep.py's takeover test notices a change upstream).
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    return set(storage._get_stale_trial_ids(study_id))  # type: ignore[attr-defined]


@contextlib.contextmanager
def claiming(storage: BaseStorage, study: optuna.Study) -> Iterator[None]:
    """Hold the study's lock in the database while a worker takes a trial, on any machine.

    A PostgreSQL advisory lock, rather than a compare-and-set on a trial's row: it serializes
    the whole claim (counting the trials, taking over a stale one or asking a new one, and
    recording its first heartbeat), so that no two machines take the same trial and no more
    trials are begun than the sweep asks for, and it needs nothing of Optuna's table layout.
    It is a transaction's lock, on a connection of its own: the server drops it when the claim
    ends, and also when the machine holding it dies. Other databases get no lock here (the
    sweep's ``sweep.lock`` still serializes the workers of one machine).
    """
    if not isinstance(storage, RDBStorage) or storage.engine.dialect.name != "postgresql":
        yield
        return
    from sqlalchemy import text

    study_id = patiently(lambda: storage.get_study_id_from_name(study.study_name))

    def lock():
        connection = storage.engine.connect()
        try:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:space, :study)"),
                {"space": LOCK_SPACE, "study": study_id},
            )
        except BaseException:
            connection.close()
            raise
        return connection

    connection = patiently(lock)
    try:
        yield
    finally:
        # Closing rolls the transaction back, which releases the lock; a connection lost with
        # the server took its lock with it.
        with contextlib.suppress(Exception):
            connection.close()


def ask(study: optuna.Study, distributions: dict) -> optuna.Trial:
    """``study.ask``, without Optuna's warning that heartbeats are meant for ``optimize``:
    the worker records them itself (:class:`Heartbeat`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Heartbeat of storage is supposed")
        return study.ask(distributions)


class Heartbeat:
    """Records the heartbeats of trials in the database while the worker trains them.

    Its own thread rather than Optuna's ``HeartbeatThread``, which ends with a traceback at the
    first error: this one rides out the database's absences, quietly, and the worker's own
    calls decide when the database has been away too long. One thread beats for every trial
    of a population, each in turn (a thread and a connection each would cost a population of
    64 as many), and a member that leaves the population is dropped from it.

    Args:
        storage: The study's storage; without heartbeats, nothing is recorded.
        *trial_ids: The trials' ids in the storage.
    """

    def __init__(self, storage: BaseStorage, *trial_ids: int) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if tracked(self.storage):
            self.thread = threading.Thread(target=self.beat, name="heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()

    def drop(self, trial_id: int) -> None:
        """Record no more heartbeats of ``trial_id`` (its trial has ended)."""
        # A new list, not one changed in place: the thread reads whichever it last saw whole.
        self.trial_ids = [t for t in self.trial_ids if t != trial_id]

    def beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()  # type: ignore[attr-defined]
        while True:  # at once, then every interval
            for trial_id in self.trial_ids:
                if self.stopping.is_set():
                    return
                try:
                    self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                except Exception as error:
                    if transient(error):  # away now: the next beat tries every trial again
                        break
                    # Anything else (a trial the database no longer has) is that trial's
                    # alone: the others are beaten on, and the worker's own calls say it.
            if self.stopping.wait(interval):
                return
