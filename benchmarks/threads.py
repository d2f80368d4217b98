"""The thread policy (``experiments/threads.py``) against PyTorch's default threads and one thread.

``mlp_classification`` (a small network) and ``cnn`` (a large one) are each trained with
``--threads auto`` (the policy), ``--threads D`` (D: PyTorch's default in this process, what a
run got before the policy) and ``--threads 1``; first as the only fit on the machine, then as
8 fits at once, each in a process of its own. Every process imports once and then waits at a
barrier before each fit, so the 8 fits train together and start-up is not counted. Printed per
fit: wall time and CPU time (all of the process's threads) of the whole ``fit``, the median
over the processes that ran together, and each against the policy.

Run: ``.venv/bin/python -m benchmarks.threads`` (``--together 4`` or fewer epochs for a short
check). A quiet machine gives the first columns; neighbours' jobs slow every way down.

``--threshold`` instead times training steps of networks of growing work (plain loops, one
thread against the default), to place ``SMALL_STEP_FLOPS``: run it on a quiet machine.
"""

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.train_speed import REPO, build, project_fit
from experiments import threads
from models import CNN, MLP, RecurrentNet

SAMPLES = {"mlp_classification": 1000, "cnn": 2000}
EPOCHS = {"mlp_classification": 10, "cnn": 1}
READY, GO = "ready", "go"


def quiet() -> None:
    """The runs' own lines stay out of the table."""
    for logger in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    sys.argv = ["experiments"]  # LightningCLI warns of a command line beside its args


def child(plan: list[list]) -> None:
    """Train the ``plan``'s fits one after another, each when the parent says go."""
    quiet()
    # The first fit in a process also pays for what it loads and sets up once.
    project_fit("mlp_classification", SAMPLES["mlp_classification"], 1, ["--threads", "1"])
    for name, setting, epochs in plan:
        print(READY, flush=True)
        if sys.stdin.readline().strip() != GO:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        project_fit(name, SAMPLES[name], epochs, ["--threads", str(setting)])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


def together(plan: list[list], count: int) -> list[list[dict[str, float]]]:
    """Run ``plan`` in ``count`` processes at once, fit by fit; each fit's figures per process."""
    command = [sys.executable, "-m", "benchmarks.threads", "--child", json.dumps(plan)]
    with tempfile.TemporaryFile("w+") as errors:
        processes = [
            subprocess.Popen(
                command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                text=True,
            )
            for _ in range(count)
        ]  # fmt: skip
        results = []
        try:
            for _ in plan:
                for process in processes:
                    expect(process, READY, errors)
                for process in processes:
                    process.stdin.write(GO + "\n")
                    process.stdin.flush()
                results.append([json.loads(expect(process, None, errors)) for process in processes])
        finally:
            for process in processes:
                process.stdin.close()
                process.wait()
    return results


def expect(process: subprocess.Popen, line: str | None, errors) -> str:
    """The process's next line (which must be ``line`` if given); its errors if it died."""
    got = process.stdout.readline().strip()
    if not got or (line is not None and got != line):
        errors.seek(0)
        raise SystemExit(f"a fit failed:\n{errors.read()[-3000:]}")
    return got


IMAGE = (3, 32, 32)


def ladder() -> list[tuple[str, torch.nn.Module, tuple[int, ...], int, int]]:
    """Networks of growing work per step: name, network, input shape, batch, classes."""
    return [
        ("mlp 10-50-2, batch 32", MLP((10,), 2, hidden_sizes=[50]), (10,), 32, 2),
        ("mlp 10-256-2, batch 64", MLP((10,), 2, hidden_sizes=[256]), (10,), 64, 2),
        ("lstm 2x20 over 20 steps, batch 64", RecurrentNet((20, 10), 4), (20, 10), 64, 4),
        ("cnn 4-8, batch 64", CNN(IMAGE, 10, channels=[4, 8], hidden_size=32), IMAGE, 64, 10),
        ("mlp 64-512-512-10, batch 64", MLP((64,), 10, hidden_sizes=[512, 512]), (64,), 64, 10),
        ("cnn 8-16, batch 64", CNN(IMAGE, 10, channels=[8, 16], hidden_size=64), IMAGE, 64, 10),
        ("mlp 256-1024x2-10, batch 64", MLP((256,), 10, hidden_sizes=[1024] * 2), (256,), 64, 10),
        ("cnn 16-32 (the cnn), batch 64", CNN(IMAGE, 10), IMAGE, 64, 10),
    ]


def step_times(network: torch.nn.Module, shape: tuple, batch: int, classes: int) -> dict:
    """Wall and CPU seconds of one training step with each thread count, the fastest of 3."""
    inputs, targets = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
    optimizer = torch.optim.Adam(network.parameters(), fused=True)

    def steps(count: int) -> None:
        for _ in range(count):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(inputs), targets).backward()
            optimizer.step()

    best: dict[int, tuple[float, float]] = {}
    for _ in range(3):
        for count in sorted({1, torch.get_num_threads()}):
            torch.set_num_threads(count)
            steps(3)
            wall, cpu = time.perf_counter(), time.process_time()
            steps(20)
            figures = ((time.perf_counter() - wall) / 20, (time.process_time() - cpu) / 20)
            best[count] = min(best.get(count, figures), figures)
    return best


def threshold() -> None:
    default = torch.get_num_threads()
    print(f"one training step, one thread against {default} (the default):")
    print(f"{'network':<36}{'FLOPs':>10}{'ms, 1':>8}{f'ms, {default}':>8}{'wall':>7}{'CPU':>7}")
    try:
        for name, network, shape, batch, classes in ladder():
            work = threads.step_flops(network, shape, batch)
            best = step_times(network, shape, batch, classes)
            (wall1, cpu1), (wall, cpu) = best[1], best[default]
            print(
                f"{name:<36}{work:>10.2g}{wall1 * 1e3:>8.2f}{wall * 1e3:>8.2f}"
                f"{wall / wall1:>7.2f}{cpu / cpu1:>7.2f}"
            )
    finally:
        torch.set_num_threads(default)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--together", type=int, default=8, help="fits at once in the busy case")
    parser.add_argument("--mlp_epochs", type=int, default=EPOCHS["mlp_classification"])
    parser.add_argument("--cnn_epochs", type=int, default=EPOCHS["cnn"])
    parser.add_argument("--threshold", action="store_true", help="time steps of growing work")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threshold:
        threshold()
        return
    if args.child is not None:
        child(json.loads(args.child))
        return
    quiet()
    default = torch.get_num_threads()
    epochs = {"mlp_classification": args.mlp_epochs, "cnn": args.cnn_epochs}
    ways = {"policy": threads.AUTO, "default": default, "one": 1}
    plan = [[name, ways[way], epochs[name]] for name in SAMPLES for way in ways]
    print(
        f"torch {torch.__version__}, {threads.available_cpus()} CPUs, default {default} threads; "
        f"one step below {threads.SMALL_STEP_FLOPS:.0e} FLOPs trains on one thread"
    )
    for name in SAMPLES:
        task, data = build(name, SAMPLES[name])
        work = threads.work_of(task, data)
        print(
            f"  {name}: {work:.3g} FLOPs a step, so {threads.choose(work)} thread(s); "
            f"{epochs[name]} epoch(s) of {SAMPLES[name]} samples"
        )
    start = time.perf_counter()
    alone = together(plan, 1)
    busy = together(plan, args.together)
    print(f"(measured in {time.perf_counter() - start:.0f} s)")
    print(f"{'':<28}{'alone':^26}{f'{args.together} fits at once (median)':^30}")
    header = f"{'wall s':>8}{'CPU s':>8}{'wall/pol':>10}"
    print(f"{'network':<20}{'threads':<8}{header}{header}")
    for index, (name, _, _) in enumerate(plan):
        way = list(ways)[index % len(ways)]
        base = index - index % len(ways)  # the policy's row for this network
        row = f"{name:<20}{way:<8}"
        for runs in (alone, busy):
            wall = statistics.median(r["wall"] for r in runs[index])
            cpu = statistics.median(r["cpu"] for r in runs[index])
            ratio = wall / statistics.median(r["wall"] for r in runs[base])
            row += f"{wall:>8.1f}{cpu:>8.1f}{ratio:>10.2f}"
        print(row)


if __name__ == "__main__":
    main()
