import signal
import sys

try:
    from experiments.sweep.cli import main

    sys.exit(main())
except KeyboardInterrupt:
    # Ctrl-C while the command (or a worker the sweep started) still imports its modules, before
    # any handler of its own is set: nothing has run that a traceback would explain.
    sys.exit(128 + signal.SIGINT)
