"""The NOTIFY watch's parts: the coalescing sink (bounded, overflow), the mailbox
filters of RFC 5465 section 6 matched on names in memory, and the STATUS items."""

from __future__ import annotations

from cryptmail.imap.server.commands._notify_watch import ChangeSink, _matches
from cryptmail.imap.wire._parser_notify import NotifyGroup
from cryptmail.store import MailboxId


async def test_sink_coalesces_and_never_fills() -> None:
    sink = ChangeSink(max_pending=100)
    for _ in range(90):
        sink.put_nowait(MailboxId(7))
    sink.put_nowait(MailboxId(8))
    assert sink.ready.is_set() and not sink.overflowed
    assert sink.take() == {MailboxId(7), MailboxId(8)}
    assert not sink.ready.is_set() and sink.count == 0


async def test_sink_overflows_past_the_limit_and_keeps_nothing() -> None:
    sink = ChangeSink(max_pending=3)
    for i in range(10):
        sink.put_nowait(MailboxId(i))
    assert sink.overflowed and sink.pending == set() and sink.ready.is_set()


def test_filters_match_names() -> None:
    subscribed = {"INBOX", "Lists/ietf"}
    personal = NotifyGroup("PERSONAL", (), ("MessageNew", "MessageExpunge"))
    inboxes = NotifyGroup("INBOXES", (), ())
    assert _matches(personal, "Deep/Folder", None) and _matches(inboxes, "Junk", None)
    sub = NotifyGroup("SUBSCRIBED", (), ())
    assert _matches(sub, "Lists/ietf", subscribed) and not _matches(sub, "Lists", subscribed)
    assert not _matches(sub, "INBOX", None)
    tree = NotifyGroup("SUBTREE", ("Lists",), ())
    assert _matches(tree, "Lists", None) and _matches(tree, "Lists/ietf/x", None)
    assert not _matches(tree, "Listsmore", None) and not _matches(tree, "INBOX", None)
    boxes = NotifyGroup("MAILBOXES", ("INBOX", "Café"), ())
    assert _matches(boxes, "Café", None) and not _matches(boxes, "Café/x", None)
    assert not _matches(NotifyGroup("SELECTED", (), ()), "INBOX", None)
