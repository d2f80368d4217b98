"""A run's directory: claimed atomically when the run starts, trained by one process at a time.

Lightning's ``TensorBoardLogger`` names a new run ``max(version_N) + 1`` from a listing and
creates the folder later, so runs started together share a directory (Lightning issue #12679,
closed as won't fix). Here a new run claims ``version_<n>`` with an exclusive ``mkdir``, which
exactly one process wins, on a local disk and on NFS alike; a loser lists again and tries the
next number.

While a process trains a run it holds an exclusive ``flock`` on the run's ``run.lock`` file, and
writes its host and pid into the file for others to read. A second writer is refused at once.
The kernel drops the lock when the process ends, however it ends (SIGKILL, an OOM kill, a power
cut on a local disk), so nothing is left to clean up by hand. On NFS the client turns ``flock``
into a lock held by the server (NFSv4, or v3 with its lock manager): it holds across machines,
and the server frees it when the holder's lease runs out. A mount with ``nolock`` or
``local_lock=all`` keeps locks on each machine, and two machines could then both train a run.
"""

import fcntl
import os
import re
import socket
from pathlib import Path

from experiments.errors import UserError

VERSION = re.compile(r"version_(\d+)")
LOCK_FILE = "run.lock"


def version_numbers(experiment_dir: Path) -> list[int]:
    """The numbers of the ``version_<n>`` entries in ``experiment_dir``, in no order."""
    try:
        names = os.listdir(experiment_dir)
    except FileNotFoundError:
        return []
    return [int(match.group(1)) for match in map(VERSION.fullmatch, names) if match]


def claim_version(experiment_dir: Path) -> int:
    """Create the next ``version_<n>`` directory in ``experiment_dir`` and return ``n``.

    ``mkdir`` fails for every process but one when several try the same name, so each caller
    gets a directory of its own; a loser lists again and goes on from the new highest number.
    """
    experiment_dir.mkdir(parents=True, exist_ok=True)
    while True:
        taken = version_numbers(experiment_dir)
        number = max(taken) + 1 if taken else 0
        try:
            (experiment_dir / f"version_{number}").mkdir()
        except FileExistsError:
            continue
        return number


class RunLock:
    """The exclusive right to train the run in ``run``; refused with a one-line error if held.

    Args:
        run: The run directory (``.../version_<n>``); it must exist.
    """

    def __init__(self, run: Path) -> None:
        self.run = run
        path = run / LOCK_FILE
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 200).decode(errors="replace").split()
            os.close(handle)
            who = f"process {holder[1]} on {holder[0]}" if len(holder) == 2 else "another process"
            raise UserError(
                f"{run} is being trained by {who}: one process at a time trains a run; wait for "
                "it to end (or stop it), then resume"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._handle: int | None = handle

    def release(self) -> None:
        """Let another process train the run (the kernel also does this when the process ends)."""
        if self._handle is not None:
            os.close(self._handle)  # closing the file drops its flock
            self._handle = None
