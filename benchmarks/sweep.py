"""Sixteen trials of ``mlp_classification``, 30 epochs each, run three ways; wall times and ratios.

The same 16 configurations (4 learning rates x 4 hidden widths) are trained:

* (a) by 16 plain PyTorch scripts in the style of the source material, one after another,
  each a fresh Python process (``benchmarks/plain_mlp.py``), as a user's shell loop would;
* (b) by 16 ``python -m experiments fit`` commands one after another;
* (c) by one ``python -m experiments.sweep`` with 2 workers and no pruning (a grid sweep).

The targets are (c) <= 0.3 x (b) and (c) <= 0.5 x (a). Also printed: the start-up of one
process (``python -m experiments fit --help``) and what one trial costs inside a sweep worker.

Run: ``.venv/bin/python -m benchmarks.sweep`` (``--trials 4`` for a short check).
"""

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RATES = [0.0003, 0.001, 0.003, 0.01]
WIDTHS = [16, 32, 64, 128]
EPOCHS = 30
LR = "model.init_args.optimizer.init_args.lr"
HIDDEN = "model.init_args.network.init_args.hidden_sizes"


def timed(commands: list[list[str]], cwd: Path) -> float:
    """Seconds to run ``commands`` one after another."""
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="the first N configurations")
    args = parser.parse_args(argv)
    configs = list(itertools.product(RATES, WIDTHS))[: args.trials]
    python = sys.executable
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        plain = [
            [python, str(REPO / "benchmarks" / "plain_mlp.py"), str(lr), str(width), str(EPOCHS)]
            for lr, width in configs
        ]
        fits = [
            [
                python, "-m", "experiments", "fit",
                "--config", str(REPO / "experiments" / "mlp_classification.yaml"),
                "--trainer.max_epochs", str(EPOCHS),
                f"--{LR}", str(lr),
                f"--{HIDDEN}", f"[{width}]",
                "--trainer.enable_progress_bar", "false",
            ]
            for lr, width in configs
        ]  # fmt: skip
        sweep_file = work / "bench.yaml"
        sweep_file.write_text(
            yaml.safe_dump(
                {
                    "config": str(REPO / "experiments" / "mlp_classification.yaml"),
                    "metric": "val/acc",
                    "direction": "maximize",
                    "trials": len(configs),
                    "sampler": "grid",
                    "pruner": "none",
                    "args": ["--trainer.max_epochs", str(EPOCHS)],
                    "space": {
                        LR: sorted({lr for lr, _ in configs}),
                        HIDDEN: [[w] for w in sorted({w for _, w in configs})],
                    },
                }
            )
        )
        sweep = [[python, "-m", "experiments.sweep", str(sweep_file), "--workers", "2"]]
        for name in "abc":
            (work / name).mkdir()
        startup = timed([[python, "-m", "experiments", "fit", "--help"]], work)
        seconds = {
            "(a) plain scripts": timed(plain, work / "a"),
            "(b) experiments fit": timed(fits, work / "b"),
            "(c) experiments.sweep": timed(sweep, work / "c"),
        }
    a, b, c = seconds.values()
    print(f"{len(configs)} trials of mlp_classification, {EPOCHS} epochs each, wall time:")
    for way, value in seconds.items():
        print(f"  {way:<24}{value:7.1f} s   {value / len(configs):5.2f} s a trial")
    print(f"  (c) / (b) = {c / b:.2f} (target <= 0.3);  (c) / (a) = {c / a:.2f} (target <= 0.5)")
    per_trial = (c - startup) * 2 / len(configs)
    print(
        f"start-up of one process: {startup:.1f} s; a trial inside a sweep worker: about "
        f"{per_trial:.1f} s (2 workers, after their start-up)"
    )


if __name__ == "__main__":
    main()
