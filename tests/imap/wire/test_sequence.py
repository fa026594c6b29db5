"""Sequence sets: parsing, '*', lazy ranges, compact output for COPYUID/VANISHED."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.errors import ParseError
from cryptmail.imap.wire._sequence import RangeSet, SequenceSet, format_number_runs


def test_parse_and_format() -> None:
    seq = SequenceSet.parse("1,3:5,10:*,*")
    assert seq.ranges == ((1, 1), (3, 5), (10, 0), (0, 0))
    assert str(seq) == "1,3:5,10:*,*"
    assert seq.uses_star


@pytest.mark.parametrize("bad", ["", "0", "1,", ":5", "1:", "01", "4294967296", "a", "1::2"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ParseError):
        SequenceSet.parse(bad)


def test_resolve_star_large_mailbox_stays_one_range() -> None:
    resolved = SequenceSet.parse("1:*").resolve(50_000)
    assert resolved.ranges == ((1, 50_000),)
    assert len(resolved) == 50_000
    assert 50_000 in resolved and 50_001 not in resolved and 0 not in resolved


def test_resolve_reversed_and_star_beyond_largest() -> None:
    assert SequenceSet.parse("5:2").resolve(10).ranges == ((2, 5),)
    assert SequenceSet.parse("100:*").resolve(20).ranges == ((20, 100),)
    assert not SequenceSet.parse("*").resolve(0)


def test_merge_and_select() -> None:
    ranges = RangeSet.from_ranges([(5, 7), (1, 2), (3, 3), (10, 12), (11, 20)])
    assert str(ranges) == "1:3,5:7,10:20"
    uids = [1, 4, 6, 9, 15, 30]
    assert list(ranges.select(uids)) == [1, 6, 15]
    assert str(ranges.clip(2, 11)) == "2:3,5:7,10:11"


def test_format_number_runs_keeps_order() -> None:
    assert format_number_runs([1, 2, 3, 7, 5, 6]) == "1:3,7,5:6"
    assert format_number_runs([]) == ""
    assert format_number_runs([4]) == "4"


@given(st.lists(st.integers(1, 200), max_size=60))
def test_from_numbers_matches_set(numbers: list[int]) -> None:
    ranges = RangeSet.from_numbers(numbers)
    assert list(ranges) == sorted(set(numbers))
    assert all(n in ranges for n in numbers)
    assert SequenceSet.parse(str(ranges)).resolve(200) == ranges if numbers else True
