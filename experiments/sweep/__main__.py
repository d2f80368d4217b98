import signal
import sys

try:
    from experiments.shutdown import leave
    from experiments.sweep.cli import main

    leave(main())
except KeyboardInterrupt:
    # Ctrl-C while the command (or a worker the sweep started) still imports its modules, before
    # any handler of its own is set: nothing has run that a traceback would explain.
    sys.exit(128 + signal.SIGINT)
