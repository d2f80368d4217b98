"""A sweep's worker that takes up to ``P`` trials at once and trains those that share their
shapes as one population.

Trials are taken as :class:`experiments.sweep.worker.Worker` takes one: under the sweep's
lock, each with its run's lock held, trials left by a worker that is gone first. A trial whose
population left a checkpoint goes on in that population, with the others of it; a trial left
with a checkpoint of its own (trained alone) goes on alone; the rest are grouped
(:mod:`experiments.population.grouping`). A group of one, or one that cannot be batched,
trains one trial at a time, as the sequential worker trains it, after one line saying why.
"""

import contextlib
from pathlib import Path
from typing import Any

from experiments import threads
from experiments.errors import first_line
from experiments.population import auto, grouping, journal
from experiments.population.training import (
    Member,
    Population,
    population_dir,
    saved_members,
    saved_population,
)
from experiments.sweep.worker import (
    QUIET,
    Claim,
    NoTrial,
    Worker,
    quiet_trial,
)


class PopulationWorker(Worker):
    """A :class:`Worker` that trains up to ``population`` trials at once.

    Args:
        *args: As for :class:`Worker`.
        population: The most trials trained at once.
        **kwargs: As for :class:`Worker`.
    """

    def __init__(self, *args: Any, population: int | str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population = self.auto() if population == "auto" else int(population)
        self.appends = journal.install(self.storage)

    def auto(self) -> int:
        """``population: auto``: the size :func:`auto.choose` gives the sweep's experiment; 1
        where it cannot be batched (said in one line)."""
        args = [*self.sweep.trial_args({}), "--experiment", self.sweep.name, *QUIET]
        try:
            with quiet_trial():
                base = grouping.template(args, 0)
        except Exception as failure:  # the trials will say it in full
            print(f"population auto: one trial at a time ({first_line(failure)})", flush=True)
            return 1
        if base.reason is not None:
            print(f"population auto: one trial at a time: {base.reason}", flush=True)
            return 1
        flops = threads.work_of(base.cli.model, base.cli.datamodule)
        parameters = sum(p.numel() for p in base.cli.model.parameters())
        size = auto.choose(flops, parameters, self.target, self.sharing)
        print(f"population auto: up to {size} trials at once", flush=True)
        return size

    def claim(self) -> list[Claim] | NoTrial:  # type: ignore[override]
        """Up to ``population`` trials to train, taken as :meth:`Worker.claim` takes one."""
        return self.claim_up_to(self.population)

    def holding(self) -> contextlib.AbstractContextManager:
        """The claimed trials' marks in one append to a journal (an append per trial would wait
        on the disk each time)."""
        return journal.held(self.appends)

    def train(self, claims: list[Claim]) -> None:  # type: ignore[override]
        """Train the claimed trials: left-over populations, then groups of new ones."""
        fresh: list[Claim] = []
        resumed: dict[str, list[Claim]] = {}
        for claim in claims:
            checkpoint = saved_population(claim.run) if claim.taken_over else None
            if checkpoint is not None:
                resumed.setdefault(str(checkpoint), []).append(claim)
            elif claim.taken_over and claim.run.last.is_file():
                self.alone(claim)  # trained alone before: it goes on alone
            else:
                fresh.append(claim)
        for checkpoint, group in resumed.items():
            self.resume(checkpoint, group, fresh)
        for group in self.groups(fresh):
            self.population_or_alone(group)

    def resume(self, checkpoint: str, group: list[Claim], fresh: list[Claim]) -> None:
        """Go on with a population from its checkpoint, if this worker holds all its trials."""
        order = saved_members(Path(checkpoint))
        held = {claim.trial.number: claim for claim in group}
        if set(order) != set(held):
            # Some of its trials are elsewhere (finished, or held by another worker): these
            # go on alone, from their own last checkpoint where they left the population with
            # one (its training ended, its end not told), else from the start.
            for claim in group:
                if claim.run.last.is_file():
                    self.alone(claim)
                else:
                    fresh.append(claim)
            return
        claims = [held[number] for number in order]
        self.population_or_alone(claims, Path(checkpoint).parent)

    def groups(self, claims: list[Claim]) -> list[list[Claim]]:
        """Claims in groups of trials that may share a population (an optimizer's flags that
        must match are told apart once the group's optimizer is known)."""
        coarse: dict[str, list[Claim]] = {}
        for claim in claims:
            coarse.setdefault(grouping.group_key(claim.params, None), []).append(claim)
        return list(coarse.values())

    def population_or_alone(self, claims: list[Claim], directory: Any = None) -> None:
        """Train ``claims`` as one population or, where that cannot be, one at a time."""
        if self.set_aside(claims):
            return
        if len(claims) == 1 and directory is None:
            self.alone(claims[0])
            return
        first = claims[0]
        args = [*self.sweep.trial_args(first.params), "--experiment", self.sweep.name]
        args += [*QUIET, "--trainer.devices", self.devices]
        try:
            with quiet_trial():
                template = grouping.template(args, first.trial.number)
        except Exception as failure:  # a config the CLI refuses: the trials alone say it in full
            template, reason = None, str(failure).splitlines()[0]
        else:
            reason = template.reason
        if reason is None:
            optimizer = grouping.get(template.resolved, f"{grouping.OPTIMIZER}.class_path")
            parts: dict[str, list[Claim]] = {}
            for claim in claims:
                parts.setdefault(grouping.group_key(claim.params, optimizer), []).append(claim)
            if len(parts) > 1 and directory is None:
                for part in parts.values():
                    self.population_or_alone(part)
                return
        if reason is not None:
            numbers = ", ".join(str(c.trial.number) for c in claims)
            print(f"trials {numbers} train one at a time: {reason}", flush=True)
            for claim in claims:
                self.alone(claim)
            return
        members = [Member(c.trial, c.params, c.run, c.lock) for c in claims]
        where = directory or population_dir(self.sweep_dir, first.trial.number)
        Population(self, members, template, where).train()

    def alone(self, claim: Claim) -> None:
        """Train one trial as the sequential worker does."""
        if not self.set_aside([claim]):
            Worker.train(self, claim)

    def set_aside(self, claims: list[Claim]) -> bool:
        """Whether this worker stops before training ``claims`` (asked to, or its database is
        away); then they are let go untrained."""
        if self.stop is None and self.lost is None:
            return False
        for claim in claims:
            if self.lost is None:  # with the database away, its heartbeat goes stale instead
                self.let_go(claim)
                self.say(claim, "stopped: it goes on when the sweep is run again")
            claim.lock.release()
        return True
