"""A sweep's worker: takes one trial at a time and trains it as an ordinary run, in-process.

Trial ``n`` is the run ``lightning_logs/<sweep>/version_<n>/``, trained by the CLI as any
``fit`` is, and held, like any run being trained, by its ``run.lock``. A trial that the study
calls running but whose worker is gone (SIGKILL, a machine gone, Ctrl-C) is taken over by the
next worker to look, in its own run directory, from its ``last.ckpt`` if it has one there, as
``fit --ckpt_path`` would. Whether a trial's worker is gone is told by what every worker of the
study sees: with the journal file (one disk for every worker), by its ``run.lock`` being free;
with a database, by the trial's heartbeat in it (:mod:`experiments.sweep.database`), or by its
worker having let it go when it stopped. Taking a trial, new or left over, happens under the
sweep's own lock (``sweep.lock``) and, in PostgreSQL, the study's advisory lock, so that no two
workers take the same one and no more trials are begun than the sweep asks for.
"""

import contextlib
import fcntl
import io
import logging
import os
import signal
import socket
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from lightning.pytorch.callbacks import EarlyStopping
from optuna.trial import FrozenTrial, TrialState

from experiments import threads
from experiments.cli import ExperimentCLI
from experiments.errors import UserError
from experiments.rundir import RunLock
from experiments.runpath import RunPath
from experiments.sweep import database
from experiments.sweep.database import HOLDER, patiently
from experiments.sweep.spec import Sweep

SWEEP_LOCK = "sweep.lock"
POLL_SECONDS = 2.0  # between looks at the study while other workers finish their trials
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep's lock: one worker at a time takes a trial."""
    handle = os.open(sweep_dir / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def best_value(frozen: FrozenTrial, direction: str) -> float | None:
    """A trial's score: the best of the values it reported, one per epoch."""
    values = list(frozen.intermediate_values.values())
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


class TrialReporter(EarlyStopping):
    """Reports the sweep's metric to the trial after every epoch, and stops the run when the
    pruner says so or the worker is asked to stop.

    It is an ``EarlyStopping`` only for where Lightning calls it: callbacks that stop early
    run their epoch-end hooks after the task's own, in which the task logs the epoch's
    training metrics; other callbacks run before it and would see the previous epoch's.
    None of ``EarlyStopping``'s own rule runs, and it keeps no state in checkpoints.
    """

    def __init__(self, trial: optuna.Trial, metric: str, direction: str, worker: "Worker") -> None:
        super().__init__(monitor=metric, mode="max" if direction == "maximize" else "min")
        self.trial, self.metric, self.worker = trial, metric, worker
        self.pruned_at: int | None = None
        self.lost_at: int | None = None  # the epoch after which the database was given up
        self.interrupted = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.metric.startswith("val/"):
            self.report(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.metric.startswith("val/") and not trainer.sanity_checking:
            self.report(trainer)

    def report(self, trainer) -> None:
        value = trainer.callback_metrics.get(self.metric)
        try:
            if value is not None:
                patiently(lambda: self.record(float(value), trainer.current_epoch))
                if patiently(self.trial.should_prune):
                    self.pruned_at = trainer.current_epoch
                    trainer.should_stop = True
        except database.StorageAwayError as away:  # stop here: the epoch's checkpoint comes next
            self.worker.lost = away
            self.lost_at = trainer.current_epoch
            trainer.should_stop = True
        if self.worker.stop is not None:
            self.interrupted = True
            trainer.should_stop = True

    def record(self, value: float, epoch: int) -> None:
        with warnings.catch_warnings():
            # A trial taken over repeats the epoch after its last checkpoint (or all of them,
            # on a machine without its checkpoint): the value is one reported before, and
            # Optuna keeps the first.
            warnings.filterwarnings("ignore", message=r".*is already reported.*")
            self.trial.report(value, epoch)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


@dataclass
class Claim:
    """A trial this worker trains: new, or taken over from a worker that is gone."""

    trial: optuna.Trial
    params: dict[str, Any]
    run: RunPath
    lock: RunLock
    taken_over: bool


class NoTrial(Enum):
    """Why :meth:`Worker.claim` gives no trial to train now."""

    WAIT = "other workers train the last trials, and one may be left to take over"
    DONE = "the study has all its trials"


class Worker:
    """Takes trials of ``sweep`` until the study has ``target`` finished or pruned ones.

    Args:
        sweep: The sweep file.
        study: Its study.
        storage: The study's storage (a journal file, or a database that keeps heartbeats).
        sweep_dir: ``lightning_logs/<sweep>``.
        target: How many finished or pruned trials the study is to have.
        devices: This worker's ``--trainer.devices`` value.
        sharing: How many workers share this machine's CPUs (see :func:`threads.shared_by`).
    """

    def __init__(
        self,
        sweep: Sweep,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        sweep_dir: Path,
        target: int,
        devices: str = "1",
        sharing: int = 1,
    ) -> None:
        self.sweep, self.study, self.storage = sweep, study, storage
        self.sweep_dir, self.target = sweep_dir, target
        self.devices = devices
        self.sharing = sharing
        self.stop: int | None = None  # the signal that asked this worker to stop
        self.lost: database.StorageAwayError | None = None  # the database, given up mid-trial
        self.signal_handler = self.asked_to_stop  # the leading process also tells the others
        # Whether to stay while other workers train the last trials, to take over any whose
        # worker dies. A worker that a sweep command started need not: its leader stays, and
        # it would die with its leader.
        self.waits = True
        self.pause: Callable[[], None] = lambda: time.sleep(POLL_SECONDS)
        self.name = f"{socket.gethostname()} {os.getpid()}"  # what HOLDER says of this worker

    def run_dir(self, number: int) -> RunPath:
        return RunPath.of(self.sweep_dir, number)

    def claim(self) -> Claim | NoTrial:
        """The next trial to train, or why there is none now."""
        claims = self.claim_up_to(1)
        return claims if isinstance(claims, NoTrial) else claims[0]

    def claim_up_to(self, most: int) -> list[Claim] | NoTrial:
        """Up to ``most`` trials to train, left-over ones first, then new ones; or why there
        is none now. Each is marked as this worker's before the claim's lock is let go."""
        with sweep_lock(self.sweep_dir), database.claiming(self.storage, self.study):
            trials = patiently(lambda: self.study.get_trials(deepcopy=False))
            tracked = database.tracked(self.storage)
            stale = database.stale_trial_ids(self.storage, self.study) if tracked else set()
            claims: list[Claim] = []
            for frozen in trials:
                if len(claims) == most:
                    break
                claim = self.left_over(frozen, tracked, stale)
                if claim is not None:
                    claims.append(claim)
            states = Counter(frozen.state for frozen in trials)
            running = states[TrialState.RUNNING]
            free = self.target - sum(states[s] for s in FINISHED) - running
            if not claims and free <= 0:
                return NoTrial.WAIT if running > 0 else NoTrial.DONE
            if not claims and states[TrialState.FAIL] >= self.target:
                raise UserError(
                    f"sweep {self.sweep.name}: {states[TrialState.FAIL]} trials failed; "
                    "stopping (see each one's line above)"
                )
            distributions = {key: dim.distribution() for key, dim in self.sweep.space.items()}
            for _ in range(max(0, min(free, most - len(claims)))):
                trial = patiently(lambda: database.ask(self.study, distributions))
                run = self.run_dir(trial.number)
                run.directory.mkdir(parents=True, exist_ok=True)
                claims.append(
                    Claim(trial, self.decoded(trial.params), run, RunLock(run.directory), False)
                )
            with self.holding():
                for claim in claims:
                    self.hold(claim.trial)
            return claims

    def holding(self) -> contextlib.AbstractContextManager:
        """Where the marks of several claimed trials are written together (nothing here)."""
        return contextlib.nullcontext()

    def left_over(self, frozen: FrozenTrial, tracked: bool, stale: set[int]) -> Claim | None:
        """``frozen`` taken over if it is a running trial whose worker is gone, else ``None``.

        With a database, its worker is gone if it let the trial go, or its heartbeat is stale
        (a worker sets both under the claim's lock, so a trial without either has lost its
        worker before it began); with the journal, if its run.lock is free.
        """
        if frozen.state != TrialState.RUNNING:
            return None
        if tracked and frozen.user_attrs.get(HOLDER) and frozen._trial_id not in stale:
            return None
        run = self.run_dir(frozen.number)
        run.directory.mkdir(parents=True, exist_ok=True)
        lock = RunLock.attempt(run.directory)
        if lock is None:
            return None
        # Optuna has no public way to go on with a running trial from another process (its
        # heartbeat retries start a new trial, a new run directory).
        trial = optuna.Trial(self.study, frozen._trial_id)
        return Claim(trial, self.decoded(frozen.params), run, lock, True)

    def hold(self, trial: optuna.Trial) -> None:
        """Mark ``trial`` as this worker's, and give it a fresh heartbeat, before the claim's
        lock is let go: no other worker may think it free."""
        patiently(lambda: trial.set_user_attr(HOLDER, self.name))
        if database.tracked(self.storage):
            patiently(lambda: self.storage.record_heartbeat(trial._trial_id))

    def let_go(self, claim: Claim) -> None:
        """Say in the study that no worker trains ``claim``'s trial now: the next to look
        takes it over at once, and a report can call it stopped."""
        with contextlib.suppress(database.StorageAwayError):  # then its heartbeat goes stale
            patiently(lambda: claim.trial.set_user_attr(HOLDER, None))

    def decoded(self, params: dict[str, Any]) -> dict[str, Any]:
        return {key: self.sweep.space[key].decode(value) for key, value in params.items()}

    def say(self, claim: Claim, text: str) -> None:
        print(f"trial {claim.trial.number} {text}", flush=True)

    def run(self) -> int:
        """Train trials until the sweep has enough; the exit status (128 + signal if stopped)."""
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self.signal_handler) for signum in signals}
        try:
            while self.stop is None:
                claim = self.claim()
                if claim is NoTrial.WAIT and self.waits:
                    self.pause()
                elif claim in (NoTrial.WAIT, NoTrial.DONE):
                    break
                else:
                    self.train(claim)
                if self.lost is not None:
                    raise self.lost
        except KeyboardInterrupt:  # a second Ctrl-C: the running epoch is given up
            self.stop = self.stop or signal.SIGINT
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0 if self.stop is None else 128 + self.stop

    def asked_to_stop(self, signum: int, frame: FrameType | None) -> None:
        """Stop after the running epoch (its run's own handler stops it), then take no trial;
        a second signal gives the epoch up."""
        if self.stop is not None:
            raise KeyboardInterrupt
        self.stop = signum
        print(
            f"{signal.Signals(signum).name}: stopping after the running epoch; run the same "
            "command again to continue",
            file=sys.stderr,
            flush=True,
        )

    def train(self, claim: Claim) -> None:
        """Train one trial to its end and tell the study how it went."""
        last = claim.run.last
        args = ["fit", *self.sweep.trial_args(claim.params), "--experiment", self.sweep.name]
        args += [*QUIET, "--trainer.devices", self.devices]
        if last.is_file():
            args += ["--ckpt_path", str(last)]
        settings = ", ".join(f"{key.split('.')[-1]}={value}" for key, value in claim.params.items())
        verb = "taken over" if claim.taken_over else "started"
        self.say(claim, f"{verb}: {settings} ({claim.run})")
        reporter = TrialReporter(claim.trial, self.sweep.metric, self.sweep.direction, self)
        error = None
        try:
            with (
                database.Heartbeat(self.storage, claim.trial._trial_id),
                quiet_trial(),
                threads.shared_by(self.sharing),
            ):
                ExperimentCLI(
                    args=args,
                    run_version=claim.trial.number,
                    run_lock=claim.lock,
                    extra_callbacks=[reporter],
                    # The run's own handler stops it at its epoch's end and tells this one too,
                    # so that the worker also stops taking trials.
                    on_signal=self.signal_handler,
                )
        except SystemExit as stopped:  # the CLI stopped at an epoch's end on a signal
            self.stop = self.stop or (int(stopped.code) - 128 if stopped.code else signal.SIGINT)
        except UserError as failure:  # a diverging loss, a full disk: the run said why
            error = str(failure)
        except Exception as failure:  # anything else: the trial failed, the sweep goes on
            error = f"{type(failure).__name__}: {failure}"
        try:
            if self.lost is not None:
                stopped = f"trial {claim.trial.number} stopped after epoch {reporter.lost_at}"
                self.lost = database.StorageAwayError(self.lost.error, f"{stopped}, checkpointed")
            else:
                self.tell(claim, reporter, error)
        finally:
            claim.lock.release()

    def tell(self, claim: Claim, reporter: TrialReporter, error: str | None) -> None:
        """Record the trial's end in the study (an interrupted trial stays running)."""
        if reporter.interrupted or (self.stop is not None and error is None):
            self.let_go(claim)
            self.say(claim, "stopped: it goes on when the sweep is run again")
            return
        number = claim.trial.number
        trials = patiently(lambda: self.study.get_trials(deepcopy=False))
        (frozen,) = (t for t in trials if t.number == number)
        score = best_value(frozen, self.sweep.direction)
        epochs = len(frozen.intermediate_values)
        if error is not None and score is None:
            self.finish(claim, state=TrialState.FAIL)
            self.say(claim, f"failed: {error}")
        elif error is not None or reporter.pruned_at is not None:
            why = (
                f"stopped early ({error})"
                if error
                else f"pruned after {reporter.pruned_at + 1} epochs"
            )
            self.finish(claim, state=TrialState.PRUNED)
            self.say(claim, f"{why}: best {self.sweep.metric} {score:.4f}")
        elif score is None:
            self.finish(claim, state=TrialState.FAIL)
            self.say(claim, f"failed: it never logged {self.sweep.metric}")
        else:
            self.finish(claim, values=score)
            self.say(claim, f"complete: best {self.sweep.metric} {score:.4f} ({epochs} epochs)")

    def finish(self, claim: Claim, **outcome: Any) -> None:
        """``study.tell``; a retry after a lost answer finds the trial finished, and lets it be."""
        patiently(lambda: self.study.tell(claim.trial, skip_if_finished=True, **outcome))


@contextlib.contextmanager
def quiet_trial() -> Iterator[None]:
    """A trial's own report and Lightning's lines stay out of the sweep's output."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    argv = sys.argv
    # The trial's arguments are all LightningCLI is to read (it warns of the sweep's own).
    sys.argv = argv[:1]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.argv = argv
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
