"""Mailbox names that are not valid modified UTF-7 parse as UndecodableName (the
handler answers NO, as Dovecot does), never as a BAD command."""

from __future__ import annotations

import pytest

from cryptmail.imap.wire import List, Rename, Select, UndecodableName, parse_line


@pytest.mark.parametrize("raw", [b'"&Jjo!"', b'"&AGE"', b'"Caf\xc3\xa9"', b'"&2D0-"'])
def test_undecodable_name_is_a_marker_not_a_parse_error(raw: bytes) -> None:
    command = parse_line(b"a SELECT " + raw)
    assert isinstance(command, Select)
    assert isinstance(command.mailbox, UndecodableName)
    assert command.mailbox.startswith("\x00")  # no stored name can hold a NUL


def test_valid_names_stay_plain_strings() -> None:
    command = parse_line(b'a RENAME "&ZeVnLIqe-" INBOX')
    assert isinstance(command, Rename)
    assert command.mailbox == "日本語" and not isinstance(command.mailbox, UndecodableName)
    assert command.new_name == "INBOX"


def test_list_patterns_may_be_undecodable() -> None:
    command = parse_line(b'a LIST "" (INBOX "&Jjo!*")')
    assert isinstance(command, List)
    assert command.patterns[0] == "INBOX"
    assert isinstance(command.patterns[1], UndecodableName)
