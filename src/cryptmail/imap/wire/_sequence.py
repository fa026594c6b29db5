"""IMAP sequence sets (RFC 3501 ``sequence-set``) without expanding their ranges.

:class:`SequenceSet` is what a client wrote, ``*`` included. Resolving it against the
largest number in use gives a :class:`RangeSet`: sorted, disjoint, merged ranges that
answer membership with a binary search and iterate lazily, so ``1:*`` over a mailbox of
50,000 messages is one range, not a list. :func:`format_number_runs` writes the
order-preserving compact form that UIDPLUS ``COPYUID`` and QRESYNC ``VANISHED`` need.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from cryptmail.errors import ParseError

__all__ = ["MAX_NUMBER", "RangeSet", "SequenceSet", "format_number_runs"]

MAX_NUMBER: Final = 0xFFFFFFFF
"""The largest message sequence number or UID (RFC 3501 ``nz-number`` is 32-bit)."""

STAR: Final = 0
"""How ``*`` is stored in a :class:`SequenceSet` range (0 is never a valid number)."""
SAVED_MARK: Final = "$"
"""RFC 5182 ``seq-last-command``: the result saved by the last ``SEARCH RETURN (SAVE)``."""


def _parse_number(text: str) -> int:
    if text == "*":
        return STAR
    if not text or not text.isascii() or not text.isdigit() or text[0] == "0":
        raise ParseError("Invalid sequence set: expected a number or '*'")
    if len(text) > 10:
        raise ParseError("Invalid sequence set: number out of range")
    value = int(text)
    if value > MAX_NUMBER:
        raise ParseError("Invalid sequence set: number out of range")
    return value


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed ``sequence-set``: ranges as written, ``*`` stored as :data:`STAR` (0).

    ``saved`` is RFC 5182's ``$`` (no ranges): the session's saved search result, which
    only the selected mailbox can resolve; :meth:`resolve` refuses it.
    """

    ranges: tuple[tuple[int, int], ...]
    saved: bool = False

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse ``1,3:5,10:*``.

        Raises:
            ParseError: empty element, a zero, a number above 2**32-1, or stray text.
        """
        if not text:
            raise ParseError("Invalid sequence set: empty")
        if text == SAVED_MARK:
            return cls((), saved=True)
        ranges: list[tuple[int, int]] = []
        for element in text.split(","):
            first, sep, last = element.partition(":")
            start = _parse_number(first)
            end = _parse_number(last) if sep else start
            ranges.append((start, end))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, *ranges: tuple[int, int] | int) -> SequenceSet:
        """Build a set from numbers and ``(start, end)`` pairs (0 means ``*``)."""
        pairs = tuple(r if isinstance(r, tuple) else (r, r) for r in ranges)
        return cls(pairs)

    @property
    def uses_star(self) -> bool:
        return any(STAR in pair for pair in self.ranges)

    def resolve(self, largest: int) -> RangeSet:
        """Replace ``*`` by ``largest`` and normalise; ``largest`` 0 means empty mailbox.

        Numbers above ``largest`` are kept (a UID set may name UIDs not in use); the
        caller intersects with what exists. ``n:*`` with ``n > largest`` becomes
        ``largest:n`` as RFC 3501 says, so it still names the last message.

        Raises:
            ParseError: the set is ``$``, which names no numbers by itself.
        """
        if self.saved:
            raise ParseError("'$' (the saved search result) is not allowed here")
        pairs: list[tuple[int, int]] = []
        for start, end in self.ranges:
            start = largest if start == STAR else start
            end = largest if end == STAR else end
            low, high = min(start, end), max(start, end)
            if high == 0:
                continue  # '*' in an empty mailbox names nothing
            pairs.append((max(low, 1), high))
        return RangeSet.from_ranges(pairs)

    def __str__(self) -> str:
        if self.saved:
            return SAVED_MARK

        def one(value: int) -> str:
            return "*" if value == STAR else str(value)

        return ",".join(
            one(start) if start == end else f"{one(start)}:{one(end)}" for start, end in self.ranges
        )


@dataclass(frozen=True, slots=True)
class RangeSet:
    """Sorted, disjoint, non-adjacent inclusive ranges of positive numbers."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> RangeSet:
        """Normalise any inclusive ``(low, high)`` pairs (low <= high) into a set."""
        merged: list[list[int]] = []
        for low, high in sorted(ranges):
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1][1] = high
            else:
                merged.append([low, high])
        return cls(tuple(r[0] for r in merged), tuple(r[1] for r in merged))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> RangeSet:
        """Build a set from individual numbers, in any order, duplicates allowed."""
        return cls.from_ranges((n, n) for n in numbers)

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self.starts, self.ends, strict=True))

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        index = bisect.bisect_right(self.starts, number) - 1
        return index >= 0 and number <= self.ends[index]

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self.starts, self.ends, strict=True):
            yield from range(start, end + 1)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in zip(self.starts, self.ends, strict=True))

    def __bool__(self) -> bool:
        return bool(self.starts)

    def clip(self, low: int, high: int) -> RangeSet:
        """The part of this set within ``low..high``."""
        pairs = [
            (max(s, low), min(e, high))
            for s, e in zip(self.starts, self.ends, strict=True)
            if e >= low and s <= high
        ]
        return RangeSet(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def select(self, sorted_numbers: list[int]) -> Iterator[int]:
        """Yield the members of ``sorted_numbers`` (ascending) that are in this set.

        Costs O(ranges * log n + matches): how a UID set is applied to a mailbox's
        sorted UID list without walking every UID the set could name.
        """
        for start, end in zip(self.starts, self.ends, strict=True):
            first = bisect.bisect_left(sorted_numbers, start)
            last = bisect.bisect_right(sorted_numbers, end)
            yield from sorted_numbers[first:last]

    def __str__(self) -> str:
        return ",".join(
            str(start) if start == end else f"{start}:{end}"
            for start, end in zip(self.starts, self.ends, strict=True)
        )


def format_number_runs(numbers: Iterable[int]) -> str:
    """Write numbers in their given order, joining ascending runs: ``1,2,3,7,5`` -> ``1:3,7,5``.

    UIDPLUS ``COPYUID`` pairs its two UID sets element by element, so the order must
    be kept; sorting belongs to the caller where it is wanted.
    """
    parts: list[str] = []
    run_start = run_end = -1
    for number in numbers:
        if run_end >= 0 and number == run_end + 1:
            run_end = number
            continue
        if run_end >= 0:
            parts.append(str(run_start) if run_start == run_end else f"{run_start}:{run_end}")
        run_start = run_end = number
    if run_end >= 0:
        parts.append(str(run_start) if run_start == run_end else f"{run_start}:{run_end}")
    return ",".join(parts)
