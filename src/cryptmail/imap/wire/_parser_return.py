"""``RETURN (...)`` of SEARCH and SORT: ESEARCH (RFC 4731), SEARCHRES's SAVE (RFC 5182)
and CONTEXT's UPDATE, CONTEXT and PARTIAL (RFC 5267).

One parser for both commands, so SEARCH and SORT refuse the same malformed options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptmail.imap.wire._lexer import Cursor
from cryptmail.imap.wire._sequence import MAX_NUMBER

__all__ = ["RETURN_OPTIONS", "ReturnOptions", "parse_return_options"]

RETURN_OPTIONS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT"})
"""Options without an argument; PARTIAL takes a range."""
_MAX_OPTIONS: Final = 16


@dataclass(frozen=True, slots=True)
class ReturnOptions:
    """What ``RETURN (...)`` asked for: upper-case option names in the order first
    given, without duplicates, and PARTIAL's (first, last) positions (1-based,
    first <= last) when given."""

    names: tuple[str, ...]
    partial: tuple[int, int] | None = None


def _partial_range(cur: Cursor) -> tuple[int, int]:
    # RFC 5267: partial-range = nz-number ":" nz-number (positions in the result).
    first = cur.number(nonzero=True, limit=MAX_NUMBER)
    cur.expect_byte(b":", "':' in the PARTIAL range")
    last = cur.number(nonzero=True, limit=MAX_NUMBER)
    return min(first, last), max(first, last)


def parse_return_options(cur: Cursor) -> ReturnOptions:
    """Parse ``RETURN SP "(" [option *(SP option)] ")"`` (the cursor is at RETURN).

    Raises:
        ParseError: an unknown option, a zero or out-of-range PARTIAL position, PARTIAL
            twice, or PARTIAL together with ALL (RFC 5267 4.4: they exclude each other).
    """
    cur.atom()
    cur.sp()
    cur.expect_byte(b"(", "'('")
    names: list[str] = []
    partial: tuple[int, int] | None = None
    count = 0
    while not cur.skip_byte(b")"):
        if count:
            cur.sp()
        count += 1
        if count > _MAX_OPTIONS:
            raise cur.fail("Too many RETURN options")
        word = cur.atom("a RETURN option").upper()
        if word == "PARTIAL":
            if partial is not None:
                raise cur.fail("PARTIAL given twice")
            cur.sp()
            partial = _partial_range(cur)
        elif word in RETURN_OPTIONS:
            names.append(word)
        else:
            raise cur.fail("Unknown RETURN option")
    if partial is not None and "ALL" in names:
        raise cur.fail("PARTIAL and ALL cannot be used together")
    return ReturnOptions(tuple(dict.fromkeys(names)), partial)
