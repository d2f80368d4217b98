"""Argument checks shared by the networks: sizes arrive from configs and links."""

from collections.abc import Sequence


def positive(name: str, value: int) -> int:
    """Return ``value`` if it is a positive integer, else raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def shape(name: str, value: Sequence[int], ndim: int | None = None) -> tuple[int, ...]:
    """Return ``value`` as a tuple of positive sizes, optionally of exactly ``ndim`` entries."""
    dims = tuple(value)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    if ndim is not None and len(dims) != ndim:
        raise ValueError(f"{name} must have {ndim} entries, got {value!r}")
    return dims
