"""The argument checks shared by the networks, tasks and datamodules."""

import re

import pytest

from models import checks


@pytest.mark.parametrize(
    ("check", "good"),
    [
        (lambda: checks.at_least("n", 3), 3),
        (lambda: checks.at_least("n", 0, 0), 0),
        (lambda: checks.shape("s", [3, 4]), (3, 4)),
        (lambda: checks.shape("s", (1, 2, 3), ndim=3), (1, 2, 3)),
        (lambda: checks.non_negative("std", 0.0), 0.0),
        (lambda: checks.fraction("f", 0.25), 0.25),
        (lambda: checks.probability("p", 0.0), 0.0),
        (lambda: checks.one_of("k", "b", ["a", "b"]), "b"),
    ],
)
def test_an_accepted_value_is_returned(check, good):
    assert check() == good


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            lambda: checks.at_least("num_samples", 0),
            "num_samples must be a positive integer, got 0",
        ),
        (lambda: checks.at_least("n", True), "n must be a positive integer, got True"),
        (lambda: checks.at_least("n", 2.0), "n must be a positive integer, got 2.0"),
        (
            lambda: checks.at_least("num_classes", 1, 2),
            "num_classes must be an integer >= 2, got 1",
        ),
        (lambda: checks.shape("s", []), "s must be a non-empty list of positive integers, got []"),
        (lambda: checks.shape("s", [3, 0]), "s must be a non-empty list of positive integers"),
        (lambda: checks.shape("s", [3, 4], ndim=3), "s must have 3 entries, got [3, 4]"),
        (lambda: checks.non_negative("noise_std", -0.1), "noise_std must be >= 0, got -0.1"),
        (lambda: checks.fraction("val_fraction", 1.0), "val_fraction must be in (0, 1), got 1.0"),
        (lambda: checks.fraction("val_fraction", 0), "val_fraction must be in (0, 1), got 0"),
        (lambda: checks.probability("dropout", 1.0), "dropout must be in [0, 1), got 1.0"),
        (lambda: checks.one_of("pool", "median", {"max": 1, "avg": 2}), "pool must be one of"),
    ],
)
def test_a_refused_value_is_named_with_what_was_wanted(check, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        check()
