"""The end of a command: its exit status, without the interpreter's teardown.

When Python exits it frees every module and the objects they hold, one by one. After PyTorch
and Lightning that takes about a second on this project's 2-core machine (measured: importing
``lightning.pytorch`` and exiting takes 0.7 to 1.0 s more than the same with ``os._exit``), and
every command paid it after its work was done: a sweep of populations spent a tenth of its time
there. :func:`leave` keeps what an exit does for the program's data: the cycles that are garbage
are collected, so that their finalizers close what they hold; the exit handlers run (Lightning's
end of a distributed run, logging's last flush, temporary folders); the standard streams are
flushed. Then the process ends. Where a thread other than a daemon still runs, it exits as
Python always does, which waits for that thread.
"""

import atexit
import contextlib
import gc
import os
import sys
import threading
from typing import NoReturn


def leave(code: int) -> NoReturn:
    """End the program with exit status ``code`` (see the module's docstring)."""
    # atexit's own runner is not public; without it (another Python), the usual exit.
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if run_exit_handlers is None or any(not thread.daemon for thread in others):
        sys.exit(code)
    gc.collect()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        # A reader gone, a stream closed: there is nothing to write to.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
