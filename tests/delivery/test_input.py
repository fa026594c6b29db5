"""LmtpInput: command lines and chunked DATA against a line-by-line model of RFC 5321 4.5.2."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.delivery._input import LineTooLong, LmtpInput, find_line_start_dot


class _Pieces:
    """A socket that hands out exactly the given pieces, one per read."""

    def __init__(self, pieces: list[bytes], eof: bool) -> None:
        self._pieces = list(pieces)
        self._eof = eof

    async def read(self, n: int) -> bytes:
        if not self._pieces:
            if self._eof:
                return b""
            await asyncio.sleep(3600)
        piece = self._pieces.pop(0)
        if len(piece) > n:
            self._pieces.insert(0, piece[n:])
        return piece[:n]


def _reader(pieces: list[bytes], *, eof: bool = True) -> _Pieces:
    return _Pieces(pieces, eof)


def _model(stream: bytes) -> tuple[bytes, bytes] | None:
    """(content, rest) as a line-based reader sees it; None if DATA never ends.

    Lines start at the beginning and after CRLF only; a line that is exactly ".CRLF"
    ends DATA; a leading dot of any other line is removed.
    """
    content = bytearray()
    position = 0
    while True:
        end = stream.find(b"\r\n", position)
        if end < 0:
            return None
        line = stream[position : end + 2]
        if line == b".\r\n":
            return bytes(content), stream[end + 2 :]
        content += line[1:] if line.startswith(b".") else line
        position = end + 2


async def _read_data(pieces: list[bytes]) -> tuple[bytes, bytes]:
    lmtp = LmtpInput(_reader(pieces), idle_timeout_s=5)
    content = b"".join([piece async for piece in lmtp.data()])
    rest = bytearray()
    try:
        while True:
            rest += await lmtp.readline(10**9)
    except EOFError:
        pass
    return content, bytes(rest + lmtp._buffer)


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


CASES = [
    b".\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
    b"..leading dot\r\n...two\r\n.\r\n",
    b"a\n.\nb\r\n.\r\n",  # bare LF dot: content, not the end
    b"a\r\n.\nstill\r\n.\r\n",  # dot + bare LF: not the end either
    b"a\r.\r\nb\r\n.\r\n",  # bare CR before the dot
    b"x\r\n.\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",  # pipelined commands after the dot
    b"\r\n.\r\n",  # one empty line
    b".x\r\n.\r\n",
    b"line\r\n..\r\n.\r\n",  # a stuffed lone dot
]


@pytest.mark.parametrize("stream", CASES)
async def test_known_streams_in_every_two_piece_split(stream: bytes) -> None:
    expected = _model(stream)
    assert expected is not None
    for cut in range(len(stream) + 1):
        assert await _read_data(_split(stream, [cut])) == expected


async def test_byte_by_byte() -> None:
    stream = b"..a\r\nb\r\n.c\r\n\r\n.\r\nNOOP\r\n"
    assert await _read_data([bytes([b]) for b in stream]) == _model(stream)


_ALPHABET = st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"x", b"..", b"\r\n.\r\n"])


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(_ALPHABET, max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
)
def test_matches_the_line_model_for_any_stream_and_split(body: bytes, cuts: list[int]) -> None:
    stream = body + b"\r\n.\r\nQUIT\r\n"
    expected = _model(stream)
    assert expected is not None
    assert asyncio.run(_read_data(_split(stream, cuts))) == expected


async def test_eof_before_the_final_dot() -> None:
    lmtp = LmtpInput(_reader([b"no end\r\n.\n"]), idle_timeout_s=5)
    with pytest.raises(EOFError):
        [piece async for piece in lmtp.data()]


async def test_idle_client_times_out() -> None:
    lmtp = LmtpInput(_reader([b"partial"], eof=False), idle_timeout_s=0.05)
    with pytest.raises(TimeoutError):
        [piece async for piece in lmtp.data()]


async def test_large_content_comes_in_bounded_pieces() -> None:
    body = (b"0123456789" * 100 + b"\r\n") * 2000  # ~2 MB
    lmtp = LmtpInput(_reader([body, b".\r\n"]), idle_timeout_s=5)
    pieces = [piece async for piece in lmtp.data()]
    assert b"".join(pieces) == body
    assert max(len(p) for p in pieces) <= 64 * 1024 + 4


async def test_readline_limits_and_consumes_an_overlong_line() -> None:
    lmtp = LmtpInput(_reader([b"A" * 5000, b"B" * 5000 + b"\r\nNOOP\r\n"]), idle_timeout_s=5)
    with pytest.raises(LineTooLong):
        await lmtp.readline(512)
    assert await lmtp.readline(512) == b"NOOP\r\n"
    with pytest.raises(EOFError):
        await lmtp.readline(512)


async def test_readline_just_over_the_limit_within_one_read() -> None:
    lmtp = LmtpInput(_reader([b"x" * 11 + b"\r\n", b"QUIT\r\n"]), idle_timeout_s=5)
    with pytest.raises(LineTooLong):
        await lmtp.readline(12)
    assert await lmtp.readline(12) == b"QUIT\r\n"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"a", b".."]), max_size=60),
    st.integers(min_value=0, max_value=8),
)
def test_find_line_start_dot_is_the_plain_find(parts: list[bytes], start: int) -> None:
    """The dot-first search answers what `bytearray.find(b"\\r\\n.")` answers, for
    content with no dots, few, and more than it checks one by one."""
    buffer = bytearray(b"".join(parts))
    assert find_line_start_dot(buffer, start) == buffer.find(b"\r\n.", start)


def test_find_line_start_dot_after_many_dots_mid_line() -> None:
    text = bytearray(b"a. b. c. d. e. f. g. h. i. j.\r\n..x\r\n.\r\n")
    assert find_line_start_dot(text) == text.find(b"\r\n.") == 29
