"""Run the project's benchmarks and write their figures into ``docs/performance.md``.

Each benchmark runs as its own command (``python -m benchmarks.<name>``), one after another,
and its printed figures replace its block in the file: the text between
``<!-- report:<name> -->`` and ``<!-- /report:<name> -->``, headed by the command, the date,
the commit and the machine, and followed by a sentence on how to read them. The block
``machine`` describes the machine of the latest run. Everything outside the blocks (the
explanations, the Threads section) is kept as written; a block the file lacks is added at its
end, and a missing file is started afresh.

Run it on a quiet machine: neighbours slow the figures down unevenly.

Run: ``.venv/bin/python -m benchmarks.report`` (every benchmark: the better part of an hour on
2 cores), ``--quick`` for fewer rounds and smaller sizes, ``--only NAME`` (repeatable) for some.
"""

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "performance.md"
WIDTH = 100  # the file's prose is wrapped as the rest of the docs
BLOCK = re.compile(r"<!-- report:(?P<name>[\w-]+) -->\n.*?<!-- /report:(?P=name) -->", re.S)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark module of this package, as the report runs it."""

    name: str
    title: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    reading: str


BENCHMARKS = (
    Benchmark(
        "threads",
        "Threads",
        (),
        ("--together", "4", "--mlp_epochs", "3", "--cnn_epochs", "1"),
        "Wall and CPU seconds of one fit with the policy's threads (`--threads auto`), with "
        "PyTorch's default threads and with one thread, alone and as 8 fits started together "
        "(the median of the 8); start-up is not counted. `wall/pol` is the wall time over the "
        "policy's: above 1, the policy is faster.",
    ),
    Benchmark(
        "wall_times",
        "Whole commands",
        (),
        ("--experiments", "mlp_classification", "cnn", "--sweeps"),
        "Each line is the wall time of one command started as a user starts it, in a fresh "
        "process: importing PyTorch and Lightning, training, figures, checkpoints and the final "
        "test are all in it. `make run` after the set-up is `fit` of `mlp_classification`. "
        "Compare the commands with each other rather than with another machine: the ratios "
        "hold better than the seconds.",
    ),
    Benchmark(
        "suite",
        "The test suite",
        (),
        ("--fast-only",),
        "The wall time of the whole suite (`make test`, what CI runs) and of the tests not "
        "marked slow (`make test-fast`), set-up excluded, with pytest's count of the tests and "
        "the slowest of them.",
    ),
    Benchmark(
        "train_speed",
        "Training speed",
        ("--rounds", "3"),
        ("--quick",),
        "For each way of training: ms per training step of its fastest epoch after the first, "
        "samples per second, and the median ratio to `plain` (the source material's loop) in "
        "the same round with its spread over the rounds; below 1 is faster than `plain`. "
        "`project` is this project's `fit` with its YAML defaults, `project+val` the same with "
        "its validation passes; `lightning` is Lightning's bare loop, `batched-opt` the floor "
        "for a step's own work.",
    ),
    Benchmark(
        "fastpath",
        "What the fast path saves",
        ("--rounds", "3"),
        ("--rounds", "1", "--epochs", "3"),
        "ms per training step of `mlp_classification` with the whole fast path, without each of "
        "its patches in turn, and as plain Lightning (`--fast_path false`); a patch's gain is "
        "what leaving it out adds to a step, and a gain near 0 is within the noise.",
    ),
    Benchmark(
        "sweep",
        "Sweeps against one process per trial",
        (),
        ("--trials", "4"),
        "The same trials of `mlp_classification` run (a) as plain PyTorch scripts, (b) as "
        "`python -m experiments fit` commands, one after another, and (c) as one "
        "`python -m experiments.sweep` with 2 workers. The ratios (c) / (b) and (c) / (a) say "
        "how much a sweep saves; start-up, paid once per process, is most of a short trial.",
    ),
    Benchmark(
        "csv_readers",
        "Reading large CSV files",
        (),
        ("--rows", "100000"),
        "Seconds and peak memory for each reader to turn a CSV file of numbers into one float32 "
        "array, each in a fresh process, beside the array's own size. `CsvData` reads with "
        "pandas' C parser.",
    ),
    Benchmark(
        "epoch_memory",
        "An epoch's memory",
        (),
        (),
        "The peak memory a training epoch of `mlp_classification` adds to the process, at two "
        "sizes of the training split. It should not grow with the number of samples: the data "
        "are in memory before the epoch starts.",
    ),
)
BY_NAME = {benchmark.name: benchmark for benchmark in BENCHMARKS}


def git(*args: str) -> str:
    """A git command's output in this repository, or '' where git cannot tell."""
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def commit() -> str:
    """The checked-out commit, marked where the working tree differs from it."""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head} with uncommitted changes" if git("status", "--porcelain") else head


def proc_field(path: str, name: str) -> str:
    """The value of ``name:`` in a ``/proc`` file such as ``/proc/cpuinfo``, or ''."""
    try:
        with open(path) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def machine() -> dict[str, str]:
    """What the figures depend on: the processor, its cores, the versions, the date."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    memory = proc_field("/proc/meminfo", "MemTotal")
    return {
        "CPU": proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": f"{cores} ({usable} usable by this process)",
        "memory": f"{int(memory.split()[0]) / 2**20:.1f} GiB" if memory else "unknown",
        "load average at the start": f"{os.getloadavg()[0]:.2f}",
        "system": platform.platform(),
        "Python": platform.python_version(),
        "torch": metadata.version("torch"),
        "lightning": metadata.version("lightning"),
        "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def in_brief(facts: dict[str, str]) -> str:
    """A machine in one line, to head each benchmark's figures."""
    return (
        f"{facts['date']}, commit {facts['commit']}, on {facts['CPU']}, "
        f"{facts['cores'].split()[0]} cores, torch {facts['torch']}, "
        f"lightning {facts['lightning']}"
    )


def machine_block(facts: dict[str, str], command: str) -> str:
    """The ``machine`` block: every fact of the machine that ran ``command``."""
    rows = "\n".join(f"| {key} | {value} |" for key, value in facts.items())
    return f"The latest `{command}` ran on:\n\n| | |\n|---|---|\n{rows}"


def figures_block(benchmark: Benchmark, args: tuple[str, ...], facts: dict[str, str]) -> str:
    """Runs ``benchmark`` and returns its block's text; raises ``RuntimeError`` if it fails."""
    command = ["python", "-m", f"benchmarks.{benchmark.name}", *args]
    shown = " ".join(command)
    print(f"{shown} ...", file=sys.stderr, flush=True)
    # The benchmarks start processes of their own in other directories: this checkout's code,
    # not another installed copy, must be what they import.
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *command[1:]], cwd=REPO, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{shown} failed with status {done.returncode}:\n{tail}")
    print(f"{shown}: {seconds:.0f} s", file=sys.stderr, flush=True)
    heading = f"`{shown}`, {in_brief(facts)} ({seconds:.0f} s in all)."
    prose = [textwrap.fill(text, WIDTH) for text in (heading, benchmark.reading)]
    return "\n\n".join([*prose, f"```text\n{done.stdout.rstrip()}\n```"])


def with_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body``: replaced in place, or added at the end."""
    block = f"<!-- report:{name} -->\n{body}\n<!-- /report:{name} -->"
    found = [match for match in BLOCK.finditer(text) if match["name"] == name]
    if found:
        return text[: found[0].start()] + block + text[found[0].end() :]
    title = BY_NAME[name].title if name in BY_NAME else name
    return f"{text.rstrip()}\n\n## {title}\n\n{block}\n"


def start_file() -> str:
    """The file's beginning, where there is no file yet."""
    return (
        "# Performance\n\n"
        "Written by `python -m benchmarks.report`; each section names the command, the "
        "commit and the machine its figures came from.\n\n"
        "<!-- report:machine -->\n<!-- /report:machine -->\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BY_NAME),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BY_NAME)}",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the file to write")
    args = parser.parse_args(argv)
    chosen = [BY_NAME[name] for name in args.only] if args.only else list(BENCHMARKS)
    command = " ".join(["python -m benchmarks.report", *(argv or sys.argv[1:])])
    facts = machine()
    failed = []
    for benchmark in chosen:
        try:
            body = figures_block(
                benchmark, benchmark.quick_args if args.quick else benchmark.args, facts
            )
        except RuntimeError as error:
            print(error, file=sys.stderr)
            failed.append(benchmark.name)
            continue
        # Written after each benchmark, so that a long run stopped midway keeps what it measured.
        text = args.output.read_text() if args.output.exists() else start_file()
        text = with_block(text, "machine", machine_block(facts, command))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(with_block(text, benchmark.name, body))
    if failed:
        print(f"failed, their figures left as they were: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
