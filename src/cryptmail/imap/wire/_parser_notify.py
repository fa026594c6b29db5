"""NOTIFY (RFC 5465): ``NOTIFY NONE`` and ``NOTIFY SET [STATUS] (filter events) ...``.

The grammar (RFC 5465 section 8) and its composition rules are checked here, each
violation a BAD: MessageNew and MessageExpunge only together, FlagChange and
AnnotationChange only with both, at most one of SELECTED / SELECTED-DELAYED and only
message events with them. An event this server does not support parses (any atom is an
event-ext) and the handler refuses it with ``NO [BADEVENT (...)]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from cryptmail.imap.wire import _requests as rq
from cryptmail.imap.wire._lexer import Cursor
from cryptmail.imap.wire._parser_fetch import parse_fetch_items

__all__ = [
    "MAILBOX_EVENTS",
    "MESSAGE_EVENTS",
    "Notify",
    "NotifyGroup",
    "parse_notify",
]

MESSAGE_EVENTS: Final = ("MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange")
MAILBOX_EVENTS: Final = (
    "MailboxName", "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange",
)  # fmt: skip
_CANONICAL: Final = {name.upper(): name for name in (*MESSAGE_EVENTS, *MAILBOX_EVENTS)}
_SELECTED_FILTERS: Final = frozenset({"SELECTED", "SELECTED-DELAYED"})
_OTHER_FILTERS: Final = frozenset({"INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"})
MAX_GROUPS: Final = 64
"""Event groups in one NOTIFY; more is no real client's command."""
MAX_NAMES: Final = 100_000
"""Mailbox names one NOTIFY may carry at all (the configured, lower limit answers NO)."""


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One ``(filter events)`` group. ``events`` are canonical names, empty for NONE;
    ``fetch`` is MessageNew's FETCH attribute list."""

    filter: str
    mailboxes: tuple[str, ...]
    events: tuple[str, ...]
    fetch: tuple[rq.FetchItem, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify(rq.Command):
    """NOTIFY; ``groups`` None is NOTIFY NONE. ``status``: SET STATUS."""

    name: ClassVar[str] = "NOTIFY"
    groups: tuple[NotifyGroup, ...] | None
    status: bool = False


NameReader = Callable[[Cursor, bytes], str]
"""The parser's mailbox-name decoding (mUTF-7 or UTF-8), passed in by the parser."""


def _mailboxes(cur: Cursor, read: NameReader) -> tuple[str, ...]:
    """``mailbox / "(" mailbox *(SP mailbox) ")"``."""
    cur.sp()
    names: list[str] = []
    if cur.skip_byte(b"("):
        while True:
            names.append(read(cur, cur.astring()))
            if len(names) > MAX_NAMES:
                raise cur.fail("Too many mailboxes in NOTIFY")
            if cur.skip_byte(b")"):
                break
            cur.sp()
    else:
        names.append(read(cur, cur.astring()))
    return tuple(names)


def _events(cur: Cursor) -> tuple[tuple[str, ...], tuple[rq.FetchItem, ...]]:
    cur.sp()
    if cur.peek() != ord("("):
        if cur.atom("NONE").upper() != "NONE":
            raise cur.fail("Expected an event list or NONE")
        return (), ()
    cur.expect_byte(b"(", "'('")
    events: list[str] = []
    fetch: tuple[rq.FetchItem, ...] = ()
    while True:
        word = cur.atom("an event").upper()
        name = _CANONICAL.get(word, word)
        if name in events:
            raise cur.fail("Event named twice")
        events.append(name)
        if name == "MessageNew" and cur.lookahead(2) == b" (":
            cur.sp()
            fetch = parse_fetch_items(cur)
        if cur.skip_byte(b")"):
            break
        cur.sp()
    return tuple(events), fetch


def _check(group: NotifyGroup, cur: Cursor) -> None:
    """The composition rules of RFC 5465 sections 5 and 6.1 (each a BAD)."""
    events = set(group.events)
    if ("MessageNew" in events) != ("MessageExpunge" in events):
        raise cur.fail("MessageNew and MessageExpunge go together")
    if events & {"FlagChange", "AnnotationChange"} and "MessageNew" not in events:
        raise cur.fail("FlagChange needs MessageNew and MessageExpunge")
    if group.filter in _SELECTED_FILTERS and events & set(MAILBOX_EVENTS):
        raise cur.fail("Only message events apply to the selected mailbox")


def parse_notify(cur: Cursor, tag: str, mailbox: NameReader) -> Notify:
    """After the verb: ``NONE`` or ``SET [STATUS] group...``; raises ParseError."""
    cur.sp()
    word = cur.atom("SET or NONE").upper()
    if word == "NONE":
        cur.expect_end()
        return Notify(tag, None)
    if word != "SET":
        raise cur.fail("Expected SET or NONE")
    status = False
    if cur.lookahead(7).upper() == b" STATUS":
        cur.sp()
        cur.atom()
        status = True
    groups: list[NotifyGroup] = []
    while not cur.at_end() or not groups:
        cur.sp()
        cur.expect_byte(b"(", "'('")
        kind = cur.atom("a mailbox filter").upper()
        names: tuple[str, ...] = ()
        if kind in ("SUBTREE", "MAILBOXES"):
            names = _mailboxes(cur, mailbox)
        elif kind not in _SELECTED_FILTERS | _OTHER_FILTERS:
            raise cur.fail("Unknown mailbox filter")
        events, fetch = _events(cur)
        cur.expect_byte(b")", "')'")
        group = NotifyGroup(kind, names, events, fetch)
        _check(group, cur)
        groups.append(group)
        if len(groups) > MAX_GROUPS:
            raise cur.fail("Too many event groups")
    if sum(g.filter in _SELECTED_FILTERS for g in groups) > 1:
        raise cur.fail("SELECTED and SELECTED-DELAYED may be given once")
    return Notify(tag, tuple(groups), status)
