"""Evaluating a parsed SEARCH program against messages.

The store supplies each message as a :class:`MessageView`; :func:`compile_search`
turns the program into one predicate, with the cheap tests (flags, numbers, dates)
run before the costly ones (headers, then bodies) inside every AND, so most messages
are decided without reading any text.

Semantics, after RFC 3501 section 6.4.4 and Dovecot:

* BEFORE / ON / SINCE compare the day of the internal date, SENTBEFORE / SENTON /
  SENTSINCE the day of the Date: header, each in its own time zone (``tz`` in the
  context overrides that for internal dates); a message without a usable Date: counts
  as sent on 1 Jan 1970, as in Dovecot;
* header keys match a case-insensitive substring of the decoded value (encoded words
  decoded) of any field of that name; address fields (From, To, Cc, Bcc, Sender,
  Reply-To) are matched in their parsed and rewritten form, as Dovecot does; an empty
  string matches when the field exists;
* BODY and TEXT match the decoded text (transfer encoding and charset undone);
* NEW is RECENT UNSEEN, OLD is NOT RECENT; keywords compare case-insensitively;
* ``*`` in a sequence or UID set means the largest number in the mailbox.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptmail.imap.message._envelope import parse_addresses, write_addresses
from cryptmail.imap.message._textsearch import decode_header_value, fold_text, stream_contains
from cryptmail.imap.wire._requests import (
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOlder,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)

__all__ = [
    "MessageView",
    "Oracle",
    "SearchContext",
    "compile_search",
    "search",
    "searchable_header",
]


class MessageView(Protocol):
    """What SEARCH needs to know about one message; the store implements it."""

    @property
    def uid(self) -> int: ...

    @property
    def sequence(self) -> int: ...

    @property
    def flags(self) -> frozenset[str]:
        """System flags (``\\Seen``, ``\\Recent``, ...) and keywords."""
        ...

    @property
    def internal_date(self) -> dt.datetime: ...

    @property
    def save_date(self) -> dt.datetime:
        """RFC 8514 save date; the internal date where none was recorded."""
        ...

    @property
    def size(self) -> int:
        """RFC822.SIZE."""
        ...

    @property
    def modseq(self) -> int: ...

    def header_values(self, name: str) -> Sequence[bytes]:
        """Raw values of every top-level header field called ``name`` (any case)."""
        ...

    def text(self, *, include_headers: bool) -> Iterable[str]:
        """Decoded message text in chunks (see ``iter_message_text``)."""
        ...


Oracle = Callable[[SearchKey, MessageView], bool | None]
"""What a search index knows of one text or header key on one message: True (matches),
False (cannot match) or None (read the message)."""


@dataclass(frozen=True, slots=True)
class SearchContext:
    """Mailbox facts a program needs: largest UID and sequence number, the clock; and
    an `oracle` (the full-text index) that may decide text and header keys unread."""

    largest_uid: int
    largest_sequence: int
    now: dt.datetime
    tz: dt.tzinfo | None = None
    oracle: Oracle | None = None
    saved: frozenset[int] = frozenset()
    """UIDs of the saved search result, what ``$`` names (RFC 5182)."""


Predicate = Callable[[MessageView], bool]

_COST_CHEAP, _COST_HEADER, _COST_TEXT = 0, 1, 2


def _day_of(stamp: dt.datetime, tz: dt.tzinfo | None) -> dt.date:
    if tz is not None and stamp.tzinfo is not None:
        return stamp.astimezone(tz).date()
    return stamp.date()


_EPOCH_DAY = dt.date(1970, 1, 1)


def _sent_day(view: MessageView) -> dt.date:
    """The Date: header's day in its own zone; 1 Jan 1970 when missing or unreadable
    (Dovecot's sent date is then 0)."""
    values = view.header_values("Date")
    if not values:
        return _EPOCH_DAY
    try:
        parsed = email.utils.parsedate_to_datetime(decode_header_value(values[0]))
    except (TypeError, ValueError, IndexError, OverflowError):
        return _EPOCH_DAY
    return parsed.date()


def _compare(day: dt.date | None, relation: str, date: dt.date) -> bool:
    if day is None:
        return False
    if relation == "before":
        return day < date
    if relation == "on":
        return day == date
    return day >= date


def _flag_test(key: SearchFlag) -> Predicate:
    wanted = key.flag.lower()

    def test(view: MessageView) -> bool:
        has = any(flag.lower() == wanted for flag in view.flags)
        return has == key.present

    return test


_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})
_BLANKS = re.compile(" {2,}")


def searchable_header(name: str, value: bytes) -> str:
    """The folded form of one raw header value that a header key's string is sought in
    (the full-text index stores the words of exactly this)."""
    if name.lower() in _ADDRESS_HEADERS:
        # Dovecot matches address fields in their parsed and rewritten form.
        return fold_text(decode_header_value(write_addresses(parse_addresses(value))))
    # Unstructured fields compare with blank runs squeezed to one space.
    return _BLANKS.sub(" ", fold_text(decode_header_value(value)))


def _header_test(key: SearchHeader) -> Predicate:
    needle = fold_text(key.value)
    name = key.field

    def test(view: MessageView) -> bool:
        values = view.header_values(name)
        if not values:
            return False
        if not needle:
            return True
        return any(needle in searchable_header(name, value) for value in values)

    return test


def _consult(oracle: Oracle | None, key: SearchKey, test: Predicate) -> Predicate:
    if oracle is None:
        return test

    def consulted(view: MessageView) -> bool:
        known = oracle(key, view)
        return test(view) if known is None else known

    return consulted


def _compile(key: SearchKey, ctx: SearchContext, depth: int = 0) -> tuple[Predicate, int]:
    if depth > 200:
        raise ValueError("search program nests too deeply")
    if isinstance(key, SearchAnd):
        parts = sorted(
            (_compile(sub, ctx, depth + 1) for sub in key.keys), key=lambda item: item[1]
        )
        tests = [test for test, _cost in parts]
        cost = max((c for _t, c in parts), default=_COST_CHEAP)
        return (lambda view: all(test(view) for test in tests)), cost
    if isinstance(key, SearchOr):
        left, left_cost = _compile(key.left, ctx, depth + 1)
        right, right_cost = _compile(key.right, ctx, depth + 1)
        if right_cost < left_cost:
            left, right = right, left
        return (lambda view: left(view) or right(view)), max(left_cost, right_cost)
    if isinstance(key, SearchNot):
        inner, cost = _compile(key.key, ctx, depth + 1)
        return (lambda view: not inner(view)), cost
    if isinstance(key, SearchFlag):
        return _flag_test(key), _COST_CHEAP
    if isinstance(key, SearchSequence) and key.sequence.saved:
        saved = ctx.saved
        return (lambda view: view.uid in saved), _COST_CHEAP
    if isinstance(key, SearchSequence):
        largest = ctx.largest_uid if key.uid else ctx.largest_sequence
        ranges = key.sequence.resolve(largest)
        if key.uid:
            return (lambda view: view.uid in ranges), _COST_CHEAP
        return (lambda view: view.sequence in ranges), _COST_CHEAP
    if isinstance(key, SearchSize):
        if key.relation == "larger":
            return (lambda view: view.size > key.size), _COST_CHEAP
        return (lambda view: view.size < key.size), _COST_CHEAP
    if isinstance(key, SearchModSeq):
        return (lambda view: view.modseq >= key.modseq), _COST_CHEAP
    if isinstance(key, SearchOlder):
        limit = dt.timedelta(seconds=key.seconds)

        def age_test(view: MessageView) -> bool:
            age = ctx.now - view.internal_date
            return age >= limit if key.older else age <= limit

        return age_test, _COST_CHEAP
    if isinstance(key, SearchDate):
        if key.sent:
            return (lambda view: _compare(_sent_day(view), key.relation, key.date)), (_COST_HEADER)
        if key.saved:
            return (
                lambda view: _compare(_day_of(view.save_date, ctx.tz), key.relation, key.date)
            ), _COST_CHEAP
        return (
            lambda view: _compare(_day_of(view.internal_date, ctx.tz), key.relation, key.date)
        ), _COST_CHEAP
    if isinstance(key, SearchHeader):
        return _consult(ctx.oracle, key, _header_test(key)), _COST_HEADER
    if isinstance(key, SearchText):
        needle = key.value
        return _consult(
            ctx.oracle,
            key,
            lambda view: stream_contains(view.text(include_headers=key.include_headers), needle),
        ), _COST_TEXT
    raise TypeError(f"not a search key: {type(key).__name__}")


def compile_search(program: SearchAnd, context: SearchContext) -> Predicate:
    """One predicate for the whole program (cheap tests first inside each AND)."""
    test, _cost = _compile(program, context)
    return test


def search(
    program: SearchAnd, context: SearchContext, messages: Iterable[MessageView]
) -> list[MessageView]:
    """The messages the program matches, in the order given."""
    test = compile_search(program, context)
    return [view for view in messages if test(view)]
