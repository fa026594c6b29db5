"""Comparators and match types (RFC 4790, 5228 2.7, 5231)."""

from __future__ import annotations

import pytest

from cryptmail.sieve._match import Matcher


@pytest.mark.parametrize(
    ("matcher", "value", "key", "expected"),
    [
        (Matcher(), "Hello", "hello", True),
        (Matcher(comparator="i;octet"), "Hello", "hello", False),
        (Matcher(match_type=":contains"), "Big NEWS", "news", True),
        (Matcher(match_type=":matches"), "release 1.2", "*release ?.?", True),
        (Matcher(match_type=":matches"), "a*b", "a\\*b", True),
        (Matcher(match_type=":matches"), "axb", "a\\*b", False),
        (Matcher(match_type=":regex"), "[dev] x", "^\\[DEV\\]", True),
        (Matcher(comparator="i;ascii-numeric"), "007", "7", True),
        (Matcher(comparator="i;ascii-numeric"), "abc", "xyz", True),  # both infinity
        (Matcher(comparator="i;ascii-numeric", match_type=":contains"), "12", "1", False),
        (
            Matcher(comparator="i;ascii-numeric", match_type=":value", relation="gt"),
            "12",
            "9",
            True,
        ),
        (Matcher(match_type=":value", relation="gt"), "12", "9", False),  # as strings
        (Matcher(match_type=":value", relation="lt"), "abc", "ABD", True),
        (Matcher(comparator="i;ascii-casemap"), "Ä", "ä", False),  # ASCII only
    ],
)
def test_match(matcher: Matcher, value: str, key: str, expected: bool) -> None:
    assert matcher.match(value, key)[0] is expected


def test_matches_sets_greedy_match_variables() -> None:
    ok, found = Matcher(match_type=":matches").match("a-b-c", "*-*")
    assert ok and found == ["a-b-c", "a-b", "c"]


def test_count_compares_the_number_of_values() -> None:
    numeric = Matcher(comparator="i;ascii-numeric", match_type=":count", relation="ge")
    assert numeric.count(3, "3") and not numeric.count(2, "3")
    assert Matcher(comparator="i;ascii-numeric", match_type=":count").count(0, "0")
