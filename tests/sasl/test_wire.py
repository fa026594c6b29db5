"""The auth protocol's lines: escaping, parsing, the handshake."""

from __future__ import annotations

import pytest

from cryptmail.sasl._wire import (
    ProtocolError,
    escape,
    handshake,
    line,
    options,
    parse_line,
    unescape,
)


@pytest.mark.parametrize("value", ["plain", "a\tb", "cr\rlf\n", "nul\x00", "soh\x01", ""])
def test_escape_round_trips_and_leaves_no_separator(value: str) -> None:
    escaped = escape(value)
    assert "\t" not in escaped and "\n" not in escaped and "\r" not in escaped
    assert unescape(escaped) == value


def test_unknown_escape_writes_the_character_itself() -> None:
    assert unescape("a\x01xb") == "axb"
    assert unescape("trailing\x01") == "trailing"


def test_parse_line_splits_and_unescapes() -> None:
    assert parse_line(b"AUTH\t1\tPLAIN\tservice=smtp\tuser=a\x01tb\n") == (
        "AUTH",
        ["1", "PLAIN", "service=smtp", "user=a\tb"],
    )


@pytest.mark.parametrize("raw", [b"\n", b"\xff\xfe\n", b"\tAUTH\n"])
def test_parse_line_refuses_empty_commands_and_bad_utf8(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_line(raw)


def test_options_keeps_flags_and_the_first_of_each_name() -> None:
    assert options(["service=smtp", "secured", "resp=AA==", "resp=other"]) == {
        "service": "smtp",
        "secured": "",
        "resp": "AA==",
    }


def test_line_escapes_its_parameters() -> None:
    assert line("FAIL", "7", "reason=a\tb") == b"FAIL\t7\treason=a\x01tb\n"


def test_handshake_names_version_mechanisms_and_ends_with_done() -> None:
    lines = handshake([("PLAIN", "plaintext"), ("LOGIN", "plaintext")], 3).split(b"\n")
    assert lines[0] == b"VERSION\t1\t2"
    assert lines[1:3] == [b"MECH\tPLAIN\tplaintext", b"MECH\tLOGIN\tplaintext"]
    assert lines[3].startswith(b"SPID\t") and lines[4] == b"CUID\t3"
    assert lines[5].startswith(b"COOKIE\t") and len(lines[5]) == len(b"COOKIE\t") + 32
    assert lines[6:] == [b"DONE", b""]
