"""Parsing NOTIFY (RFC 5465): both forms, every filter, MessageNew's FETCH attributes,
mUTF-7 and UTF-8 names, and each composition rule refused with BAD (a ParseError)."""

from __future__ import annotations

import pytest

from cryptmail.errors import ParseError
from cryptmail.imap.wire._lexer import Frame
from cryptmail.imap.wire._parser import parse_command, parse_line
from cryptmail.imap.wire._parser_notify import Notify, NotifyGroup
from cryptmail.imap.wire._requests import FetchAttribute


def test_none_and_set_with_every_filter() -> None:
    assert parse_line(b"a notify none") == Notify("a", None)
    command = parse_line(
        b"b NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) messageexpunge FlagChange)) "
        b"(inboxes NONE) (Personal (MailboxName SubscriptionChange)) (SUBSCRIBED NONE) "
        b"(SUBTREE Lists (MessageNew MessageExpunge)) (MAILBOXES (INBOX Caf&AOk-) "
        b"(MessageNew MessageExpunge))"
    )
    assert isinstance(command, Notify) and command.status
    assert command.groups == (
        NotifyGroup(
            "SELECTED",
            (),
            ("MessageNew", "MessageExpunge", "FlagChange"),
            (FetchAttribute("UID"), FetchAttribute("FLAGS")),
        ),
        NotifyGroup("INBOXES", (), ()),
        NotifyGroup("PERSONAL", (), ("MailboxName", "SubscriptionChange")),
        NotifyGroup("SUBSCRIBED", (), ()),
        NotifyGroup("SUBTREE", ("Lists",), ("MessageNew", "MessageExpunge")),
        NotifyGroup("MAILBOXES", ("INBOX", "Café"), ("MessageNew", "MessageExpunge")),
    )


def test_names_are_utf8_after_enable() -> None:
    line = 'a NOTIFY SET (MAILBOXES "Café" (MessageNew MessageExpunge))'.encode()
    command = parse_command(Frame([line], []), utf8=True)
    assert isinstance(command, Notify) and command.groups is not None
    assert command.groups[0].mailboxes == ("Café",)


def test_unknown_events_parse_for_the_handler_to_refuse() -> None:
    command = parse_line(
        b"a NOTIFY SET (PERSONAL (Bogus AnnotationChange MessageNew MessageExpunge))"
    )
    assert isinstance(command, Notify) and command.groups is not None
    assert command.groups[0].events == ("BOGUS", "AnnotationChange", "MessageNew", "MessageExpunge")


@pytest.mark.parametrize(
    "line",
    [
        b"a NOTIFY",
        b"a NOTIFY SET",
        b"a NOTIFY NONE extra",
        b"a NOTIFY LATER",
        b"a NOTIFY SET PERSONAL (MessageNew MessageExpunge)",
        b"a NOTIFY SET (PERSONAL (MessageNew MessageExpunge)",
        b"a NOTIFY SET (PERSONAL)",
        b"a NOTIFY SET (ELSEWHERE (MessageNew MessageExpunge))",
        b"a NOTIFY SET (SUBTREE (MessageNew MessageExpunge))",
        b"a NOTIFY SET (PERSONAL (MessageNew))",
        b"a NOTIFY SET (PERSONAL (MessageExpunge))",
        b"a NOTIFY SET (PERSONAL (FlagChange))",
        b"a NOTIFY SET (PERSONAL (AnnotationChange MessageNew))",
        b"a NOTIFY SET (PERSONAL (MessageNew MessageExpunge MessageNew))",
        b"a NOTIFY SET (SELECTED (MailboxName))",
        b"a NOTIFY SET (SELECTED-DELAYED (SubscriptionChange))",
        b"a NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
        b"a NOTIFY SET (SELECTED (MessageNew (NOSUCH) MessageExpunge))",
        b"a NOTIFY SET (PERSONAL SOME)",
    ],
)
def test_malformed_or_against_the_rules_is_bad(line: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        parse_line(line)
    assert caught.value.tag == "a"


def test_group_count_is_bounded() -> None:
    groups = b" ".join(b"(PERSONAL NONE)" for _ in range(65))
    with pytest.raises(ParseError):
        parse_line(b"a NOTIFY SET " + groups)
