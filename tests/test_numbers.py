"""How every human-facing output writes a number (mlci_tui/numbers.py)."""

from __future__ import annotations

import math

import pytest

from mlci_tui.numbers import change_text, compared_change, digits_to_tell_apart, number_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456789, "0.12346"),
        (3.0, "3"),
        (1234567.891, "1.2346e+06"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (0.1 + 0.2, "0.3"),
    ],
)
def test_five_significant_digits_and_one_spelling_of_non_finite_values(value: float, text: str) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize(
    ("values", "digits"),
    [
        ([0.912345678, 0.912349], 6),  # alike at five digits: one more tells them apart
        ([0.123456789, 0.123456788], 9),
        ([0.1 + 0.2, 0.3], 5),  # a difference past twelve digits is float noise, not a difference
        ([0.5, 0.25], 5),
        ([1, 1.0, None, math.nan, "x", True], 5),
        ([], 5),
    ],
)
def test_digits_widen_only_until_compared_values_differ(values: list[object], digits: int) -> None:
    assert digits_to_tell_apart(values) == digits


def test_a_change_is_written_in_the_digits_of_its_two_values() -> None:
    assert compared_change(0.912345678, 0.912349) == "+3.322e-06 (+0.000364%)"
    assert compared_change(0.5, 0.75) == "+0.25 (+50%)"
    assert compared_change(0.0, 1.0) == "+1"  # no percentage of a zero baseline
    assert compared_change(None, 1.0) == "" and compared_change(math.nan, 1.0) == ""
    assert change_text(-2.0, -50.0) == "-2 (-50%)"
