"""What every patch of the fast path returns: the function that takes it away again."""

from collections.abc import Callable

Undo = Callable[[], None]


def nothing() -> None:
    """The undo of a patch that found nothing to change."""
