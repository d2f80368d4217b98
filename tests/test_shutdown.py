"""A command's end without the interpreter's teardown keeps what an exit does for the data."""

import subprocess
import sys
import textwrap

from tests.conftest import subprocess_env

PROGRAM = """
import atexit, sys, threading, time
from experiments.shutdown import leave

folder = sys.argv[1]

class Holder:  # garbage in a cycle: only the collector finalizes it
    def __del__(self):
        open(f"{folder}/finalized", "w").write("yes")

holder = Holder()
holder.me = holder
del holder
atexit.register(lambda: open(f"{folder}/handler", "w").write("yes"))
if sys.argv[2] == "thread":
    def late():
        time.sleep(0.5)
        open(f"{folder}/thread", "w").write("yes")
    threading.Thread(target=late).start()
print("buffered, never flushed by hand", end="")
leave(3)
"""


def run(tmp_path, mode):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM), str(tmp_path), mode],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_leaving_keeps_the_status_output_handlers_and_finalizers(tmp_path):
    done = run(tmp_path, "alone")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, never flushed by hand"
    assert (tmp_path / "handler").read_text() == "yes"
    assert (tmp_path / "finalized").read_text() == "yes"


def test_leaving_waits_for_a_thread_that_still_runs(tmp_path):
    done = run(tmp_path, "thread")
    assert done.returncode == 3, done.stderr
    assert (tmp_path / "thread").read_text() == "yes"
    assert (tmp_path / "handler").read_text() == "yes"
