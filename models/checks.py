"""Argument checks for the networks, tasks and datamodules: values arrive from configs and links.

Each check returns the value it accepts and raises ``ValueError`` naming the argument and the
value it got; the CLI reports that as one line.
"""

from collections.abc import Collection, Sequence
from typing import Any


def at_least(name: str, value: int, minimum: int = 1) -> int:
    """``value`` if it is an integer of at least ``minimum`` (a positive integer by default)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def shape(name: str, value: Sequence[int], ndim: int | None = None) -> tuple[int, ...]:
    """``value`` as a tuple of positive sizes, of exactly ``ndim`` entries if given."""
    dims = tuple(value)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    if ndim is not None and len(dims) != ndim:
        raise ValueError(f"{name} must have {ndim} entries, got {value!r}")
    return dims


def non_negative(name: str, value: float) -> float:
    """``value`` if it is at least 0 (a standard deviation, say)."""
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def fraction(name: str, value: float) -> float:
    """``value`` if it lies strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def probability(name: str, value: float) -> float:
    """``value`` if it lies in [0, 1): a dropout rate."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def one_of(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


NETWORK_ARGUMENTS = ("input_shape", "num_outputs")


def network_contract(network: type) -> str | None:
    """What keeps ``network`` from being built the way every network here is, or ``None``.

    The data gives each network two arguments: ``input_shape`` (one sample's shape, a list
    such as ``[10]`` or ``[1, 28, 28]``) and ``num_outputs`` (the classes, or the regression
    targets). A constructor written with other names, PyTorch's usual ``in_features`` and
    ``num_classes`` say, never gets them.
    """
    import inspect

    try:
        parameters = inspect.signature(network).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    missing = [name for name in NETWORK_ARGUMENTS if name not in parameters]
    if not missing:
        return None
    name = f"{network.__module__}.{network.__qualname__}"
    has = ", ".join(parameters) or "no arguments"
    return (
        f"network {name} lacks {' and '.join(missing)}: a network here is built as "
        f"{network.__qualname__}(input_shape=<one sample's shape, a list>, num_outputs=<classes "
        f"or targets>, <its own arguments>), both given by the data; its constructor takes {has}"
    )
