# mypy: disable-error-code="index, operator, arg-type, assignment"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""Random and malformed commands against the live server: every one is answered, the
connection lives on, nothing hangs, and the stored mail does not change."""

from __future__ import annotations

import hashlib
import imaplib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..server_rig import PASSWORD, USER, ImapRig, start_rig

# Verbs that cannot change stored data in a read-only (EXAMINE) session.
_VERBS = [
    "FETCH", "UID FETCH", "SEARCH", "UID SEARCH", "STORE", "UID STORE", "NOOP", "CHECK",
    "STATUS", "LIST", "LSUB", "CAPABILITY", "NAMESPACE", "ID", "ENABLE", "EXAMINE",
    "EXPUNGE", "UID EXPUNGE", "LOGIN", "STARTTLS", "FROB", "COMPRESS",
    "SORT", "UID SORT", "THREAD", "UID THREAD",
    "CANCELUPDATE",
]  # fmt: skip
_PIECES = [
    "1", "1:*", "*", "0", "4294967296", "(", ")", "[", "]", "<0.10>", "BODY[", "BODY.PEEK[1.2]",
    "HEADER.FIELDS", "(FLAGS)", '"', '"x"', "\\Seen", "NIL", "INBOX", "CHARSET", "UTF-8",
    "OR", "NOT", "SINCE", "1-Jan-2024", "+FLAGS", "FLAGS.SILENT", "CHANGEDSINCE", "MODSEQ",
    "RETURN", "%", "*", " ", "\x00", "\xff",
    "BINARY[1]", "BINARY.SIZE[]", "BINARY.PEEK[2]<0.5>", "BINARY[TEXT]", "SAVEDATE", "EMAILID",
    "THREADID", "MAILBOXID", "SIZE", "SAVEDON", "SAVEDATESUPPORTED", "UTF8=ACCEPT", "~",
    "(DATE)", "(REVERSE SUBJECT FROM)", "REVERSE", "DISPLAYFROM", "US-ASCII", "REFERENCES",
    "ORDEREDSUBJECT", "(MIN ALL)", "ALL",
    "$", "(SAVE)", "(SAVE MIN)", "(UPDATE)", "PARTIAL", "(PARTIAL 1:5)", "PREVIEW", "(LAZY)",
]  # fmt: skip

_line = st.one_of(
    st.tuples(
        st.sampled_from(_VERBS),
        st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=8)), max_size=8),
    ).map(lambda t: (t[0] + " " + " ".join(t[1])).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapRig]:
    try:
        yield from start_rig(tmp_path_factory.mktemp("fuzz"))
    finally:
        if "conn" in _STATE:  # the fuzz run's session, kept across its examples
            _STATE.pop("conn").close()


def _snapshot(rig: ImapRig) -> list[tuple[bytes, str]]:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    out: list[tuple[bytes, str]] = []
    for name in ("INBOX", "Archive"):
        imap.select(name, readonly=True)
        typ, data = imap.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                out.append((item[0].split(b" BODY[]")[0], hashlib.sha256(item[1]).hexdigest()))
    typ, listing = imap.list()
    out.append((b"".join(listing), ""))
    imap.logout()
    return out


_STATE: dict[str, Any] = {}  # one session across hypothesis examples


def _login_line() -> bytes:
    quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    return f'LOGIN {USER} "{quoted}"'.encode()


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rwb")
        self.file.readline()
        self.count = 0

    def ask(self, line: bytes) -> None:
        self.count += 1
        tag = b"t%d" % self.count
        self.file.write(tag + b" " + line + b"\r\nz" + tag + b" NOOP\r\n")
        self.file.flush()
        while True:
            answer = self.file.readline()
            assert answer, "the server closed the connection"
            if answer.startswith(b"z" + tag + b" "):
                assert answer.startswith(b"z" + tag + b" OK"), answer
                return

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=st.lists(_line, min_size=1, max_size=6))
def test_fuzz_commands(rig: ImapRig, lines: list[bytes]) -> None:
    state = _STATE
    if "before" not in state:
        rig.deliver(b"Subject: one\r\n\r\nbody\r\n")
        rig.deliver(
            b"Subject: two\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
            b"--x\r\n\r\na\r\n--x--\r\n"
        )
        state["before"] = _snapshot(rig)
        state["conn"] = _Conn(rig.port)
        state["conn"].ask(_login_line())
        state["conn"].ask(b"EXAMINE INBOX")
    conn: _Conn = state["conn"]
    for raw in lines:
        # No CR/LF (one command each) and no literal markers (they would wait for data).
        line = raw.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"{", b"(")
        # COMPRESS would turn the stream into deflate data this plain reader cannot read.
        verb = line.upper().split(b" ", 1)[0]
        if verb in (b"LOGOUT", b"IDLE", b"AUTHENTICATE", b"APPEND", b"COMPRESS"):
            continue
        conn.ask(line)
    assert _snapshot(rig) == state["before"]


def test_no_internal_errors_logged(rig: ImapRig, caplog: pytest.LogCaptureFixture) -> None:
    """After the fuzz run above, a few known-awkward commands; nothing may log a bug."""
    conn = _Conn(rig.port)
    conn.ask(_login_line())
    conn.ask(b"EXAMINE INBOX")
    for line in [
        b"FETCH 1:* (BODY[1.2.3.MIME] BODY[HEADER.FIELDS.NOT (X)]<5.1>)",
        b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        b"SEARCH OR 1 NOT 2 TEXT x",
        b"SEARCH CHARSET KOI8-FOO x",
        b"FETCH 99 FLAGS",
        b"UID SEARCH LARGER 1",
        b"FETCH 1:* (BINARY[] BINARY.SIZE[1] BINARY.PEEK[2]<0.3> SAVEDATE EMAILID THREADID)",
        b"FETCH 2 (BINARY.PEEK[1.1] BINARY.SIZE[9.9])",
        b"STATUS INBOX (SIZE MAILBOXID)",
        b"SEARCH SAVEDSINCE 1-Jan-2000 SAVEDATESUPPORTED NOT SAVEDON 1-Jan-2001",
        b"ENABLE UTF8=ACCEPT",
        b'STATUS "Caf\xc3\xa9" (MESSAGES)',
    ]:
        conn.ask(line)
    conn.close()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
