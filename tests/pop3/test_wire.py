"""Framing, parsing and message writing, pure: byte-exact whatever the piece borders."""

from __future__ import annotations

import pytest

from cryptmail.pop3._wire import (
    MAX_LINE,
    TOO_LONG,
    CommandError,
    LineReader,
    MessageWriter,
    crlf_size,
    err,
    multiline,
    ok,
    parse_command,
)


def _write(message: bytes, pieces: list[int], body_lines: int | None = None) -> bytes:
    writer = MessageWriter(body_lines)
    out, start = b"", 0
    for end in [*pieces, len(message)]:
        out += writer.feed(message[start:end])
        start = end
        if writer.done:
            break
    return out + writer.finish()


def _reference(message: bytes) -> bytes:
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


MESSAGES = [
    b"",
    b"a",
    b".",
    b"Subject: x\r\n\r\n.\r\n..\r\nend\r\n",
    b"Subject: x\n\n.dot\nbare\r\nmixed\n.",
    b"\r\n.leading blank\r\n",
    b"cr\ronly\r\n.x",
]


@pytest.mark.parametrize("message", MESSAGES)
def test_retr_is_byte_exact_at_every_split(message: bytes) -> None:
    expected = _reference(message) if b"\r" not in message.replace(b"\r\n", b"") else None
    whole = _write(message, [])
    if expected is not None:
        assert whole == expected
    for cut in range(len(message) + 1):
        assert _write(message, [cut]) == whole
    assert _write(message, list(range(1, len(message)))) == whole
    # The size counts what is sent, without the stuffed dots and the terminator.
    unstuffed = whole[:-3].replace(b"\r\n..", b"\r\n.")
    if unstuffed.startswith(b".."):
        unstuffed = unstuffed[1:]
    if not message.replace(b"\r\n", b"\n").endswith(b"\n") and message:
        unstuffed = unstuffed[:-2]  # the CRLF added before the terminator
    assert crlf_size([message]) == len(unstuffed)


def test_a_lone_cr_is_kept() -> None:
    assert _write(b"a\rb\r\n", []) == b"a\rb\r\n.\r\n"
    assert crlf_size([b"a\r", b"\nb\n"]) == len(b"a\r\nb\r\n")


def test_top_sends_the_header_and_n_body_lines() -> None:
    message = b"A: 1\r\nB: 2\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"
    assert _write(message, [], 0) == b"A: 1\r\nB: 2\r\n\r\n.\r\n"
    assert _write(message, [], 2) == b"A: 1\r\nB: 2\r\n\r\nline 1\r\n..line 2\r\n.\r\n"
    assert _write(message, [], 99) == _write(message, [])
    for cut in range(len(message)):
        assert _write(message, [cut], 1) == b"A: 1\r\nB: 2\r\n\r\nline 1\r\n.\r\n"
    # A message with no body, or no line end at all.
    assert _write(b"A: 1", [], 5) == b"A: 1\r\n.\r\n"
    assert _write(b"A: 1\nB: 2\n", [], 0) == b"A: 1\r\nB: 2\r\n.\r\n"


def test_line_reader_frames_and_refuses_long_lines() -> None:
    reader = LineReader()
    reader.feed(b"USER a\r\nPA")
    assert reader.next_line() == b"USER a"
    assert reader.next_line() is None
    assert reader.buffered == 2
    reader.feed(b"SS x\nNOOP\r\n")
    assert reader.next_line() == b"PASS x"
    assert reader.next_line() == b"NOOP"
    reader.feed(b"x" * (MAX_LINE * 3))
    assert reader.next_line() is None
    assert reader.buffered <= MAX_LINE
    reader.feed(b"y" * 10 + b"\r\nSTAT\r\n")
    assert reader.next_line() is TOO_LONG
    assert reader.next_line() == b"STAT"
    reader.feed(b"z" * MAX_LINE + b"\n")
    assert reader.next_line() is TOO_LONG


def test_parse_command() -> None:
    assert parse_command(b"retr 1").verb == "RETR"
    assert parse_command(b"TOP 1 10").args == ("1", "10")
    assert parse_command(b"PASS with  spaces ").args == ("with  spaces ",)
    assert parse_command(b"PASS").args == ()
    for bad, reason in [
        (b"", "Unknown command."),
        (b"\xff", "Invalid characters in the command."),
        (b"RETR\x001", "Unknown command."),
        (b"R3TR 1", "Unknown command."),
        (b"TOP 1 2 3", "Invalid arguments."),
        (b"LIST  1", "Invalid arguments."),
    ]:
        with pytest.raises(CommandError, match=reason.replace(".", r"\.")):
            parse_command(bad)
    assert "secret" not in repr(parse_command(b"PASS secret"))


def test_replies() -> None:
    assert ok("x") == b"+OK x\r\n"
    assert err("x", "AUTH") == b"-ERR [AUTH] x\r\n"
    assert err("x") == b"-ERR x\r\n"
    assert multiline(ok("a"), ["1 2"]) == b"+OK a\r\n1 2\r\n.\r\n"
