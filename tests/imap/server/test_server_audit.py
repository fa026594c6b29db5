# mypy: disable-error-code="no-untyped-def"
"""Issue 4, command by command, on a live server: every RFC 3501 command, the listed
extensions, TLS both ways, LMTP delivery pushed by IDLE, login answers and limits."""

from __future__ import annotations

import base64
import hashlib
import logging
import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.delivery import DeliveryHandler, LmtpServer
from cryptmail.imap.server._listener import ImapListener
from cryptmail.tls import make_ssl_context

from ..server_rig import PASSWORD, USER, ImapRig, start_rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


class Raw:
    """A byte-exact client: send a line, collect untagged lines up to the tagged one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rwb")
        self.greeting = self.file.readline()
        self.count = 0

    @classmethod
    def connect(cls, port: int) -> Raw:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=10))

    def send(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()

    def line(self) -> bytes:
        return self.file.readline()

    def ask(self, command: bytes) -> tuple[list[bytes], bytes]:
        self.count += 1
        tag = b"t%d" % self.count
        self.send(tag + b" " + command + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        while True:
            line = self.line()
            assert line, "connection closed"
            if line.startswith(tag + b" "):
                return untagged, line.rstrip(b"\r\n")
            untagged.append(line.rstrip(b"\r\n"))

    def login(self) -> None:
        quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
        _, done = self.ask(f'LOGIN {USER} "{quoted}"'.encode())
        assert b" OK " in done, done

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_every_rfc3501_command_and_extension(rig: ImapRig) -> None:
    imap = Raw.connect(rig.port)
    assert imap.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
    _, done = imap.ask(b"NOOP")
    assert done.endswith(b"OK NOOP completed.")
    untagged, _ = imap.ask(b'ID ("name" "audit")')
    assert untagged == [b'* ID ("name" "cryptmail")']
    untagged, _ = imap.ask(b"CAPABILITY")
    for cap in (b"AUTH=PLAIN", b"AUTH=LOGIN", b"SASL-IR", b"LITERAL+", b"IDLE", b"ID"):
        assert cap in untagged[0].split(), cap
    _, done = imap.ask(b"SELECT INBOX")
    assert b" BAD " in done  # not yet logged in
    imap.login()
    untagged, _ = imap.ask(b"CAPABILITY")
    caps = untagged[0].split()
    for cap in (
        b"UIDPLUS", b"MOVE", b"NAMESPACE", b"UNSELECT", b"SPECIAL-USE", b"CHILDREN",
        b"CONDSTORE", b"QRESYNC", b"ENABLE", b"LIST-EXTENDED", b"LIST-STATUS",
    ):  # fmt: skip
        assert cap in caps, cap
    assert any(c.startswith(b"APPENDLIMIT=") for c in caps)
    untagged, _ = imap.ask(b"NAMESPACE")
    assert untagged == [b'* NAMESPACE (("" "/")) NIL NIL']
    untagged, _ = imap.ask(b"ENABLE CONDSTORE")
    assert untagged == [b"* ENABLED CONDSTORE"]
    _, done = imap.ask(b"CREATE Box")
    assert b"OK" in done
    # APPEND with a synchronizing literal, then with LITERAL+.
    message = b"Subject: one\r\n\r\nbody\r\n"
    imap.count += 1
    imap.send(b"t%d APPEND Box (\\Seen) {%d}\r\n" % (imap.count, len(message)))
    assert imap.line().startswith(b"+ ")
    imap.send(message + b"\r\n")
    _, done = imap.until(b"t%d" % imap.count)
    assert b"[APPENDUID " in done and b" 1]" in done
    _, done = imap.ask(b"APPEND Box {%d+}\r\n" % len(message) + message)
    assert b"[APPENDUID " in done and b" 2]" in done
    untagged, done = imap.ask(b"STATUS Box (MESSAGES UIDNEXT UNSEEN)")
    assert untagged == [b"* STATUS Box (MESSAGES 2 UIDNEXT 3 UNSEEN 1)"]
    untagged, done = imap.ask(b"EXAMINE Box")
    assert done.split(b" ", 2)[2].startswith(b"[READ-ONLY]")
    _, done = imap.ask(b"STORE 1 +FLAGS (\\Flagged)")
    assert b" NO " in done  # read-only
    untagged, done = imap.ask(b"SELECT Box")
    assert b"[READ-WRITE]" in done
    assert b"* 2 EXISTS" in untagged
    assert any(line.startswith(b"* OK [HIGHESTMODSEQ ") for line in untagged)
    _, done = imap.ask(b"CHECK")
    assert b" OK " in done
    untagged, _ = imap.ask(b"SEARCH UNSEEN")
    assert untagged == [b"* SEARCH 2"]
    untagged, _ = imap.ask(b"UID SEARCH ALL")
    assert untagged == [b"* SEARCH 1 2"]
    untagged, _ = imap.ask(b"FETCH 1 (UID FLAGS RFC822.SIZE)")
    assert untagged[0].startswith(b"* 1 FETCH (") and b"\\Seen" in untagged[0]
    untagged, _ = imap.ask(b"UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert untagged[0].startswith(b"* 2 FETCH (")
    # CONDSTORE: UNCHANGEDSINCE refuses a message changed since, and says so.
    untagged, _ = imap.ask(b"FETCH 1 (MODSEQ)")
    modseq = int(untagged[0].split(b"MODSEQ (")[1].split(b")")[0])
    untagged, done = imap.ask(b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Answered)" % modseq)
    assert b" OK " in done
    untagged, done = imap.ask(b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Draft)" % modseq)
    assert b"[MODIFIED 1]" in done
    untagged, done = imap.ask(b"UID STORE 2 +FLAGS.SILENT (\\Flagged)")
    # RFC 7162 3.1.3: with CONDSTORE on, even .SILENT reports the new MODSEQ.
    assert b" OK " in done and b"MODSEQ (" in untagged[0]
    _, done = imap.ask(b"CREATE Other")
    untagged, done = imap.ask(b"COPY 1 Other")
    assert b"[COPYUID " in done
    untagged, done = imap.ask(b"UID COPY 2 Other")
    assert b"[COPYUID " in done
    untagged, done = imap.ask(b"UID MOVE 2 Other")
    assert any(line.startswith(b"* OK [COPYUID ") for line in untagged), untagged
    assert b"* 2 EXPUNGE" in untagged and b" OK " in done
    _, _ = imap.ask(b"STORE 1 +FLAGS (\\Deleted)")
    untagged, done = imap.ask(b"UID EXPUNGE 1")
    assert b"* 1 EXPUNGE" in untagged and b" OK " in done
    _, done = imap.ask(b"UNSELECT")
    assert b" OK " in done
    imap.ask(b"SELECT Other")
    imap.ask(b"STORE 1 +FLAGS (\\Deleted)")
    untagged, done = imap.ask(b"EXPUNGE")
    assert b"* 1 EXPUNGE" in untagged
    _, done = imap.ask(b"CLOSE")
    assert b" OK " in done
    _, done = imap.ask(b"SUBSCRIBE Other")
    untagged, _ = imap.ask(b'LSUB "" Other')
    assert untagged == [b'* LSUB () "/" Other']
    _, done = imap.ask(b"UNSUBSCRIBE Other")
    assert b" OK " in done
    _, done = imap.ask(b"RENAME Other Renamed")
    untagged, _ = imap.ask(b'LIST "" Renamed')
    assert untagged == [b'* LIST (\\HasNoChildren) "/" Renamed']
    _, done = imap.ask(b"DELETE Renamed")
    assert b" OK " in done
    untagged, _ = imap.ask(b'LIST "" Renamed')
    assert untagged == []
    untagged, done = imap.ask(b"LOGOUT")
    assert untagged[0].startswith(b"* BYE") and b" OK " in done
    imap.close()


def test_authentication_failures_answer_alike(rig: ImapRig) -> None:
    answers = []
    for user, password in ((USER, "wrong"), ("nobody@example.org", PASSWORD)):
        imap = Raw.connect(rig.port)
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        _, done = imap.ask(f'LOGIN {user} "{quoted}"'.encode())
        answers.append(done)
        plain = base64.b64encode(f"\0{user}\0{password}".encode())
        _, done = imap.ask(b"AUTHENTICATE PLAIN " + plain)
        answers.append(done)
        imap.count += 1
        imap.send(b"t%d AUTHENTICATE LOGIN\r\n" % imap.count)
        assert imap.line() == b"+ VXNlcm5hbWU6\r\n"
        imap.send(base64.b64encode(user.encode()) + b"\r\n")
        assert imap.line() == b"+ UGFzc3dvcmQ6\r\n"
        imap.send(base64.b64encode(password.encode()) + b"\r\n")
        answers.append(imap.until(b"t%d" % imap.count)[1])
        imap.close()
    assert {a.split(b" ", 1)[1] for a in answers} == {
        b"NO [AUTHENTICATIONFAILED] Authentication failed."
    }
    # AUTH=LOGIN succeeds with the right password.
    imap = Raw.connect(rig.port)
    imap.send(b"a AUTHENTICATE LOGIN " + base64.b64encode(USER.encode()) + b"\r\n")
    assert imap.line() == b"+ UGFzc3dvcmQ6\r\n"
    imap.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert imap.until(b"a")[1].startswith(b"a OK [CAPABILITY ")
    imap.close()


def test_implicit_tls_with_logged_self_signed_certificate(
    rig: ImapRig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cryptmail.tls"):
        make_ssl_context(rig.config)  # a restart: the certificate made at first start is kept
    made = [r for r in caplog.records if "made a self-signed" in r.getMessage()]
    assert made == []
    logged = [r.getMessage() for r in caplog.records if "fingerprint" in r.getMessage()]
    assert len(logged) == 1

    async def start() -> ImapListener:
        listener = ImapListener(rig_context(rig), "127.0.0.1", 0, implicit_tls=True)
        await listener.start()
        return listener

    listener = rig.run(start())
    try:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", listener.port), timeout=10)
        tls = client.wrap_socket(raw)
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        fingerprint = hashlib.sha256(der).hexdigest()
        flat = logged[0].replace(":", "").lower()
        assert fingerprint in flat
        imap = Raw(tls)
        assert b"STARTTLS" not in imap.greeting and b"AUTH=PLAIN" in imap.greeting
        imap.login()
        imap.ask(b"LOGOUT")
        imap.close()
    finally:
        rig.run(listener.stop())


def rig_context(rig: ImapRig):
    """The context of the rig's plain listener (same engine, keys cache and bus)."""
    from cryptmail.imap.server._listener import make_context
    from cryptmail.keys import LoginThrottle

    return make_context(
        rig.config, engine=rig.engine, blobs=rig.blobs, bus=rig.bus, throttle=LoginThrottle()
    )


def test_idle_pushes_an_lmtp_delivery(rig: ImapRig, tmp_path: Path) -> None:
    async def start() -> LmtpServer:
        handler = DeliveryHandler(rig.engine, rig.blobs, tmp_path / "spool", bus=rig.bus)
        server = LmtpServer(handler, hostname="mx.example.org")
        await server.listen("127.0.0.1:0")
        return server

    server = rig.run(start())
    try:
        imap = Raw.connect(rig.port)
        imap.login()
        imap.ask(b"SELECT INBOX")
        imap.send(b"i IDLE\r\n")
        assert imap.line().startswith(b"+ ")
        with smtplib.LMTP("127.0.0.1", server.ports[0]) as lmtp:
            lmtp.sendmail("bob@example.net", [USER], b"Subject: pushed\r\n\r\nhi\r\n")
        # The socket timeout bounds the wait; no clock is asserted on.
        assert imap.line() == b"* 1 EXISTS\r\n"
        imap.send(b"DONE\r\n")
        assert imap.until(b"i")[1].startswith(b"i OK")
        imap.close()
    finally:
        rig.run(server.stop(grace_s=1))


def test_preauth_line_cap_and_malformed_input(rig: ImapRig) -> None:
    imap = Raw.connect(rig.port)
    imap.send(b"a NOOP " + b"x" * 20_000 + b"\r\n")
    answer = imap.line()
    assert answer.startswith((b"a BAD", b"* BAD", b"* BYE")), answer
    if not answer.startswith(b"* BYE"):
        _, done = imap.ask(b"NOOP")
        assert b" OK " in done
    imap.close()


def test_preauth_idle_timeout_is_short(rig: ImapRig, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptmail.imap.server import _session

    monkeypatch.setattr(_session, "PREAUTH_TIMEOUT_S", 0.5)
    waiting = Raw.connect(rig.port)
    logged_in = Raw.connect(rig.port)
    logged_in.login()
    assert waiting.line().startswith(b"* BYE")  # the socket timeout bounds the wait
    assert waiting.line() == b""
    _, done = logged_in.ask(b"NOOP")  # the logged-in session has RFC 3501's 30 minutes
    assert b" OK " in done
    waiting.close()
    logged_in.close()


def test_connection_cap_counts_both_listeners(tmp_path: Path) -> None:
    rig_iter = start_rig(tmp_path, **{"imap.max_connections_per_ip": 2})
    rig = next(rig_iter)

    async def start() -> ImapListener:
        listener = ImapListener(rig_context(rig), "127.0.0.1", 0, implicit_tls=True)
        await listener.start()
        return listener

    listener = rig.run(start())
    try:
        plain = [Raw.connect(rig.port) for _ in range(2)]
        for conn in plain:
            assert conn.greeting.startswith(b"* OK")
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", listener.port), timeout=10)
        tls = Raw(client.wrap_socket(raw))
        assert tls.greeting.startswith(b"* BYE")
        tls.close()
        for conn in plain:
            conn.close()
    finally:
        rig.run(listener.stop())
        next(rig_iter, None)


def test_appendlimit_and_qresync_fetch_vanished(tmp_path: Path) -> None:
    rig_iter = start_rig(tmp_path, **{"imap.append_limit": 1000})
    rig = next(rig_iter)
    try:
        imap = Raw.connect(rig.port)
        imap.login()
        untagged, _ = imap.ask(b"CAPABILITY")
        assert b"APPENDLIMIT=1000" in untagged[0].split()
        _, done = imap.ask(b"APPEND INBOX {5000}")  # refused before any byte is sent
        assert b" NO [TOOBIG] " in done
        message = b"Subject: x\r\n\r\ny\r\n"
        for _ in range(2):
            imap.ask(b"APPEND INBOX {%d+}\r\n" % len(message) + message)
        imap.ask(b"ENABLE QRESYNC")
        untagged, _ = imap.ask(b"SELECT INBOX")
        assert b"* 2 RECENT" in untagged  # RFC 3501 6.3.11: APPEND sets \Recent
        untagged, _ = imap.ask(b"FETCH 1:* (FLAGS)")
        assert all(b"\\Recent" in line for line in untagged)
        watcher = Raw.connect(rig.port)
        watcher.login()
        untagged, _ = watcher.ask(b"SELECT INBOX")
        assert b"* 0 RECENT" in untagged  # only one session sees a message as recent
        watcher.close()
        imap.ask(b"STORE 1 +FLAGS (\\Deleted)")
        untagged, _ = imap.ask(b"EXPUNGE")
        assert untagged == [b"* VANISHED 1", b"* 1 RECENT"]  # as Dovecot: the count fell
        untagged, _ = imap.ask(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        assert untagged[0] == b"* VANISHED (EARLIER) 1"
        assert untagged[1].startswith(b"* 1 FETCH (UID 2 ") and b"MODSEQ (" in untagged[1]
        _, done = imap.ask(b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        assert b" BAD " in done
        untagged, _ = imap.ask(b"STATUS INBOX (MESSAGES APPENDLIMIT)")
        assert untagged == [b"* STATUS INBOX (MESSAGES 1 APPENDLIMIT 1000)"]
        imap.close()
    finally:
        next(rig_iter, None)
