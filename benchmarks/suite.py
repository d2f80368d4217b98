"""How long the test suite takes: ``make test`` (the whole suite, as CI runs it) and ``test-fast``.

Each runs as the Makefile runs it, ``python -m pytest -n auto`` from the repository root (with
``-m "not slow"`` for the fast one), set-up excluded. Printed: the wall time, pytest's summary
line (how many tests passed, failed or were deselected), and the slowest tests of the first
suite run, as pytest lists them (``--durations`` in ``pyproject.toml``).

Run: ``.venv/bin/python -m benchmarks.suite`` (``--fast-only`` for ``make test-fast`` alone).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITES = {"make test": ("-n", "auto"), "make test-fast": ("-n", "auto", "-m", "not slow")}
SLOWEST = 10


def summary(output: str) -> str:
    """pytest's closing line, e.g. ``368 passed in 1234.56s (0:20:34)``, without its rule."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else "no output"


def slowest(output: str, count: int) -> list[str]:
    """The first ``count`` lines of pytest's table of the slowest durations."""
    lines = output.splitlines()
    headers = (i for i, line in enumerate(lines) if "slowest" in line and "durations" in line)
    start = next(headers, None)
    if start is None:  # pytest run without --durations
        return []
    table = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("=", "(")):
            break
        table.append(line)
    return table[:count]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-only", action="store_true", help="time make test-fast alone")
    args = parser.parse_args(argv)
    suites = {"make test-fast": SUITES["make test-fast"]} if args.fast_only else SUITES
    first: tuple[str, str] | None = None
    for name, extra in suites.items():
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *extra], cwd=REPO, capture_output=True, text=True
        )
        minutes = (time.perf_counter() - start) / 60
        print(f"{name:<16}{minutes:6.1f} min   {summary(done.stdout)}", flush=True)
        first = first or (name, done.stdout)
    if first is not None:
        name, output = first
        print(f"\nthe slowest tests of {name}:")
        print("\n".join(slowest(output, SLOWEST)))


if __name__ == "__main__":
    main()
