"""Wall time of the commands a user runs: every experiment's ``fit`` and every shipped sweep.

Each command runs as a user starts it, as a fresh process in an empty directory with the YAML
defaults, so its time holds everything: importing PyTorch and Lightning, building the CLI,
training, figures, checkpoints and, for ``fit``, the final test of the best checkpoint. The
sweeps run with ``--workers 2``. ``make run`` after the set-up is ``fit`` of
``mlp_classification``.

Run: ``.venv/bin/python -m benchmarks.wall_times`` (``--experiments cnn --sweeps`` times one
experiment and no sweep).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.sweep import REPO, timed
from experiments.sweep import spec

EXPERIMENTS = sorted(path.stem for path in (REPO / "experiments").glob("*.yaml"))
SWEEPS = sorted(path.stem for path in (REPO / "experiments" / "sweeps").glob("*.yaml"))
# The pair whose ratio is quoted: a small MLP against the CNN, the most work per step.
RATIO = ("cnn", "mlp_classification")


def trials(sweep: str) -> int:
    """The number of trials a shipped sweep runs."""
    return spec.load(REPO / "experiments" / "sweeps" / f"{sweep}.yaml").trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiments", nargs="*", choices=EXPERIMENTS, default=EXPERIMENTS, help="default: all"
    )
    parser.add_argument(
        "--sweeps", nargs="*", choices=SWEEPS, default=SWEEPS, help="default: all; none if empty"
    )
    parser.add_argument("--workers", type=int, default=2, help="the sweeps' --workers")
    args = parser.parse_args(argv)
    python = sys.executable
    commands = {
        f"fit --config experiments/{name}.yaml": [
            python, "-m", "experiments", "fit",
            "--config", str(REPO / "experiments" / f"{name}.yaml"),
        ]
        for name in args.experiments
    }  # fmt: skip
    commands |= {
        f"sweep experiments/sweeps/{name}.yaml --workers {args.workers} "
        f"({trials(name)} trials)": [
            python, "-m", "experiments.sweep",
            str(REPO / "experiments" / "sweeps" / f"{name}.yaml"),
            "--workers", str(args.workers),
        ]
        for name in args.sweeps
    }  # fmt: skip
    width = max(map(len, commands), default=0) + 2
    print(f"{'command':<{width}}{'seconds':>8}")
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for label, command in commands.items():
            # Each in a directory of its own: every command starts from an empty lightning_logs.
            work = Path(tempfile.mkdtemp(dir=directory))
            seconds[label] = timed([command], work)
            print(f"{label:<{width}}{seconds[label]:>8.1f}", flush=True)
    slow, fast = (f"fit --config experiments/{name}.yaml" for name in RATIO)
    if slow in seconds and fast in seconds:
        print(f"{RATIO[0]} / {RATIO[1]}: {seconds[slow] / seconds[fast]:.1f}")


if __name__ == "__main__":
    main()
