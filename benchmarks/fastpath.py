"""What each patch of the fast path saves: a fit with all of them, without each one, without any.

For one workload (an experiment's YAML at a dataset size), ``python -m experiments fit`` runs
in-process with the fast path whole, with each patch left out in turn, and with
``--fast_path false``, interleaved over rounds. Each run reports the ms per training step of
its fastest epoch after the first, validation excluded (as ``benchmarks.train_speed``'s
``project``); the table gives the median over the rounds and each patch's gain, the time that
leaving it out adds to a step.

Run: ``.venv/bin/python -m benchmarks.fastpath`` (``--workload two_layer_relu``, ``--rounds 5``).
"""

import argparse
import logging
import statistics
import sys
from collections.abc import Callable

from benchmarks.train_speed import project_fit
from experiments import fastpath

# Each patch by name: the module that install() reads it from, and its attribute there.
PATCHES: dict[str, tuple[object, str]] = {
    "results.RepeatedLog": (fastpath.results, "cheap_logging"),
    "results.remembered_hook_signatures": (fastpath.results, "remembered_hook_signatures"),
    "hooks.direct_hook_names": (fastpath.hooks, "direct_hook_names"),
    "hooks.skip_unused_batch_hooks": (fastpath.hooks, "skip_unused_batch_hooks"),
    "profiler.no_profiler": (fastpath.profiler, "no_profiler"),
    "progress.throttled_bar": (fastpath.progress, "throttled_bar"),
    "checkpoint.link_last_to_best": (fastpath.checkpoint, "link_last_to_best"),
}


def nothing(*args: object) -> Callable[[], None]:
    """A patch left out: installs nothing, removes nothing."""
    return lambda: None


def fit(name: str, size: int, epochs: int, *extra: str) -> float:
    """ms per training step of the fastest epoch after the first, validation excluded."""
    return project_fit(name, size, epochs, extra).per_step * 1e3


def without(patch: str | None, name: str, size: int, epochs: int) -> float:
    """:func:`fit` with ``patch`` left out of the fast path (``None``: the whole fast path)."""
    if patch == "RunLogger.flush_interval":
        interval, fastpath.FLUSH_INTERVAL = fastpath.FLUSH_INTERVAL, 0.0
        try:
            return fit(name, size, epochs)
        finally:
            fastpath.FLUSH_INTERVAL = interval
    if patch is None:
        return fit(name, size, epochs)
    module, attribute = PATCHES[patch]
    original = getattr(module, attribute)
    setattr(module, attribute, nothing)
    try:
        return fit(name, size, epochs)
    finally:
        setattr(module, attribute, original)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mlp_classification")
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sys.argv = ["experiments"]
    for logger in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    ways: list[str | None] = [None, *PATCHES, "RunLogger.flush_interval", "plain"]
    times: dict[str | None, list[float]] = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way in ways:
            if way == "plain":
                plain = fit(args.workload, args.size, args.epochs, "--fast_path", "false")
                times[way].append(plain)
            else:
                times[way].append(without(way, args.workload, args.size, args.epochs))
    whole = statistics.median(times[None])
    print(f"{args.workload}, N={args.size}, {args.rounds} rounds: ms per training step (median)")
    print(f"{'fast path':<40}{whole:>8.3f}")
    for way in ways[1:]:
        median = statistics.median(times[way])
        label = "plain Lightning (--fast_path false)" if way == "plain" else f"without {way}"
        print(f"{label:<40}{median:>8.3f}   gain {median - whole:+.3f}")


if __name__ == "__main__":
    main()
