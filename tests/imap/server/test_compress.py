# mypy: disable-error-code="index, operator, arg-type, union-attr"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""COMPRESS=DEFLATE: the bounded stream, and live compressed sessions side by side."""

from __future__ import annotations

import os
import socket
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.imap.server._compress import (
    INFLATE_FLOOR,
    INFLATE_RATIO,
    DeflateStream,
    InflateLimit,
)

from ..compress_client import CompressedIMAP4
from ..raw_client import RawClient
from ..server_rig import PASSWORD, USER, ImapRig, start_rig

OTHER = "carol@example.org"
OTHER_PASSWORD = "carol password 3"


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _drain_stream(stream: DeflateStream, chunk: bytes) -> bytes:
    out = stream.inflate(chunk)
    while stream.pending:
        out += stream.more()
    return out


# -- the stream ------------------------------------------------------------------------


def test_round_trip_in_bounded_steps() -> None:
    text = os.urandom(300_000).hex().encode()  # about 2:1, 600 KB
    stream = DeflateStream(65536)
    steps = [stream.inflate(_deflate(text))]
    while stream.pending:
        steps.append(stream.more())
    assert b"".join(steps) == text
    assert max(len(s) for s in steps) <= 65536 and len(steps) >= 9
    # Output: compress, flush, and raw inflate give it all back.
    wire = stream.compress(b"* OK hello\r\n") + stream.flush()
    assert zlib.decompressobj(-15).decompress(wire) == b"* OK hello\r\n"
    assert stream.flush() == b""  # nothing new to push


def test_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = _deflate(b"A" * (64 * 1024 * 1024))  # 64 MiB from about 64 KB
    stream = DeflateStream(65536)
    seen = 0
    with pytest.raises(InflateLimit, match="inflates too much"):
        seen += len(stream.inflate(bomb[:4096]))
        while stream.pending:
            seen += len(stream.more())
    assert seen <= max(INFLATE_FLOOR, INFLATE_RATIO * 4096)


def test_ratio_within_the_bound_is_accepted() -> None:
    data = b"Subject: x\r\n" + b"line of text\r\n" * 50_000  # about 700 KB, very regular
    stream = DeflateStream(65536)
    assert _drain_stream(stream, _deflate(data)) == data


def test_invalid_data_and_end_of_stream_are_refused() -> None:
    with pytest.raises(InflateLimit, match="Invalid"):
        DeflateStream(65536).inflate(b"\xff\xff\xff\xff garbage")
    finished = zlib.compressobj(6, zlib.DEFLATED, -15)
    ended = finished.compress(b"a1 NOOP\r\n") + finished.flush()  # Z_FINISH
    stream = DeflateStream(65536)
    assert _drain_stream(stream, ended) == b"a1 NOOP\r\n"
    with pytest.raises(InflateLimit, match="ended"):
        stream.inflate(b"more")


# -- live sessions -----------------------------------------------------------------------


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _compressed(rig: ImapRig, user: str = USER, password: str = PASSWORD) -> CompressedIMAP4:
    imap = CompressedIMAP4("127.0.0.1", rig.port)
    imap.login(user, password)
    assert b"COMPRESS=DEFLATE" in imap.capability()[1][0].split()
    assert imap.compress() == "OK"
    return imap


def test_compressed_sessions_of_two_users_at_once(rig: ImapRig) -> None:
    rig.add_user(OTHER, OTHER_PASSWORD)
    big = b"Subject: big\r\n\r\n" + b"".join(
        b"line %06d of the body\r\n" % i for i in range(60_000)
    )
    failures: list[BaseException] = []

    def session(number: int) -> None:
        try:
            user, password = (USER, PASSWORD) if number % 2 else (OTHER, OTHER_PASSWORD)
            imap = _compressed(rig, user, password)
            message = big.replace(b"Subject: big", b"Subject: big %d" % number)
            typ, _ = imap.append("INBOX", None, None, message)
            assert typ == "OK"
            imap.select("INBOX")
            typ, data = imap.uid("SEARCH", f'SUBJECT "big {number}"')
            uid = data[0].split()[-1]
            typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[] RFC822.SIZE)")
            assert typ == "OK" and data[0][1] == message
            typ, data = imap.status("INBOX", "(MESSAGES)")
            assert typ == "OK"
            imap.logout()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures


def test_idle_pushes_through_the_compressed_stream(rig: ImapRig) -> None:
    imap = _compressed(rig)
    imap.select("INBOX")
    tag = imap._new_tag()
    imap.send(tag + b" IDLE\r\n")
    assert imap.readline().startswith(b"+")
    rig.deliver(b"Subject: while idle\r\n\r\nhi\r\n")
    assert imap.readline() == b"* 1 EXISTS\r\n"  # pushed at once: the flush works
    imap.send(b"DONE\r\n")
    while not (line := imap.readline()).startswith(tag):
        pass
    assert b" OK " in line
    imap.logout()


def test_bomb_ends_the_connection_with_bye(rig: ImapRig) -> None:
    imap = _compressed(rig)
    # An APPEND literal of 40 MiB of zeros (under APPENDLIMIT) in about 40 KB.
    bomb = _deflate(b"a9 APPEND INBOX {41943040+}\r\n" + b"\0" * 41943040)
    imap.send_raw(bomb)
    lines = []
    while line := imap.readline():
        lines.append(line)
    imap.shutdown()  # the server hung up: only our side is left to close
    assert lines and lines[-1].startswith(b"* BYE Compressed input inflates too much"), lines
    # Nothing was stored; the account works in a new session.
    again = _compressed(rig)
    typ, data = again.status("INBOX", "(MESSAGES)")
    assert data[0].endswith(b"(MESSAGES 0)")
    again.logout()


def test_garbage_after_compress_ends_the_connection(rig: ImapRig) -> None:
    imap = _compressed(rig)
    imap.send_raw(b"a2 NOOP\r\n")  # plain text where deflate data must come
    lines = []
    while line := imap.readline():
        lines.append(line)
    imap.shutdown()  # the server hung up: only our side is left to close
    assert lines == [b"* BYE Invalid compressed data.\r\n"]


def test_refusals(rig: ImapRig) -> None:
    client = RawClient.connect(rig.port)
    _, done = client.ask(b"COMPRESS DEFLATE")
    assert done.endswith(b"BAD Log in first.")
    client.login()
    _, done = client.ask(b"COMPRESS LZMA")
    assert b" BAD " in done
    _, done = client.ask(b"COMPRESS")
    assert b" BAD " in done
    # Pipelined after COMPRESS: those bytes are neither plain nor compressed for sure.
    client.send(b"t9 COMPRESS DEFLATE\r\nt10 NOOP\r\n")
    assert client.line() == b"* BYE COMPRESS must be the last command before compression.\r\n"
    assert client.line() == b""
    imap = _compressed(rig)
    typ, data = imap._simple_command("COMPRESS", "DEFLATE")
    assert typ == "NO" and b"[COMPRESSIONACTIVE]" in data[-1]
    typ, _ = imap.noop()
    assert typ == "OK"
    imap.logout()


def test_several_sessions_from_one_address_mixed(rig: ImapRig) -> None:
    plain = RawClient.connect(rig.port)
    plain.login()
    sessions = [_compressed(rig) for _ in range(3)]
    rig.deliver(b"Subject: shared\r\n\r\nfor every session\r\n")
    for imap in sessions:
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(BODY.PEEK[TEXT])")
        assert data[0][1] == b"for every session\r\n"
    untagged, _ = plain.ask(b"STATUS INBOX (MESSAGES)")
    assert untagged == [b"* STATUS INBOX (MESSAGES 1)"]
    for imap in sessions:
        imap.logout()
    with socket.create_connection(("127.0.0.1", rig.port)) as sock:
        assert b"COMPRESS" not in sock.recv(4096)  # not before login
