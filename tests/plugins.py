"""Callbacks that tests plug into a run on the command line (``--trainer.callbacks+=...``)."""

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class Barrier(Callback):
    """Holds each process, while the CLI builds its run, until ``parties`` processes have come.

    Processes started together reach that point seconds apart; the barrier lines them up just
    before a new run is named, where they would collide.

    Args:
        directory: An empty directory shared by the processes.
        parties: How many processes wait for each other.
        timeout: Seconds to wait at most.
    """

    def __init__(self, directory: str, parties: int, timeout: float = 120.0) -> None:
        Path(directory, str(os.getpid())).touch()
        deadline = time.monotonic() + timeout
        while len(os.listdir(directory)) < parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(os.listdir(directory))} of {parties} came")
            time.sleep(0.005)


class Hold(Callback):
    """Holds training before its second epoch for as long as the file ``path`` exists.

    A test creates the file, starts a run, and meets it at a known point: training, its lock
    held, the first epoch's checkpoint written. Deleting the file lets the run go on, and so
    does a signal that asks the run to stop (it then stops after that epoch). Unlike a pause
    of fixed length, it holds however slowly a busy machine gets there.

    Args:
        path: The file whose existence holds the run.
        timeout: Seconds to hold at most.
        until_stopped: Let a signal that asks the run to stop end the hold too.
    """

    def __init__(self, path: str, timeout: float = 300.0, until_stopped: bool = True) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.until_stopped = until_stopped

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != 1:
            return
        deadline = time.monotonic() + self.timeout
        while self.path.exists() and time.monotonic() < deadline:
            stopping = any(getattr(cb, "received", None) is not None for cb in trainer.callbacks)
            if stopping and self.until_stopped:
                return  # StopOnSignal heard Ctrl-C or SIGTERM
            time.sleep(0.02)


class Threads(Callback):
    """Writes the number of threads that torch trains on to the file ``path``.

    Args:
        path: Where to write it.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer, pl_module) -> None:
        import torch

        self.path.write_text(str(torch.get_num_threads()))


class Probe(Callback):
    """Multiplies two ``size`` x ``size`` matrices when built, as a user's network does that
    runs a batch through itself to find a layer's size: work that PyTorch shares out between
    its threads, while the CLI builds the run.

    Args:
        size: The matrices' side.
    """

    def __init__(self, size: int) -> None:
        import torch

        torch.ones(size, size) @ torch.ones(size, size)
