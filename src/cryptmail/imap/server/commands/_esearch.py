"""The ``* ESEARCH`` answer of SEARCH and SORT with RETURN (RFC 4731, 5267, 5182).

One writer for both, so MIN, MAX, ALL, COUNT and PARTIAL read the same: for SEARCH the
numbers come ascending, for SORT in sort order (MIN and MAX are then the first and
last in that order, RFC 5267 section 3). SAVE, UPDATE and CONTEXT ask for no data
themselves; a RETURN that holds only them gets an ESEARCH line without data (only SAVE:
none at all, RFC 5182 section 2.1), as Dovecot answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptmail.imap.wire._sequence import RangeSet, format_number_runs

__all__ = ["RESULT_OPTIONS", "esearch_line", "saved_numbers"]

RESULT_OPTIONS: Final = frozenset({"MIN", "MAX", "ALL", "COUNT"})


def _result_options(returns: Sequence[str], partial: tuple[int, int] | None) -> set[str]:
    if not returns and partial is None:
        return {"ALL"}  # RFC 4731: RETURN () means ALL
    return set(returns) & RESULT_OPTIONS


def _numbers(numbers: Sequence[int], *, ordered: bool) -> str:
    return format_number_runs(numbers) if ordered else str(RangeSet.from_numbers(numbers))


def esearch_line(
    tag: str,
    numbers: Sequence[int],
    returns: Sequence[str],
    *,
    uid: bool = False,
    partial: tuple[int, int] | None = None,
    ordered: bool = False,
    modseq: int = 0,
) -> bytes:
    """The ESEARCH response for ``numbers`` (ascending, or in sort order if ``ordered``);
    empty when the options ask for nothing (RETURN (SAVE) alone)."""
    wanted = _result_options(returns, partial)
    if not wanted and partial is None and set(returns) <= {"SAVE"}:
        return b""
    out = b'* ESEARCH (TAG "' + tag.encode() + b'")'
    if uid:
        out += b" UID"
    if numbers and "MIN" in wanted:
        out += b" MIN %d" % (numbers[0] if ordered else min(numbers))
    if numbers and "MAX" in wanted:
        out += b" MAX %d" % (numbers[-1] if ordered else max(numbers))
    if numbers and "ALL" in wanted:
        out += b" ALL " + _numbers(numbers, ordered=ordered).encode()
    if partial is not None:
        first, last = partial
        window = list(numbers if ordered else sorted(numbers))[first - 1 : last]
        found = _numbers(window, ordered=ordered).encode() if window else b"NIL"
        out += b" PARTIAL (%d:%d %s)" % (first, last, found)
    if "COUNT" in wanted:
        out += b" COUNT %d" % len(numbers)
    if modseq:
        out += b" MODSEQ %d" % modseq
    return out + b"\r\n"


def saved_numbers(returns: Sequence[str], numbers: Sequence[int]) -> list[int]:
    """What SAVE keeps (RFC 5182 section 2.4): with MIN and/or MAX and neither ALL nor
    COUNT, only the smallest and/or largest; otherwise every match."""
    chosen = set(returns)
    if not numbers or chosen & {"ALL", "COUNT"} or not chosen & {"MIN", "MAX"}:
        return list(numbers)
    kept = set()
    if "MIN" in chosen:
        kept.add(min(numbers))
    if "MAX" in chosen:
        kept.add(max(numbers))
    return sorted(kept)
