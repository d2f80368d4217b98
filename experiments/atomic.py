"""Files written whole or not at all: a reader sees the previous complete file or the new one.

The bytes go to a new hidden file beside the target, are flushed to the disk, and the file is
renamed over the target; the directory is then flushed too, so that the rename outlives a
crash. A write that fails leaves the target as it was and no partial file behind.
"""

import os
import secrets
from pathlib import Path


def partial_name(target: Path) -> Path:
    """A new hidden name beside ``target`` for its file while that is being written."""
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}")


def publish(partial: Path, target: Path) -> None:
    """Rename the complete file ``partial`` over ``target`` and make the rename durable."""
    os.replace(partial, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_atomically(target: Path, data: bytes | memoryview | str) -> None:
    """Make ``target`` hold ``data`` (text is written as UTF-8), all of it or, on failure,
    what it held before."""
    if isinstance(data, str):
        data = data.encode()
    partial = partial_name(target)
    try:
        # Not tempfile.mkstemp: its files are private (0600); the file gets the permissions
        # any new file gets (the umask's), as a plain open() would give it.
        handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        publish(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
