"""Where a sweep's study lives, and the study itself, with its sampler and pruner.

By default the study is Optuna's journal file, ``lightning_logs/<sweep>/study.journal``, which
processes on one machine (and on several, over a shared file system) append to under a file
lock; Optuna's FAQ advises against SQLite for parallel workers. ``--storage
postgresql://...`` keeps it in PostgreSQL instead, for workers on several machines.
"""

import logging
import time
import warnings
from pathlib import Path

import optuna
from optuna.pruners import BasePruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from experiments.errors import UserError
from experiments.sweep import database
from experiments.sweep.spec import Sweep

JOURNAL = "study.journal"
CREATION_TRIES = 5  # tries at making the tables where other machines make them too
DEFINITION = "definition"  # the user attribute holding what makes a study a sweep's

# Optuna announces every trial it creates and finishes on its logger; the sweep reports them.
optuna.logging.set_verbosity(logging.WARNING)


def shown(url: str) -> str:
    """``url`` as it may be printed: without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: there is no password to hide
        return url


def storage(url: str | None, sweep_dir: Path, given_as: str = "--storage") -> BaseStorage:
    """The study's storage: the sweep directory's journal file, or the database at ``url``
    (``given_as`` names where the user gave it, for messages).

    The database's connections are checked before each use (SQLAlchemy's ``pool_pre_ping``),
    so that one closed by a server restart is replaced rather than failing a call, and its
    trials keep heartbeats (see :mod:`experiments.sweep.database`).
    """
    if url is None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL)))
    grace = database.grace_period()
    for attempt in range(CREATION_TRIES):
        try:
            with warnings.catch_warnings():
                # Optuna calls heartbeats experimental; the sweep relies on them on purpose.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=database.heartbeat_interval(grace),
                    grace_period=grace,
                )
        except ImportError:
            raise UserError(
                f"{given_as} {shown(url)}: its database driver is not installed; for PostgreSQL: "
                "pip install 'lightning-experiments[postgres]' (psycopg)"
            ) from None
        except Exception as error:  # SQLAlchemy and its drivers raise many kinds
            if database.transient(error):
                why = database.cause(error)
                if "password" in why:
                    why += " (give it in ~/.pgpass or $PGPASSWORD, not in the URL)"
                raise UserError(f"{given_as} {shown(url)}: cannot reach it: {why}") from None
            if not creating_together(error) or attempt == CREATION_TRIES - 1:
                raise UserError(
                    f"{given_as} {shown(url)}: cannot set up Optuna's tables in it: "
                    f"{database.cause(error)}"
                ) from None
            # Another machine made the tables a moment ago: they are there on the next try.
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def creating_together(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL refusing a table (or its type) that another process
    created at the same moment: SQLAlchemy's ``create_all`` looks before it creates, and two
    processes that look together both create."""
    from sqlalchemy import exc

    return isinstance(error, exc.IntegrityError | exc.ProgrammingError) and any(
        words in str(error) for words in ("pg_type_typname_nsp_index", "already exists")
    )


class Grid(GridSampler):
    """Optuna's grid sampler, for trials asked for and told one by one.

    Once the grid is used up, ``GridSampler.after_trial`` calls ``study.stop()``, which Optuna
    allows only inside ``study.optimize``; the sweep's workers ask and tell instead, and stop by
    counting trials themselves (the sweep never asks for more than the grid's points).
    """

    def after_trial(self, study, trial, state, values) -> None:
        pass


def sampler(sweep: Sweep) -> BaseSampler:
    """The sweep's sampler. TPE and random draw from no fixed seed: workers started together
    must not propose the same parameters, as samplers seeded alike would."""
    if sweep.sampler == "grid":
        # Seeded, so a grid is walked in the same order every time; workers never take the
        # same point (each asks with the sweep's lock held, and the grid skips running ones).
        return Grid({key: dim.grid() for key, dim in sweep.space.items()}, seed=0)
    if sweep.sampler == "random":
        return RandomSampler()
    # The constant liar: trials asked for while others run (a population asks for several at
    # once) are not proposed next to the running ones.
    return TPESampler(constant_liar=True)


def pruner(sweep: Sweep) -> BasePruner:
    """Optuna's median rule, with the sweep file's options (see :data:`spec.MEDIAN`), or none."""
    return MedianPruner(**sweep.pruner_options) if sweep.pruner == "median" else NopPruner()


def grid_size(sweep: Sweep) -> int | None:
    """How many points the grid has, for a grid sweep."""
    if sweep.sampler != "grid":
        return None
    size = 1
    for dim in sweep.space.values():
        size *= len(dim.grid())
    return size


def open_study(sweep: Sweep, where: BaseStorage, url: str | None, create: bool) -> optuna.Study:
    """The sweep's study in ``where``; made if ``create`` and it does not exist yet.

    A study made from another version of the sweep file (another space, metric or direction)
    is refused: its trials would not be comparable.
    """
    definition = sweep.definition()
    try:
        study = optuna.load_study(
            study_name=sweep.name, storage=where, sampler=sampler(sweep), pruner=pruner(sweep)
        )
    except KeyError:
        if not create:
            place = shown(url) if url else "its journal file"
            raise UserError(f"no study {sweep.name!r} in {place}: run the sweep first") from None
        study = optuna.create_study(
            study_name=sweep.name,
            storage=where,
            sampler=sampler(sweep),
            pruner=pruner(sweep),
            direction=sweep.direction,
            load_if_exists=True,  # another machine may have made it a moment ago
        )
    stored = study.user_attrs.get(DEFINITION)
    if stored is None:
        study.set_user_attr(DEFINITION, definition)
    elif stored != definition:
        differs = next(
            key for key in ("space", "metric", "direction") if stored[key] != definition[key]
        )
        raise UserError(
            f"{sweep.path}: its {differs} differs from that of the study {sweep.name!r} "
            f"({stored[differs]!r}, now {definition[differs]!r}); give the sweep file another "
            "name, or remove the old study"
        )
    return study
