# mypy: disable-error-code="index, operator, arg-type, assignment"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""The IMAP server on a loopback port, driven by imaplib and imapclient."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server_rig import PASSWORD, USER, ImapRig, start_rig

MESSAGE = (
    b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hello there\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\n"
    b"Body line one\r\nsecond line with needle\r\n"
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def client(rig: ImapRig) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)
    return imap


def test_login_select_fetch(rig: ImapRig) -> None:
    rig.deliver(MESSAGE)
    imap = client(rig)
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = imap.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == MESSAGE
    assert b"RFC822.SIZE %d" % len(MESSAGE) in data[0][0]
    assert b"\\Recent" in data[0][0]
    typ, data = imap.uid("SEARCH", None, "BODY", "needle")
    assert data == [b"1"]
    typ, data = imap.search(None, "SUBJECT", "nothing")
    assert data == [b""]
    imap.logout()


def test_bad_login(rig: ImapRig) -> None:
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login(USER, "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("nobody@example.org", "wrong")
    imap.login(USER, PASSWORD)
    imap.logout()


def test_successful_logins_leave_no_delay_behind(rig: ImapRig) -> None:
    # Regression: a success used to settle only the address's reservation, so each
    # login from one client added a pending "failure" and the 20th waited seconds.
    for _ in range(25):
        client(rig).logout()
    assert rig.throttle.debt(USER, "127.0.0.1") == 0.0
    assert rig.throttle.debt("someone-else@example.org", "127.0.0.1") == 0.0
    assert rig.throttle.refusals == 0


def test_imapclient_session(rig: ImapRig) -> None:
    from imapclient import IMAPClient

    rig.deliver(MESSAGE)
    with IMAPClient("127.0.0.1", port=rig.port, ssl=False) as c:
        c.login(USER, PASSWORD)
        folders = {name: flags for flags, _d, name in c.list_folders()}
        assert b"\\Sent" in folders["Sent"] and "INBOX" in folders
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 1
        msgs = c.search(["ALL"])
        assert msgs == [1]
        fetched = c.fetch(msgs, ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "INTERNALDATE"])
        assert fetched[1][b"ENVELOPE"].subject == b"hello there"
        c.add_flags(msgs, [b"\\Flagged", b"$Label1"])
        assert set(c.get_flags(msgs)[1]) >= {b"\\Flagged", b"$Label1"}
        c.create_folder("Work/2026")
        c.rename_folder("Work/2026", "Work/Projects")
        assert c.folder_exists("Work/Projects") and not c.folder_exists("Work/2026")
        c.copy(msgs, "Work/Projects")
        c.move(msgs, "Archive")
        assert c.search(["ALL"]) == []
        c.select_folder("Archive")
        assert c.search(["FLAGGED"]) == [1]
        c.add_flags([1], [b"\\Deleted"])
        c.expunge()
        assert c.search(["ALL"]) == []
        result = c.append("Sent", MESSAGE, flags=[b"\\Seen"])
        assert b"APPENDUID" in result
        c.select_folder("Sent")
        data = c.fetch([1], ["BODY[]", "FLAGS"])
        assert data[1][b"BODY[]"] == MESSAGE and b"\\Seen" in data[1][b"FLAGS"]
        c.select_folder("Work/Projects")
        assert c.fetch([1], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[1][
            b"BODY[HEADER.FIELDS (SUBJECT)]"
        ].startswith(b"Subject: hello there")
        c.unselect_folder()
        c.delete_folder("Work/Projects")
        assert not c.folder_exists("Work/Projects")
        status = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "UNSEEN"])
        assert status[b"MESSAGES"] == 0


def test_idle_push(rig: ImapRig) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=rig.port, ssl=False) as c:
        c.login(USER, PASSWORD)
        c.select_folder("INBOX")
        c.idle()
        rig.deliver(MESSAGE)
        responses = c.idle_check(timeout=5)
        c.idle_done()
        assert (1, b"EXISTS") in responses


def test_utf8_passwords(rig: ImapRig) -> None:
    import base64

    from ..server_rig import UTF8_PASSWORD

    rig.add_user("carol@example.org", UTF8_PASSWORD)
    secret = UTF8_PASSWORD.encode()
    # LOGIN with literals
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.literal = secret
    typ, _ = imap._simple_command("LOGIN", "carol@example.org")
    assert typ == "OK"
    imap.logout()
    # AUTHENTICATE PLAIN
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    typ, _ = imap.authenticate("PLAIN", lambda _c: b"\0carol@example.org\0" + secret)
    assert typ == "OK"
    imap.logout()
    # AUTHENTICATE PLAIN with SASL-IR, by hand
    import socket

    with socket.create_connection(("127.0.0.1", rig.port)) as sock:
        f = sock.makefile("rwb")
        f.readline()
        ir = base64.b64encode(b"\0carol@example.org\0" + secret)
        f.write(b"a AUTHENTICATE PLAIN " + ir + b"\r\n")
        f.flush()
        assert f.readline().startswith(b"a OK")


def raw_session(rig: ImapRig):  # type: ignore[no-untyped-def]
    import socket

    sock = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
    f = sock.makefile("rwb")
    assert f.readline().startswith(b"* OK")
    return sock, f


def test_malformed_commands_get_bad(rig: ImapRig) -> None:
    sock, f = raw_session(rig)
    with sock:
        for line in [b"a1 FROB", b"a2 LOGIN", b"a3 SELECT", b'a4 LOGIN "unterminated', b"***"]:
            f.write(line + b"\r\n")
            f.flush()
            answer = f.readline()
            assert b"BAD" in answer, (line, answer)
        # a literal over the pre-auth cap is refused, and the connection lives on
        f.write(b"a5 LOGIN {100000}\r\n")
        f.flush()
        assert f.readline().startswith(b"a5 BAD")
        f.write(b"a6 NOOP\r\n")
        f.flush()
        line = f.readline()
        while not line.startswith(b"a6"):
            line = f.readline()
        assert line.startswith(b"a6 OK")


def test_plaintext_login_refused_off_loopback(tmp_path: Path) -> None:
    rig_iter = start_rig(tmp_path, **{"imap.allow_plaintext_login_on_loopback": False})
    rig = next(rig_iter)
    try:
        imap = imaplib.IMAP4("127.0.0.1", rig.port)
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(USER, PASSWORD)
        imap.starttls()
        imap.login(USER, PASSWORD)
        imap.logout()
    finally:
        next(rig_iter, None)
