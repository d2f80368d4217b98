"""``population: auto``: how many trials one worker trains at once, from the network and the
machine.

A population's step costs about one step of Lightning's loop plus ``P`` times the network's
own arithmetic. ``P`` grows until the arithmetic of a step reaches a budget that keeps the
loop's overhead small beside it (:data:`CPU_FLOPS` on a CPU, :data:`GPU_FLOPS` on a GPU,
where a step of 64 small networks costs little more than one), within the memory that the
stacked weights, gradients, optimizer state and best weights take (a quarter of the machine's
free memory at most), and never above the worker's share of the sweep's trials: with ``W``
workers each takes about ``N / W``, so that all of them have trials to train. An experiment
that cannot be batched gets 1: today's one trial at a time.
"""

import math

import torch

CPU_FLOPS = 2e8  # per population step; measured knee on the 2-core machine for small MLPs
GPU_FLOPS = 2e11
LARGEST = {"cpu": 256, "cuda": 1024}
STATE_COPIES = 5  # weights, gradients, two Adam moments, best weights


def free_memory(device: str) -> int:
    """Bytes free for a population's tensors on ``device``."""
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 2**31


def choose(step_flops: int, parameters: int, trials: int, workers: int) -> int:
    """The population size for a network whose training step costs ``step_flops`` and which
    has ``parameters`` numbers, in a sweep of ``trials`` shared by ``workers``."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    budget = GPU_FLOPS if device == "cuda" else CPU_FLOPS
    by_work = int(budget // max(1, step_flops))
    by_memory = free_memory(device) // 4 // max(1, parameters * 4 * STATE_COPIES)
    share = math.ceil(trials / max(1, workers))
    return max(1, min(by_work, by_memory, share, LARGEST[device]))
