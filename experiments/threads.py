"""How many threads PyTorch's work on the CPU uses in a run: the thread policy.

Threads pay only where one operation has enough work to share out. A small network's training
step is a chain of tiny operations: on a quiet machine a second thread saves no time and burns
CPU time waiting for work, and beside other jobs it makes the run several times slower
(``python -m benchmarks.threads`` measures both). So, unless the user chose:

* a network whose training step (forward and backward of one batch) takes fewer than
  :data:`SMALL_STEP_FLOPS` floating-point operations trains on one thread;
* a larger one gets a thread per CPU (at most one per physical core, PyTorch's default), shared
  evenly between the run's own processes (one per device under DDP, as Lightning shares them)
  and the runs started beside it (a sweep's workers, see :func:`shared_by`).

The policy looks at the run alone, never at the machine's load: the thread count changes a
large network's results in the last bits, and the same command is to give the same run
whatever else the machine is doing. On a machine busy with other jobs, ``--threads 1`` is the
faster choice for large networks too.

The user's choice wins, in this order: ``--threads N``; ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` in the environment; a thread count set with ``torch.set_num_threads`` in the
process before the run (after importing this module). The count holds for as long as the run's
command runs, and is pinned in ``OMP_NUM_THREADS`` meanwhile, so that DDP's processes inherit it
rather than Lightning's own choice.
"""

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch.utils.flop_counter import FlopCounterMode

AUTO = "auto"
Setting = int | Literal["auto"]
# Below this many FLOPs a training step, one thread. Measured on 2 cores: mlp_classification
# (125 thousand) is no faster on two threads on a quiet machine, for 20% more CPU time, and 2.5
# to 9 times slower beside other jobs; the recurrent experiment (41 million) runs one tiny
# operation per time step; the cnn (667 million) is 1.27 times faster on two threads when the
# machine is quiet. `python -m benchmarks.threads --threshold` times the sizes in between.
SMALL_STEP_FLOPS = 100_000_000
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch reads at start

_TORCH_DEFAULT = torch.get_num_threads()  # before anyone in this process changed it
_sharing = 1  # runs started here share the CPUs with this many runs in all


def available_cpus() -> int:
    """CPUs for PyTorch's work: those this process may run on, at most PyTorch's own default
    (a thread per physical core: a second on the same core only gets in the way)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    return min(allowed, _TORCH_DEFAULT)


@contextlib.contextmanager
def shared_by(runs: int) -> Iterator[None]:
    """Runs started inside share the machine's CPUs with others, ``runs`` in all."""
    global _sharing
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    previous, _sharing = _sharing, runs
    try:
        yield
    finally:
        _sharing = previous


def choose(flops: float, processes: int = 1) -> int:
    """The policy's thread count for a training step of ``flops``, in each of ``processes``."""
    if flops < SMALL_STEP_FLOPS:
        return 1
    return max(1, available_cpus() // (max(1, processes) * _sharing))


def step_flops(network: torch.nn.Module, input_shape: tuple[int, ...] | None, batch: int) -> int:
    """FLOPs of one training step on a batch of ``batch`` inputs of ``input_shape``.

    Counted by running the network's forward and backward once on the meta device (shapes
    only: no memory, no time, no random numbers drawn), and never taken below six per parameter
    and sample, the least a dense layer's step does (a count misses operations that PyTorch's
    counter does not know).
    """
    parameters = sum(p.numel() for p in network.parameters())
    least = 6 * parameters * batch
    if not input_shape:
        return least
    try:
        ghost = meta_copy(network)
        inputs = torch.zeros(batch, *input_shape, device="meta")
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            ghost(inputs).sum().backward()
        counted = counter.get_total_flops()
    except Exception:  # any network the meta device cannot run: the least alone
        counted = 0
    return max(counted, least)


def meta_copy(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` with its parameters and buffers on the meta device."""
    memo: dict[int, Any] = {}
    for parameter in network.parameters():
        ghost = torch.empty_like(parameter, device="meta")
        memo[id(parameter)] = torch.nn.Parameter(ghost, requires_grad=parameter.requires_grad)
    for buffer in network.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(network, memo)


def work_of(task: torch.nn.Module, data: Any) -> int:
    """FLOPs of one of the run's training steps: the task's network on the data's batches."""
    network = getattr(task, "network", task)
    batch = getattr(data, "batch_size", None)
    if batch is None and hasattr(data, "split_sizes"):
        batch = data.split_sizes()["train"]  # a full batch
    try:
        input_shape = tuple(data.input_shape)
    except (AttributeError, NotImplementedError, TypeError):
        input_shape = None
    return step_flops(network, input_shape, batch or 1)


def chosen_by_user() -> str | None:
    """How the user chose the thread count already, if they did."""
    for name in ENVIRONMENT:
        if os.environ.get(name):
            return name
    if torch.get_num_threads() != _TORCH_DEFAULT:
        return "torch.set_num_threads"
    return None


def apply(
    setting: Setting, task: torch.nn.Module, data: Any, processes: int = 1, copies: int = 1
) -> Callable[[], None]:
    """Set the run's thread count by ``setting`` (``--threads``); return what puts back the
    count and environment found. ``copies``: how many networks like ``task``'s one step
    trains at once (a population's members)."""
    count_given = isinstance(setting, int) and not isinstance(setting, bool)
    if not (setting == AUTO or (count_given and setting >= 1)):
        raise ValueError(f"threads must be a positive integer or 'auto', got {setting!r}")
    chosen = chosen_by_user()
    if setting == AUTO and chosen in ENVIRONMENT:
        return lambda: None  # torch has read it at start, and DDP's processes inherit it
    if setting != AUTO:
        count = int(setting)
    elif chosen is not None:
        count = torch.get_num_threads()
    else:
        count = choose(work_of(task, data) * copies, processes)
    previous_count = torch.get_num_threads()
    previous_variable = os.environ.get(ENVIRONMENT[0])
    torch.set_num_threads(count)
    os.environ[ENVIRONMENT[0]] = str(count)

    def restore() -> None:
        torch.set_num_threads(previous_count)
        if previous_variable is None:
            os.environ.pop(ENVIRONMENT[0], None)
        else:
            os.environ[ENVIRONMENT[0]] = previous_variable

    return restore
