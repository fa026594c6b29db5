# mypy: disable-error-code="index, operator, arg-type, assignment"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""CONDSTORE/QRESYNC, partial and large bodies, limits, logging hygiene, key release."""

from __future__ import annotations

import imaplib
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **{"imap.max_connections_per_ip": 4})


def _login(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def test_condstore_and_qresync(rig: ImapRig) -> None:
    rig.deliver(b"Subject: a\r\n\r\none\r\n")
    rig.deliver(b"Subject: b\r\n\r\ntwo\r\n")
    imap = _login(rig)
    typ, data = imap._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK"
    typ, _ = imap.select("INBOX")
    modseq = int(imap.untagged_responses["HIGHESTMODSEQ"][0])
    imap.uid("STORE", "1", "+FLAGS", "(\\Seen)")
    typ, data = imap.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {modseq})")
    assert len([d for d in data if d]) == 1 and b"MODSEQ" in data[0]
    imap.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    assert imap.untagged_responses.pop("VANISHED") == [b"2"]  # EXPUNGE under QRESYNC
    imap.close()
    typ, info = imap.status("INBOX", "(UIDVALIDITY HIGHESTMODSEQ)")
    uidvalidity = int(info[0].split(b"UIDVALIDITY ")[1].split()[0].rstrip(b")"))
    typ, _ = imap._simple_command("SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {modseq} 1:2))")
    assert typ == "OK"
    assert imap.untagged_responses.get("VANISHED") == [b"(EARLIER) 2"]
    imap.logout()


def test_partial_and_large_fetch(rig: ImapRig) -> None:
    body = b"".join(b"line %07d\r\n" % i for i in range(300_000))  # about 3.6 MB
    message = b"Subject: big\r\n\r\n" + body
    rig.deliver(message)
    imap = _login(rig)
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[]<100.50> RFC822.SIZE)")
    assert data[0][1] == message[100:150]
    typ, data = imap.fetch("1", "(BODY.PEEK[TEXT])")
    assert data[0][1] == body
    typ, data = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    typ, data = imap.fetch("1", "(BODY[])")
    assert data[0][1] == message and b"\\Seen" in data[1]
    imap.logout()


def test_lf_only_message_is_served_with_crlf(rig: ImapRig) -> None:
    rig.deliver(b"Subject: lf\n\nline one\nline two\n")
    imap = _login(rig)
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    served = b"Subject: lf\r\n\r\nline one\r\nline two\r\n"
    assert data[0][1] == served and b"RFC822.SIZE %d" % len(served) in data[0][0]
    imap.logout()


def test_connection_cap_and_release(rig: ImapRig) -> None:
    clients = [_login(rig) for _ in range(4)]
    extra = socket.create_connection(("127.0.0.1", rig.port), timeout=5)
    assert extra.recv(100).startswith(b"* BYE")
    extra.close()
    for imap in clients:
        imap.logout()

    async def live() -> int:
        from cryptmail.imap.server._listener import _ACCOUNTS

        return sum(a.live_accounts for a in _ACCOUNTS.values())

    for _ in range(50):
        if rig.run(live()) == 0:
            break
        time.sleep(0.05)
    assert rig.run(live()) == 0


def test_idle_timeout(tmp_path: Path) -> None:
    rig_iter = start_rig(tmp_path, **{"imap.idle_timeout_s": 1})
    rig = next(rig_iter)
    try:
        with (
            socket.create_connection(("127.0.0.1", rig.port), timeout=10) as sock,
            sock.makefile("rb") as f,
        ):
            f.readline()
            assert f.readline().startswith(b"* BYE")
            assert f.readline() == b""
    finally:
        next(rig_iter, None)


def test_logs_carry_no_secrets(rig: ImapRig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cryptmail")
    rig.deliver(b"Subject: SecretSubjectMarker\r\n\r\nSecretBodyMarker\r\n")
    imap = _login(rig)
    imap.create("SecretFolderMarker")
    imap.select("INBOX")
    imap.fetch("1", "(ENVELOPE BODY[])")
    imap.search(None, "SUBJECT", "SecretSubjectMarker")
    imap.copy("1", "SecretFolderMarker")
    imap.logout()
    time.sleep(0.2)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "IMAP" in text or "C:" in text
    for marker in ("SecretSubjectMarker", "SecretBodyMarker", "SecretFolderMarker", "p%ss"):
        assert marker not in text


def test_large_fetch_streams_in_constant_memory(rig: ImapRig) -> None:
    import base64
    import os
    import tracemalloc

    message = b"Subject: big\r\n\r\n" + base64.encodebytes(os.urandom(15 << 20)).replace(
        b"\n", b"\r\n"
    )
    size = len(message)
    rig.deliver(message)
    del message
    imap = _login(rig)
    imap.select("INBOX")
    imap.fetch("1", "(RFC822.SIZE)")  # the one-time indexing is not what we measure
    sock = socket.create_connection(("127.0.0.1", rig.port), timeout=30)
    f = sock.makefile("rwb")
    f.readline()
    quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    f.write(f'a LOGIN {USER} "{quoted}"\r\nb EXAMINE INBOX\r\n'.encode())
    f.flush()
    while not f.readline().startswith(b"b "):
        pass
    tracemalloc.start()
    try:
        f.write(b"c FETCH 1 BODY.PEEK[]\r\n")
        f.flush()
        total, tail = 0, b""
        while b"\r\nc OK" not in tail:
            chunk = f.read1(1 << 16)
            assert chunk
            total += len(chunk)
            tail = (tail + chunk)[-200:]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > size
    assert peak < size // 4, peak
    sock.close()
    imap.logout()
