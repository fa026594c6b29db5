# mypy: disable-error-code="index, operator, arg-type, assignment"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Real IMAP clients against the cryptmail IMAP server on loopback.

imaplib and imapclient run a whole session; mbsync (Debian's isync) pushes a Maildir
into the server and pulls it into a fresh Maildir byte for byte, flags kept, then a
second sync finds nothing to do.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imap.server_rig import PASSWORD, USER, ImapRig, start_rig

SYNC_USER = "sync@example.org"
SYNC_PASSWORD = "sync pass%word"
_FLAG_CYCLE = ["", "S", "F", "RS", "DS", "FS"]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def test_imaplib_and_imapclient_session(rig: ImapRig) -> None:
    import imaplib

    from imapclient import IMAPClient

    message = b"From: a@example.org\r\nSubject: marker\r\n\r\nhello\r\n"
    rig.deliver(message)
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    typ, listing = imap.list()
    assert typ == "OK" and any(b"\\Trash" in line for line in listing)
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[TEXT] FLAGS)")
    assert data[0][1] == b"hello\r\n"
    imap.store("1", "+FLAGS", "\\Seen")
    imap.copy("1", "Archive")
    imap.logout()
    with IMAPClient("127.0.0.1", port=rig.port, ssl=False) as c:
        c.login(USER, PASSWORD)
        c.select_folder("Archive")
        assert c.search(["SEEN"]) == [1]
        c.select_folder("INBOX")
        c.idle()
        rig.deliver(message)
        seen = c.idle_check(timeout=5)
        c.idle_done()
        assert (2, b"EXISTS") in seen


def _maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / "INBOX" / sub).mkdir(parents=True, exist_ok=True)
    return root


def _messages(count: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(count):
        body = f"Message {i}\nline two {i * 7}\n".encode() * (1 + i % 5)
        text = (
            f"From: sender{i}@example.org\nTo: {SYNC_USER}\nSubject: number {i}\n"
            f"Message-ID: <m{i}@example.org>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\n"
        ).encode() + body
        out.append((text, _FLAG_CYCLE[i % len(_FLAG_CYCLE)]))
    big = os.urandom(15 * 1024 * 1024)
    encoded = base64.encodebytes(big)  # 76-char lines, LF
    out.append(
        (
            b"From: big@example.org\nTo: " + SYNC_USER.encode() + b"\nSubject: big\n"
            b"Message-ID: <big@example.org>\nMIME-Version: 1.0\n"
            b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
            + encoded,
            "S",
        )
    )
    return out


def _write_maildir(root: Path, messages: list[tuple[bytes, str]]) -> None:
    cur = _maildir(root) / "INBOX" / "cur"
    for i, (data, flags) in enumerate(messages):
        (cur / f"{1700000000 + i}.M{i}P1.test:2,{flags}").write_bytes(data)


def _read_maildir(root: Path) -> dict[bytes, tuple[bytes, str]]:
    found: dict[bytes, tuple[bytes, str]] = {}
    for sub in ("cur", "new"):
        for path in (root / "INBOX" / sub).iterdir():
            # mbsync itself adds an X-TUID header to each message it uploads (its own
            # crash-recovery marker); everything else must come back byte for byte.
            data = re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", path.read_bytes(), count=1)
            message_id = next(
                line for line in data.split(b"\n") if line.lower().startswith(b"message-id:")
            )
            flags = path.name.rsplit(":2,", 1)[1] if ":2," in path.name else ""
            found[message_id] = (data, "".join(sorted(flags)))
    return found


def _rc(tmp: Path, port: int, near: Path, name: str) -> Path:
    rc = tmp / f"{name}.mbsyncrc"
    rc.write_text(
        f"""IMAPAccount far
Host 127.0.0.1
Port {port}
User {SYNC_USER}
Pass "{SYNC_PASSWORD}"
SSLType None
AuthMechs LOGIN
Timeout 120

IMAPStore far
Account far

MaildirStore near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel sync
Far :far:
Near :near:
Patterns INBOX
Create Both
Expunge Both
Sync All
SyncState *
"""
    )
    return rc


def _mbsync(rc: Path) -> str:
    result = subprocess.run(
        ["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(1000, id="1000"),
        pytest.param(5000, id="5000", marks=pytest.mark.slow),
    ],
)
def test_mbsync_round_trip(rig: ImapRig, tmp_path: Path, count: int) -> None:
    if shutil.which("mbsync") is None:
        pytest.fail("mbsync (Debian isync) is not installed")
    rig.add_user(SYNC_USER, SYNC_PASSWORD)
    messages = _messages(count)
    first, second = tmp_path / "first", tmp_path / "second"
    _write_maildir(first, messages)
    _mbsync(_rc(tmp_path, rig.port, first, "push"))
    _maildir(second)
    _mbsync(_rc(tmp_path, rig.port, second, "pull"))
    original = _read_maildir(first)
    pulled = _read_maildir(second)
    assert len(pulled) == len(messages)
    for message_id, (data, flags) in original.items():
        got_data, got_flags = pulled[message_id]
        assert got_data == data, message_id
        assert got_flags == flags, message_id
    # A second run has nothing to change on either side.
    _mbsync(_rc(tmp_path, rig.port, second, "pull"))
    assert _read_maildir(second) == pulled


def _big_bodies() -> list[bytes]:
    """Messages around the FETCH paths' limits: just over a joined response (64 KiB),
    held whole by the read-ahead (200 KB, one with NULs), streamed by range (over 1 MiB)."""
    head = b"From: a@example.org\r\nSubject: big %d\r\nMessage-ID: <big-%d@example.org>\r\n\r\n"

    def text(index: int, size: int) -> bytes:
        payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
        return head % (index, index) + payload

    with_nul = bytearray(text(3, 200_000))
    for spot in range(500, len(with_nul), 70_001):
        with_nul[spot] = 0
    return [text(0, 70_000), text(1, 200_000), text(2, 200_000), bytes(with_nul)] + [
        text(4, 1_300_000)
    ]


def test_big_bodies_byte_exact_with_many_sessions_of_many_users(rig: ImapRig) -> None:
    """Three imaplib sessions each of a crypt 2 and a crypt 0 user FETCH every big body
    at once, first read (which indexes) and again (from the caches): every copy has the
    delivered bytes exactly, a NUL as 0x80 (RFC 3501 allows none in a literal)."""
    import hashlib
    import imaplib
    import threading

    bob = "bob@example.org"
    rig.add_user(bob, PASSWORD, crypt=0)
    bodies = _big_bodies()
    for body in bodies:
        rig.deliver(body)
        rig.deliver(body, bob)
    want = [hashlib.sha256(b.replace(b"\0", b"\x80")).hexdigest() for b in bodies]
    got: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def read(user: str) -> None:
        try:
            imap = imaplib.IMAP4("127.0.0.1", rig.port)
            imap.login(user, PASSWORD)
            imap.select("INBOX", readonly=True)
            start.wait(30)
            for _ in range(2):
                typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
                assert typ == "OK"
                got.append([hashlib.sha256(p[1]).hexdigest() for p in data if isinstance(p, tuple)])
            imap.logout()
        except BaseException as exc:  # reported by the test's thread below
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=read, args=(u,)) for u in (USER, bob) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(got) == 12
    assert all(hashes == want for hashes in got)
