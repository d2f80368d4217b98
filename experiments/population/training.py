"""One population trained as one Lightning run, its members' outputs written as their own.

The population's own checkpoint, ``lightning_logs/<sweep>/population_<k>/last.ckpt`` (``k``
its first trial's number), is written at the end of every epoch: the stacked weights, the
batched optimizer's state, Lightning's loops, and which trials are still members. A worker
that takes the trials over after a crash resumes the population from it. Each member's run
directory names its population in ``population.json``.
"""

import contextlib
import functools
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
import torch
from lightning.pytorch.callbacks import Callback

from experiments import assembly, fastpath, threads
from experiments.checkpoint import RandomState
from experiments.interrupt import StopOnSignal
from experiments.population import grouping, journal
from experiments.population.model import CLASSIFICATION, REGRESSION, PopulationTask
from experiments.population.outputs import (
    BestFile,
    EpochPoint,
    MemberLog,
    checkpoint_callback_state,
    member_checkpoint,
    save,
    write_text,
)
from experiments.rundir import RunLock
from experiments.runpath import BEST_PREFIX, RunPath
from experiments.settings import flat_hparams
from experiments.sweep import database
from experiments.sweep.worker import quiet_trial

METRICS = {CLASSIFICATION: ("loss", "acc"), REGRESSION: ("loss", "mae", "r2")}
POINTER = "population.json"  # in a member's run directory: the population it trains in


@dataclass
class Outcome:
    """How a member's training ended, as :meth:`Worker.tell` reads a trial's reporter."""

    pruned_at: int | None = None
    interrupted: bool = False


@dataclass
class Member:
    """A trial trained as a member of a population."""

    trial: optuna.Trial
    params: dict[str, Any]
    run: RunPath
    lock: RunLock
    resolved: dict[str, Any] = field(default_factory=dict)
    saved: dict[str, Any] = field(default_factory=dict)
    log: MemberLog | None = None
    best: float | None = None  # the monitored value at the best epoch, and where that was
    best_epoch: int = 0
    best_step: int = 0
    best_point: EpochPoint | None = None  # the loops at the best epoch (unknown after a resume)
    # The random state its single run keeps in its checkpoints: the one left by seeding and
    # building its network, which training without dropout leaves alone.
    random_state: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.trial.number


def population_dir(sweep_dir: Path, first: int) -> Path:
    return sweep_dir / f"population_{first}"


def saved_population(run: RunPath) -> Path | None:
    """The population checkpoint a member's run continues from, if there is one."""
    pointer = run.directory / POINTER
    if not pointer.is_file():
        return None
    checkpoint = run.directory.parent / json.loads(pointer.read_text())["population"] / "last.ckpt"
    return checkpoint if checkpoint.is_file() else None


def saved_members(checkpoint: Path) -> list[int]:
    """The trials that a population checkpoint holds, in their order there."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return list(state["callbacks"][EpochEnd.__qualname__]["trials"])


class EpochEnd(Callback):
    """Hands the end of every training epoch to the population (after validation)."""

    def __init__(self, population: "Population") -> None:
        self.population = population

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.population.epoch_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        members = self.population.members
        return {
            "trials": [m.number for m in members],
            "best": {str(m.number): [m.best, m.best_epoch, m.best_step] for m in members},
            # Scores the database was away for: the population's next run reports them.
            "unreported": {
                str(number): sorted(values.items())
                for number, values in self.population.unreported.items()
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        best = state_dict.get("best", {})
        for member in self.population.members:
            member.best, member.best_epoch, member.best_step = best.get(
                str(member.number), [None, 0, 0]
            )
        self.population.unreported = {
            int(number): dict(values) for number, values in state_dict.get("unreported", {}).items()
        }


class Population:
    """Members sharing one network shape, trained together by a sweep's worker.

    Args:
        worker: The sweep's worker (its study, metric, devices and stop flag).
        members: The trials, in the population's order.
        template: The group's first member as the CLI built it.
        directory: The population's own directory (its checkpoint).
    """

    def __init__(
        self,
        worker: Any,
        members: Sequence[Member],
        template: grouping.Template,
        directory: Path,
    ) -> None:
        self.worker = worker
        self.members = list(members)
        self.template = template
        self.directory = directory
        checkpoint = template.resolved.get("checkpoint") or {}
        self.monitor = checkpoint.get("monitor") or "val/loss"
        self.mode = checkpoint.get("mode") or "min"
        # How often the run's checkpoint callback saves (Lightning keeps it private).
        self.checkpoint_every = max(checkpoint.get("every_n_epochs") or 1, 1)
        self.stop_on_signal = StopOnSignal(pass_on=worker.signal_handler)
        self.appends = worker.appends  # the journal's appends, held an epoch at a time
        # The sweep's output: lines said during training, while the trial's own are silenced.
        self.out = sys.stdout
        # The run's checkpoint callbacks as the members' configs build them: their state keys
        # and settings, for the state the members' checkpoints carry.
        self.checkpoint_callbacks = list(template.cli.trainer.checkpoint_callbacks)
        self.point: EpochPoint | None = None  # the newest epoch's end
        # One thread records every member's heartbeat; a member that leaves is dropped from it.
        self.heartbeat = database.Heartbeat(worker.storage, *(m.trial._trial_id for m in members))
        self.epoch: int | None = None  # the last epoch ended
        self.lost: database.StorageAwayError | None = None  # the database, given up
        self.lost_at: int | None = None  # the epoch after which it was
        self.unreported: dict[int, dict[int, float]] = {}  # trial: epoch: score, not reported

    @property
    def checkpoint(self) -> Path:
        return self.directory / "last.ckpt"

    def say(self, member: Member, text: str) -> None:
        print(f"trial {member.number} {text}", file=self.out, flush=True)

    # Before training ---------------------------------------------------------------------

    def prepare(self, resume: bool) -> list[torch.nn.Module]:
        """Each member's config, run directory and event file; their networks."""
        self.directory.mkdir(parents=True, exist_ok=True)
        purge = 0
        if resume:
            saved = torch.load(self.checkpoint, weights_only=True)
            purge = int(saved["global_step"])
            self.point = EpochPoint.saved(saved)  # until the next epoch's end
        pointer = json.dumps({"population": self.directory.name})
        networks = []
        for member in self.members:
            member.resolved, member.saved = self.template.member(member.params)
            run = member.run
            run.directory.mkdir(parents=True, exist_ok=True)
            config = run.directory / "config.yaml"
            # Not flushed to the disk file by file (a population writes two per member): a
            # crash before the population's first checkpoint trains the member again anyway.
            if not config.is_file():
                write_text(config, self.template.config_text(member.saved))
            write_text(run.directory / POINTER, pointer)
            written = any(run.directory.glob("events.out.tfevents.*"))
            if not resume:  # trained again from the start: what an earlier try left goes
                for old in run.checkpoints.glob("*.ckpt"):
                    old.unlink()
            member.log = MemberLog(run.directory, purge if written else None)
            networks.append(grouping.build_network(member.resolved))
            member.random_state = RandomState().state_dict()
        return networks

    def trainer(self) -> pl.Trainer:
        """The population's Trainer: the members' loop settings, no logger or checkpointing of
        its own (the members' outputs are written here), the user's own callbacks."""
        config = self.template.resolved["trainer"]
        users = assembly.as_list(self.template.cli.config_init.trainer.get("callbacks"))
        return pl.Trainer(
            accelerator=config.get("accelerator") or "auto",
            devices=self.worker.devices,
            max_epochs=config.get("max_epochs"),
            min_epochs=config.get("min_epochs"),
            check_val_every_n_epoch=config.get("check_val_every_n_epoch") or 1,
            deterministic=config.get("deterministic"),
            inference_mode=config.get("inference_mode", True),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[*users, self.stop_on_signal, EpochEnd(self)],
        )

    # Training ----------------------------------------------------------------------------

    def train(self) -> None:
        """Train the population to its end (or to a stop), and tell the study of each member."""
        resume = self.checkpoint.is_file()
        verb = "resumed" if resume else "started"
        networks = self.prepare(resume)
        numbers = ", ".join(str(m.number) for m in self.members)
        print(f"{self.directory.name} {verb}: trials {numbers} as one population", flush=True)
        for member in self.members:
            settings = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in member.params.items())
            self.say(member, f"{verb} in {self.directory.name}: {settings} ({member.run})")
        config = self.template.resolved
        optimizer = config["model"]["init_args"]["optimizer"]
        module = PopulationTask(
            networks,
            grouping.TASKS[config["model"]["class_path"]],
            optimizer["class_path"],
            [
                m.resolved["model"]["init_args"]["optimizer"].get("init_args") or {}
                for m in self.members
            ],
            log_every_n_steps=config["trainer"].get("log_every_n_steps") or 50,
            scheduler=config["model"]["init_args"].get("lr_scheduler"),
        )
        datamodule = self.template.cli.datamodule
        error = None
        trainer = None
        remove_fast_path = None
        restore_threads = None
        try:
            with self.heartbeat, quiet_trial(), threads.shared_by(self.worker.sharing):
                trainer = self.trainer()
                # The thread policy of a single run, for P networks a step: without it torch's
                # default (a thread per core) made a population of small networks several times
                # slower beside other jobs.
                restore_threads = threads.apply(
                    config.get("threads") or threads.AUTO,
                    self.template.cli.model,
                    datamodule,
                    trainer.num_devices,
                    copies=len(self.members),
                )
                if config.get("fast_path", True):  # --fast_path false: plain Lightning
                    remove_fast_path = fastpath.install(trainer, module)
                trainer.fit(
                    module, datamodule=datamodule, ckpt_path=self.checkpoint if resume else None
                )
                ended = self.stopped() is None and self.lost is None
                if ended and config.get("test_after_fit", True):
                    self.test(trainer, module, datamodule)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C: the epoch is given up
            self.worker.stop = self.worker.stop or signal.SIGINT
        except database.StorageAwayError as away:
            self.lose(away)
        except BrokenPipeError:  # the sweep's reader went away: no failure of the trials'
            raise
        except Exception as failure:  # the population failed; the sweep goes on
            error = f"{type(failure).__name__}: {failure}"
        finally:
            if remove_fast_path is not None:
                remove_fast_path()
            if restore_threads is not None:
                restore_threads()
        self.finish(trainer, module, error)

    def stopped(self) -> int | None:
        return self.worker.stop or self.stop_on_signal.received

    def lose(self, away: database.StorageAwayError) -> None:
        """Give the database up, as the one-trial worker does: the population stops after its
        epoch, checkpointed, and no member is told anything (the worker then exits saying so)."""
        if self.lost is None:
            self.lost, self.lost_at = away, self.epoch
        self.worker.lost = away

    def report(self, member: Member, value: float, epoch: int) -> None:
        """Report the member's score of ``epoch`` to its trial, after those that the database's
        absence kept from it; once the database is given up, keep it for the next run."""
        held = self.unreported.setdefault(member.number, {})
        held[epoch] = value
        if self.lost is not None:
            return
        try:
            for when, score in sorted(held.items()):
                # Retried while the database is away, as the one-trial worker's report is.
                database.patiently(functools.partial(member.trial.report, score, when))
        except database.StorageAwayError as away:
            self.lose(away)
            return
        del self.unreported[member.number]

    def prunes(self, member: Member) -> bool:
        """Whether the pruner stops ``member`` now; no once the database is given up."""
        if self.lost is not None:
            return False
        try:
            return database.patiently(member.trial.should_prune)
        except database.StorageAwayError as away:
            self.lose(away)
            return False

    def epoch_end(self, trainer: pl.Trainer, module: PopulationTask) -> None:
        """Write the epoch's scalars, report to the trials, prune, save the checkpoints."""
        epoch, step = trainer.current_epoch, trainer.global_step
        self.point = EpochPoint.of(trainer)
        self.epoch = epoch
        values = {
            ("train/loss_epoch" if tag == "train/loss" else tag): value
            for tag, value in module.epoch_values("train").items()
        }
        values |= module.epoch_values("val")
        module.reset("val")  # an epoch without validation must not repeat the last one's
        # As Python floats once, not one tensor index a member and value (the same numbers).
        values = {tag: value.tolist() for tag, value in values.items()}
        rates = module.rates()
        if rates is not None:
            # As a single run's task logs it: the rate the next epoch uses (Lightning steps an
            # epoch's scheduler after its last batch, before this hook).
            values["train/lr"] = rates
        steps = [(s, losses.cpu().tolist()) for s, losses in module.step_losses]
        stop = self.stopped() is not None
        keep, pruned = [], []
        score = values.get(self.worker.sweep.metric)
        improved = torch.zeros(len(self.members), dtype=torch.bool)
        with journal.held(self.appends), warnings.catch_warnings():
            # A resumed population repeats the epoch after its checkpoint; Optuna keeps the
            # value reported first.
            warnings.filterwarnings("ignore", message=r".*is already reported.*")
            for index, member in enumerate(self.members):
                if score is not None:
                    self.report(member, score[index], epoch)
        # Judged where the run's checkpoint callback saves: every checkpoint_every epochs.
        saves = (epoch + 1) % self.checkpoint_every == 0
        monitored = values.get(self.monitor) if saves else None
        for index, member in enumerate(self.members):
            for point, losses in steps:
                member.log.scalars(point, {"train/loss_step": losses[index], "epoch": epoch})
            scalars = {tag: value[index] for tag, value in values.items()}
            member.log.scalars(step - 1, scalars | {"epoch": epoch})
            member.log.flush()
            if monitored is not None and self.improves(member, monitored[index]):
                member.best, member.best_epoch = monitored[index], epoch
                member.best_step, member.best_point = step, self.point
                improved[index] = True
            if not stop and score is not None and self.prunes(member):
                pruned.append((index, member))
            else:
                keep.append(index)
        module.remember(improved)
        for index, member in pruned:
            if self.lost is None:  # once the database is given up, none is told (or waited on)
                self.save_best(trainer, module, index, member)
                self.save_last(trainer, module, index, member)
                try:
                    self.tell(member, pruned_at=epoch)
                except database.StorageAwayError as away:
                    self.lose(away)
            if self.lost is not None:  # untold, it stays a member, in the checkpoint
                keep.append(index)
        keep.sort()
        pruned = [(index, member) for index, member in pruned if index not in keep]
        if pruned:
            self.members = [self.members[i] for i in keep]
            if keep:
                module.keep(keep)
            else:
                trainer.should_stop = True
        if self.members:
            partial = self.directory / ".last.ckpt"
            trainer.save_checkpoint(partial)
            # Lightning's writer has no crash-safe mode of its own: written beside, flushed to
            # the disk (this file resumes the population), then renamed.
            with partial.open("rb") as written:
                os.fsync(written.fileno())
            partial.replace(self.checkpoint)
        # Also a signal that came during this epoch's end: it said it stops after this epoch.
        if stop or self.stopped() is not None or self.lost is not None:
            trainer.should_stop = True

    def improves(self, member: Member, value: float) -> bool:
        if member.best is None:
            return True
        return value < member.best if self.mode == "min" else value > member.best

    def best_file(self, member: Member) -> BestFile | None:
        if member.best is None:
            return None
        name = f"{BEST_PREFIX}epoch={member.best_epoch}-step={member.best_step}.ckpt"
        return BestFile(member.run.checkpoints / name, member.best, member.best_epoch)

    def callback_states(self, member: Member, at_best: bool) -> dict[str, Any]:
        """The state of the run's own callbacks, by state key, as its single run's checkpoint
        holds it at its best epoch (``at_best``) or at its newest."""
        best = self.best_file(member)
        states = {RandomState().state_key: member.random_state}
        # A single run saves its best file before its last one: the best file of its first
        # save names no last file.
        saved_last = not at_best or (best is not None and best.epoch >= self.checkpoint_every)
        for callback in self.checkpoint_callbacks:
            last = member.run.last if callback.save_last and saved_last else None
            states[callback.state_key] = checkpoint_callback_state(
                callback, member.run.checkpoints, best, last
            )
        return states

    def save_best(self, trainer, module: PopulationTask, index: int, member: Member) -> None:
        """The member's best checkpoint, from its weights and loops at its best epoch (the
        optimizer's state is the current one: a best checkpoint is evaluated, not resumed)."""
        best = self.best_file(member)
        if best is None:
            return
        best.path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = self.member_state(trainer, module, index, member, at_best=True)
        checkpoint |= {"epoch": member.best_epoch, "global_step": member.best_step}
        save(checkpoint, best.path)
        for old in member.run.checkpoints.glob(f"{BEST_PREFIX}*.ckpt"):
            if old != best.path:
                old.unlink(missing_ok=True)

    def save_last(self, trainer, module, index: int, member: Member) -> None:
        member.run.checkpoints.mkdir(parents=True, exist_ok=True)
        save(self.member_state(trainer, module, index, member), member.run.last)

    def member_state(
        self, trainer, module: PopulationTask, index: int, member: Member, at_best: bool = False
    ) -> dict:
        """The member's checkpoint as its single run's: its ``last.ckpt``, at its newest
        epoch's end, or (``at_best``) its weights and loops at its best epoch."""
        point = (member.best_point if at_best else None) or self.point or EpochPoint.of(trainer)
        weights = module.best_weights(index) if at_best else module.member_weights(index)
        callbacks = self.callback_states(member, at_best=at_best)
        datamodule = self.template.cli.datamodule
        return member_checkpoint(
            point, weights, trainer, index, member.resolved, callbacks, datamodule
        )

    def test(self, trainer: pl.Trainer, module: PopulationTask, datamodule: Any) -> None:
        """Each member's best checkpoint on the test split (one batched pass), as ``fit``
        tests a run after training; last checkpoints first, from the final weights."""
        for index, member in enumerate(self.members):
            self.save_best(trainer, module, index, member)
            self.save_last(trainer, module, index, member)
            if member.best is not None:
                module.load_member(index, module.best_weights(index))
        trainer.test(module, datamodule=datamodule, verbose=False)
        values = module.epoch_values("test")
        for index, member in enumerate(self.members):
            member.log.scalars(trainer.global_step, {t: float(v[index]) for t, v in values.items()})

    # After training ----------------------------------------------------------------------

    def finish(self, trainer: pl.Trainer, module: PopulationTask, error: str | None) -> None:
        """Tell the study of each member still in the population, and let its run go."""
        stopped = self.stopped() is not None and error is None
        untold = []
        for index, member in enumerate(self.members):
            try:
                if stopped or self.lost is not None:
                    if self.lost is None:
                        self.worker.let_go(member)
                    member.log.flush()
                    if trainer is not None and trainer.optimizers:
                        self.save_best(trainer, module, index, member)
                    if self.lost is None:
                        self.say(member, "stopped: it goes on when the sweep is run again")
                    else:
                        untold.append(member.number)
                    continue
                if error is None:
                    if not member.run.last.is_file():
                        self.save_best(trainer, module, index, member)
                        self.save_last(trainer, module, index, member)
                    self.write_hparams(member, trainer.global_step)
                try:
                    self.tell(member, error=error)
                except database.StorageAwayError as away:  # the others are not asked it again
                    self.lose(away)
                    untold.append(member.number)
            finally:
                member.lock.release()
        self.members = []
        if untold:
            numbers = ", ".join(str(n) for n in untold)
            at = self.lost_at
            when = "before its first epoch's end" if at is None else f"after epoch {at}"
            message = f"trials {numbers} of {self.directory.name} stopped {when}, checkpointed"
            self.worker.lost = database.StorageAwayError(self.lost.error, message)

    def write_hparams(self, member: Member, step: int) -> None:
        """Fill the member's hyperparameters tab, as a single run's report does: its settings
        beside the names of its validation and test scalars."""
        from torch.utils.tensorboard.summary import hparams

        kind = grouping.TASKS[member.resolved["model"]["class_path"]]
        names = METRICS[kind]
        tags = sorted(f"{stage}/{name}" for stage in ("val", "test") for name in names)
        for summary in hparams(flat_hparams(member.resolved), dict.fromkeys(tags, 0.0)):
            member.log.summary(step, summary)
        member.log.flush()

    def tell(self, member: Member, pruned_at: int | None = None, error: str | None = None) -> None:
        """Record the member's end in the study and say it, as the worker does for a trial
        trained alone (its lines to the sweep's output, also while training is silenced)."""
        with contextlib.redirect_stdout(self.out):
            self.worker.tell(member, Outcome(pruned_at=pruned_at), error)
        self.heartbeat.drop(member.trial._trial_id)  # its trial has ended
        if pruned_at is not None:
            member.lock.release()
