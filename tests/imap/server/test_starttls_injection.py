"""STARTTLS must not carry plaintext bytes into the TLS session (CVE-2011-0411 class).

Bytes the client sent after ``STARTTLS`` and before its TLS handshake were read in
plaintext; letting them survive into the session would run them as if they had come
over TLS. The server refuses such a connection with ``* BYE`` and closes it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.imap.server._session import unread_plaintext
from cryptmail.imap.wire._reader import CommandReader

from ..server_rig import PASSWORD, USER, ImapRig, start_rig

_INJECTED = f'inj LOGIN {USER} "{PASSWORD}"\r\n'.encode()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _connect(rig: ImapRig) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", rig.port), timeout=20)
    greeting = sock.recv(4096)
    assert greeting.startswith(b"* OK")
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def _tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _assert_refused(received: bytes) -> None:
    assert b"* BYE" in received, received[-300:]
    assert b"Begin TLS" not in received
    assert b"inj OK" not in received


@pytest.mark.parametrize("padding", [0, 80 * 1024], ids=["short", "80KB"])
def test_pipelined_bytes_in_the_same_packet_are_refused(rig: ImapRig, padding: int) -> None:
    sock = _connect(rig)
    with sock:
        sock.sendall(b"a STARTTLS\r\n" + b"\r\n" * (padding // 2) + _INJECTED)
        _assert_refused(_read_until_closed(sock))


def test_starttls_line_ending_on_the_read_boundary(rig: ImapRig) -> None:
    # NOOPs put the end of the STARTTLS line on the server's 64 KiB read boundary, so
    # the rest waits in the asyncio StreamReader's buffer rather than in the parser.
    starttls = b"a STARTTLS\r\n"
    noop = b"n NOOP\r\n"
    count, rest = divmod(64 * 1024 - len(starttls), len(noop))
    head = noop * (count - 1) + b"n" + b"x" * rest + b" NOOP\r\n"
    assert len(head + starttls) == 64 * 1024
    sock = _connect(rig)
    with sock:
        sock.sendall(head + starttls + _INJECTED)
        # Loopback cuts a write this long into segments, and the one holding the
        # injected bytes can arrive after the server has looked: then the case is the
        # later packet's below, which must end the same way.
        _assert_injection_never_runs(sock, _read_until(sock, b"a "))


def test_bytes_in_a_later_packet_before_the_handshake_never_run(rig: ImapRig) -> None:
    sock = _connect(rig)
    with sock:
        sock.sendall(b"a STARTTLS\r\n")
        time.sleep(0.01)
        sock.sendall(_INJECTED)
        _assert_injection_never_runs(sock, sock.recv(4096))


def _read_until(sock: socket.socket, tag: bytes) -> bytes:
    """What the server sent up to its answer to the command tagged `tag`, or to BYE."""
    received = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and b"* BYE" not in received:
        if received.startswith(tag) or b"\r\n" + tag in received:
            if received.endswith(b"\r\n"):
                break
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _assert_injection_never_runs(sock: socket.socket, received: bytes) -> None:
    # Either the server saw the bytes before switching (BYE), or they reach the TLS
    # layer, which cannot take them for a handshake: no session either way.
    assert b"inj OK" not in received
    if b"* BYE" in received:
        _assert_refused(received + _read_until_closed(sock))
        return
    assert b"a OK Begin TLS" in received, received[-300:]
    with pytest.raises((ssl.SSLError, OSError)):
        tls = _tls_client().wrap_socket(sock, server_hostname="localhost")
        tls.sendall(b"x NOOP\r\n")
        after = tls.recv(4096)
        assert b"inj OK" not in after
        assert after, "closed without an answer"
        raise AssertionError(f"the TLS session ran: {after!r}")


def test_clean_starttls_still_works(rig: ImapRig) -> None:
    sock = _connect(rig)
    with sock:
        sock.sendall(b"a STARTTLS\r\n")
        assert sock.recv(4096).startswith(b"a OK")
        with _tls_client().wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"b NOOP\r\n")
            assert tls.recv(4096).startswith(b"b OK")


def test_unread_plaintext_counts_parser_and_stream_buffers() -> None:
    async def check() -> None:
        reader = asyncio.StreamReader()
        commands = CommandReader()
        commands.feed(b"a STARTTLS\r\n")
        assert commands.next_event() is not None
        assert unread_plaintext(reader, commands) == 0
        reader.feed_data(b"inj")
        assert unread_plaintext(reader, commands) == 3
        await reader.read(3)
        commands.feed(b"\r\n")
        assert unread_plaintext(reader, commands) == 2

    asyncio.run(check())
