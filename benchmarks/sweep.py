"""64 trials of ``mlp_classification``, 30 epochs each, run four ways; wall times and ratios.

The same configurations (4 learning rates x 4 weight decays x 4 seeds) are trained:

* (a) by plain PyTorch scripts in the style of the source material, one after another, each a
  fresh Python process (``benchmarks/plain_mlp.py``), as a user's shell loop would;
* (b) by ``python -m experiments fit`` commands one after another;
* (c) by one ``python -m experiments.sweep --workers 2 --population 1``: 2 workers, one trial
  at a time each;
* (d) by one ``python -m experiments.sweep --workers 2``: 2 workers as (c), each training its
  share of the trials as one batched network (``population: auto``, 32 trials each);
* and, for comparison, (d1) by one ``python -m experiments.sweep --population 64``: one worker,
  the 64 trials as one batched network, the second core idle.

The targets are (d) <= 0.15 x (c) and (d) <= 0.1 x (a). A second table trains populations of
P = 1, 8, 64 and 256 trials (one sweep command each): wall time per trial and the command's
peak memory; and a trial-step inside the largest population is set against a step of the
plain loop.

A third table shows pruning inside a population: 64 trials (a learning rate drawn from 1e-5 to
1e-2, log-uniform, and one of 8 seeds) as two populations of 32 under the median rule. The
first population has no finished trial to be judged against (Optuna's median rule compares a
trial with finished ones); the second is judged against the first after every epoch, its
members that fall behind leave it, and its epochs get shorter: the members' event files give
each epoch's end. (Not in the short check.)

(c), (d) and (d1) are run ``--repeat`` times, one after the other in turn, and their medians
are compared: on a machine that others share, one run of either can be slowed by a second or
more, and a virtual machine's speed drifts over minutes.

Run: ``.venv/bin/python -m benchmarks.sweep`` (``--trials 4`` for a short check).
"""

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RATES = [0.0003, 0.001, 0.003, 0.01]
DECAYS = [0.0, 1e-4, 1e-3, 1e-2]
SEEDS = [0, 1, 2, 3]
EPOCHS = 30
STEPS = 25 * EPOCHS  # 800 training samples in batches of 32
POPULATIONS = (1, 8, 64, 256)
LR = "model.init_args.optimizer.init_args.lr"
DECAY = "model.init_args.optimizer.init_args.weight_decay"
SEED = "seed_everything"
CONFIG = REPO / "experiments" / "mlp_classification.yaml"


def timed(commands: list[list[str]], cwd: Path) -> float:
    """Seconds to run ``commands`` one after another."""
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def peak_mib(command: list[str], cwd: Path) -> tuple[float, float]:
    """Seconds and peak resident memory (MiB) of ``command``, run in a process of its own."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], cwd=cwd, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def sweep_file(path: Path, trials: int, space: dict, **settings: object) -> Path:
    """A sweep of ``mlp_classification``, a grid without pruning unless ``settings`` say."""
    content = {
        "config": str(CONFIG),
        "metric": "val/acc",
        "direction": "maximize",
        "trials": trials,
        "sampler": "grid",
        "pruner": "none",
        "args": ["--trainer.max_epochs", str(EPOCHS), "--figures.enabled", "false"],
        "space": space,
    }
    path.write_text(yaml.safe_dump(content | settings))
    return path


def epoch_ends(sweep_dir: Path, population: str) -> list[tuple[int, int, float]]:
    """Each epoch of ``population`` (in ``sweep_dir``): its members then, and when it ended."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ends: dict[int, list[float]] = {}
    for pointer in sweep_dir.glob("version_*/population.json"):
        if json.loads(pointer.read_text())["population"] != population:
            continue
        events = EventAccumulator(str(pointer.parent), size_guidance={"scalars": 0}).Reload()
        for epoch, event in enumerate(events.Scalars("val/loss")):
            ends.setdefault(epoch, []).append(event.wall_time)
    return [(epoch, len(times), min(times)) for epoch, times in sorted(ends.items())]


def pruning_table(place: Path) -> list[tuple[int, int, float]]:
    """Two populations of 32 under the median rule; the second's epochs: members, seconds."""
    space = {LR: {"low": 1e-5, "high": 1e-2, "log": True}, SEED: list(range(8))}
    median = {"median": {"n_startup_trials": 8, "n_warmup_steps": 2}}
    path = sweep_file(place / "pruned.yaml", 64, space, sampler="random", pruner=median)
    command = [sys.executable, "-m", "experiments.sweep", str(path), "--population", "32"]
    done = subprocess.run(command, cwd=place, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the pruning sweep failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    sweep_dir = place / "lightning_logs" / "pruned"
    populations = sorted(sweep_dir.glob("population_*"), key=lambda d: int(d.name[11:]))
    if len(populations) != 2:
        sys.exit(f"the pruning sweep trained {len(populations)} populations, not 2: {populations}")
    second = populations[1]
    ends = epoch_ends(sweep_dir, second.name)
    return [
        (epoch, members, end - before)
        for (epoch, members, end), (_, _, before) in zip(ends[1:], ends, strict=False)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64, help="the first N configurations")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (c), (d) and (d1) each")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.trials < 1:
        parser.error("--trials and --repeat must be at least 1")
    configs = list(itertools.product(RATES, DECAYS, SEEDS))[: args.trials]
    python = sys.executable
    sweep = [python, "-m", "experiments.sweep"]
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        plain = [
            [python, str(REPO / "benchmarks" / "plain_mlp.py"), str(lr), "50", str(EPOCHS),
             str(decay), str(seed)]
            for lr, decay, seed in configs
        ]  # fmt: skip
        fits = [
            [
                python, "-m", "experiments", "fit", "--config", str(CONFIG),
                "--trainer.max_epochs", str(EPOCHS), f"--{LR}", str(lr), f"--{DECAY}", str(decay),
                "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
                "--figures.enabled", "false",
            ]
            for lr, decay, seed in configs
        ]  # fmt: skip
        space = {
            LR: sorted({c[0] for c in configs}),
            DECAY: sorted({c[1] for c in configs}),
            SEED: sorted({c[2] for c in configs}),
        }
        bench = sweep_file(work / "bench.yaml", len(configs), space)
        for name in "ab":
            (work / name).mkdir()
        startup = timed([[python, "-m", "experiments", "fit", "--help"]], work)
        bare = timed([[python, "-c", "import torch"]], work)
        ways = {
            "(c) sweep, 2 workers": [*sweep, str(bench), "--workers", "2", "--population", "1"],
            "(d) sweep, vectorized": [*sweep, str(bench), "--workers", "2"],
            "(d1) one population": [*sweep, str(bench), "--population", str(len(configs))],
        }
        runs: dict[str, list[float]] = {
            "(a) plain scripts": [timed(plain, work / "a")],
            "(b) experiments fit": [timed(fits, work / "b")],
            **{way: [] for way in ways},
        }
        for turn in range(args.repeat):
            for way, command in ways.items():
                place = work / f"{way[1 : way.index(')')]}{turn}"
                place.mkdir()
                runs[way].append(timed([command], place))
        seconds = {way: statistics.median(values) for way, values in runs.items()}
        table = []
        # The short check (--trials below 64) keeps to the small populations.
        for size in [p for p in POPULATIONS if args.trials >= 64 or p <= 8]:
            place = work / f"p{size}"
            place.mkdir()
            grid = {LR: [0.001], SEED: list(range(size))}
            path = sweep_file(place / f"p{size}.yaml", size, grid)
            wall, peak = peak_mib([*sweep, str(path), "--population", str(size)], place)
            table.append((size, wall, peak))
        # Not in the short check: two populations of 32 take a minute.
        pruning = []
        if args.trials >= 64:
            (work / "pruning").mkdir()
            pruning = pruning_table(work / "pruning")
    a, b, c, d, d1 = seconds.values()
    print(f"{len(configs)} trials of mlp_classification, {EPOCHS} epochs each, wall time:")
    for way, value in seconds.items():
        each = runs[way]
        spread = f"   (median of {', '.join(f'{v:.1f}' for v in each)})" if len(each) > 1 else ""
        print(f"  {way:<24}{value:7.1f} s   {value / len(configs):5.2f} s a trial{spread}")
    print(f"  (c) / (b) = {c / b:.2f};  (c) / (a) = {c / a:.2f}")
    print(f"  (d) / (c) = {d / c:.3f} (target <= 0.15);  (d) / (a) = {d / a:.3f} (target <= 0.1)")
    print(f"  (d1) / (c) = {d1 / c:.3f};  (d1) / (a) = {d1 / a:.3f}")
    print(f"start-up of one process: {startup:.1f} s (python -m experiments fit --help)")
    print("\npopulations of P trials (learning rate 1e-3, P seeds), one sweep command each:")
    print("  P      wall     per trial   peak memory")
    for size, wall, peak in table:
        print(f"  {size:<6}{wall:6.1f} s  {wall / size:7.3f} s   {peak:7.0f} MiB")
    plain_step = (a / len(configs) - bare) / STEPS
    size, wall, _ = table[-1]
    member_step = (wall - startup) / (size * STEPS)
    print(
        f"a step of the plain loop: {plain_step * 1e6:.0f} us (its trial less the import of "
        f"torch); a trial-step in the population of {size}: {member_step * 1e6:.0f} us "
        f"({member_step / plain_step:.3f} x; target <= 0.1), its outputs and start-up included"
    )

    if not pruning:
        return
    print("\npruning: the second of two populations of 32 under the median rule")
    print("  members  epochs   an epoch (median; the epoch that prunes writes the files)")
    for members in sorted({m for _, m, _ in pruning}, reverse=True):
        epochs = [(e, t) for e, m, t in pruning if m == members]
        span = f"{epochs[0][0]}-{epochs[-1][0]}"
        median = statistics.median(t for _, t in epochs)
        print(f"  {members:<9}{span:<9}{median * 1e3:5.0f} ms")


if __name__ == "__main__":
    main()
