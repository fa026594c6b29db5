"""The POP3 session against a live listener, with the stdlib's poplib and raw sockets:
every RFC 1939 command, CAPA, STLS, AUTH PLAIN, UIDL stability, QUIT's update, and bad
input answered with -ERR and no change to stored data."""

from __future__ import annotations

import base64
import imaplib
import io
import poplib
import re
import socket
import ssl
from pathlib import Path

import pytest

from cryptmail.keys import add_app_password, unlock_account
from cryptmail.pop3 import uidl
from cryptmail.secret import Password

from .conftest import OTHER, PASSWORD, USER, Pop3Rig

MESSAGE = b"From: a@example.net\r\nSubject: one\r\n\r\nbody line\r\n.starts with a dot\r\nend\r\n"
LF_MESSAGE = b"From: b@example.net\nSubject: two\n\nbare\nLF lines\n..two dots\nno end"


def _raw(rig: Pop3Rig) -> tuple[socket.socket, io.BufferedRWPair]:
    sock = rig.keep(socket.create_connection(("127.0.0.1", rig.pop3.port), timeout=10))
    file = rig.keep(sock.makefile("rwb"))
    assert file.readline() == b"+OK cryptmail POP3 ready.\r\n"
    return sock, file


def _ask(file: io.BufferedRWPair, line: bytes) -> bytes:
    file.write(line + b"\r\n")
    file.flush()
    return bytes(file.readline())


def _multiline(file: io.BufferedRWPair) -> list[bytes]:
    lines = []
    while (line := file.readline()) != b".\r\n":
        assert line, "connection closed"
        lines.append(line)
    return lines


def _imap_flags_and_count(rig: Pop3Rig) -> tuple[int, bytes]:
    """(messages in INBOX, their flags joined) as an IMAP session sees them."""
    imap = imaplib.IMAP4("127.0.0.1", rig.imap.port)
    imap.login(USER, PASSWORD)
    _, data = imap.select("INBOX")
    count = int(data[0] or b"0")
    by_number: dict[bytes, bytes] = {}
    if count:
        _, fetched = imap.fetch("1:*", "(FLAGS)")
        # An unsolicited FETCH (a change the bus announced) may come too: one per message.
        for item in fetched:
            found = (
                re.match(rb"(\d+) \(.*FLAGS \(([^)]*)\)", item) if isinstance(item, bytes) else None
            )
            if found:
                by_number[found[1]] = found[2]
    imap.logout()
    return count, b" ".join(by_number[n] for n in sorted(by_number, key=int))


def test_retr_top_list_uidl_byte_exact(rig: Pop3Rig) -> None:
    rig.deliver(MESSAGE)
    rig.deliver(LF_MESSAGE)
    pop = rig.login()
    count, octets = pop.stat()
    crlf = LF_MESSAGE.replace(b"\n", b"\r\n")
    assert (count, octets) == (2, len(MESSAGE) + len(crlf))
    _, listing, _ = pop.list()
    assert listing == [b"1 %d" % len(MESSAGE), b"2 %d" % len(crlf)]
    assert pop._shortcmd("LIST 2") == b"+OK 2 %d" % len(crlf)  # type: ignore[attr-defined]
    # poplib undoes dot-stuffing and splits lines; joined back they are the message.
    _, lines, size = pop.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == MESSAGE
    _, lines, _ = pop.retr(2)
    assert b"\r\n".join(lines) == crlf
    _, lines, _ = pop.top(1, 1)
    assert lines == [b"From: a@example.net", b"Subject: one", b"", b"body line"]
    _, lines, _ = pop.top(2, 0)
    assert lines == [b"From: b@example.net", b"Subject: two", b""]
    _, ids, _ = pop.uidl()
    validity = rig.run(_uidvalidity(rig))
    assert ids == [f"{n} {uidl(n, validity)}".encode() for n in (1, 2)]
    assert pop.uidl(2) == f"+OK 2 {uidl(2, validity)}".encode()
    pop.quit()


async def _uidvalidity(rig: Pop3Rig) -> int:
    from cryptmail.store import inbox_id, mailbox_by_id
    from cryptmail.users import get_user

    async with rig.engine.connect() as conn:
        user = await get_user(conn, USER)
        box = await mailbox_by_id(conn, None, await inbox_id(conn, user.id))
    return box.uidvalidity


def test_dot_stuffing_on_the_wire(rig: Pop3Rig) -> None:
    rig.deliver(b".\r\n..\r\n.x\r\nno final newline")
    sock, file = _raw(rig)
    _ask(file, b"USER " + USER.encode())
    assert _ask(file, b"PASS " + PASSWORD.encode()).startswith(b"+OK")
    assert _ask(file, b"RETR 1") == b"+OK 27 octets\r\n"  # stuffing not counted
    assert _multiline(file) == [b"..\r\n", b"...\r\n", b"..x\r\n", b"no final newline\r\n"]
    sock.close()


def test_uidls_stable_across_sessions_and_sizes_from_the_cache(rig: Pop3Rig) -> None:
    for n in range(3):
        rig.deliver(MESSAGE.replace(b"one", b"#%d" % n))
    pop = rig.login()
    first = pop.uidl()[1]
    pop.quit()
    _imap_flags_and_count(rig)  # nothing changes UIDLs, not even IMAP indexing
    imap = imaplib.IMAP4("127.0.0.1", rig.imap.port)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    imap.fetch("1:*", "(RFC822.SIZE ENVELOPE)")  # seals each message's cache
    imap.logout()
    pop = rig.login()
    assert pop.uidl()[1] == first
    assert pop.stat() == (3, 3 * len(MESSAGE) - 3)
    pop.quit()


def test_dele_quit_expunges_for_imap_and_drops_blobs(rig: Pop3Rig) -> None:
    for n in range(3):
        rig.deliver(MESSAGE.replace(b"one", b"#%d" % n))
    blobs = rig.blob_count()
    pop = rig.login()
    pop.retr(1)
    assert pop.dele(2).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match="no such message"):
        pop.retr(2)
    assert pop.stat() == (2, 2 * (len(MESSAGE) - 1))
    assert pop.quit() == b"+OK Logging out, 1 messages deleted."
    count, flags = _imap_flags_and_count(rig)
    assert count == 2
    assert flags.count(b"\\Seen") == 1  # RETR marks seen (Dovecot's default)
    assert rig.blob_count() == blobs - 1
    pop = rig.login()
    assert pop.stat()[0] == 2
    pop.quit()


def test_rset_and_a_dropped_connection_delete_nothing(rig: Pop3Rig) -> None:
    # Like Dovecot's, a session that ends without QUIT still marks what it retrieved.
    rig.deliver(MESSAGE)
    rig.deliver(MESSAGE)
    pop = rig.login()
    pop.dele(1)
    assert pop.rset().startswith(b"+OK 2 messages")
    pop.dele(2)
    pop.retr(1)
    pop.close()  # no QUIT: the connection drops
    pop = rig.login()
    assert pop.stat()[0] == 2
    pop.quit()
    count, flags = _imap_flags_and_count(rig)
    assert count == 2
    assert flags.count(b"\\Seen") == 1


def test_mail_delivered_during_a_session_waits_for_the_next(rig: Pop3Rig) -> None:
    rig.deliver(MESSAGE)
    pop = rig.login()
    rig.deliver(MESSAGE)
    assert pop.stat()[0] == 1
    pop.quit()
    pop = rig.login()
    assert pop.stat()[0] == 2
    pop.quit()


def test_capa_before_and_after_login_and_auth_plain(rig: Pop3Rig) -> None:
    pop = rig.client()
    caps = pop.capa()
    assert {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "USER"} <= set(
        caps
    )
    assert caps["SASL"] == ["PLAIN"]
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert pop._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK Logged in")  # type: ignore[attr-defined]
    caps = pop.capa()
    assert "STLS" not in caps and "USER" not in caps and "SASL" not in caps
    pop.quit()
    # The continuation form, and the mechanism list.
    sock, file = _raw(rig)
    assert _ask(file, b"AUTH") == b"+OK Mechanisms follow.\r\n"
    assert _multiline(file) == [b"PLAIN\r\n"]
    assert _ask(file, b"AUTH PLAIN") == b"+ \r\n"
    assert _ask(file, token.encode()).startswith(b"+OK Logged in")
    sock.close()
    sock, file = _raw(rig)
    assert _ask(file, b"AUTH PLAIN") == b"+ \r\n"
    assert _ask(file, b"*") == b"-ERR Authentication cancelled.\r\n"
    assert _ask(file, b"AUTH CRAM-MD5") == b"-ERR Unsupported authentication mechanism.\r\n"
    sock.close()


def test_stls_then_login_and_implicit_tls(rig: Pop3Rig) -> None:
    rig.deliver(MESSAGE)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop = rig.client()
    pop.stls(context)
    assert "STLS" not in pop.capa()
    pop.user(USER)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()
    pops = poplib.POP3_SSL("127.0.0.1", rig.pop3s.port, context=context, timeout=30)
    assert "STLS" not in pops.capa()
    pops.user(USER)
    pops.pass_(PASSWORD)
    assert pops.stat()[0] == 1
    pops.quit()


def test_bytes_pipelined_after_stls_are_refused(rig: Pop3Rig) -> None:
    sock, file = _raw(rig)
    file.write(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
    file.flush()
    assert file.readline() == b"-ERR STLS must be the last command before the TLS handshake.\r\n"
    assert file.readline() == b""
    sock.close()


def test_no_plaintext_login_from_afar(tmp_path: Path) -> None:
    from .conftest import start_rig

    for rig in start_rig(tmp_path, **{"pop3.allow_plaintext_login_on_loopback": False}):
        pop = rig.client()
        caps = pop.capa()
        assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
        sock, file = _raw(rig)
        privacy = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n"
        assert _ask(file, b"USER " + USER.encode()) == privacy
        assert _ask(file, b"AUTH PLAIN AGFAYg==") == privacy
        sock.close()
        pop.quit()


def test_wrong_passwords_one_answer_and_the_throttle(rig: Pop3Rig) -> None:
    rig.deliver(MESSAGE)
    sock, file = _raw(rig)
    failed = b"-ERR [AUTH] Authentication failed.\r\n"
    for address in (USER, "nobody@example.org"):
        _ask(file, b"USER " + address.encode())
        assert _ask(file, b"PASS wrong") == failed
    _ask(file, b"USER " + USER.encode())
    assert _ask(file, b"PASS wrong again") == failed
    assert file.readline() == b""  # closed after the third
    sock.close()
    for _ in range(5):  # the throttle's burst for one address is spent
        sock, file = _raw(rig)
        _ask(file, b"USER " + USER.encode())
        reply = _ask(file, b"PASS wrong")
        sock.close()
    assert reply == b"-ERR [LOGIN-DELAY] Too many login attempts; try again later.\r\n"
    # The right password too, until the allowance refills; nothing stored changed.
    with pytest.raises(poplib.error_proto, match="LOGIN-DELAY"):
        rig.login()
    assert rig.blob_count() == 1


def test_garbage_pipelining_and_long_lines_change_nothing(rig: Pop3Rig) -> None:
    rig.deliver(MESSAGE)
    sock, file = _raw(rig)
    assert _ask(file, b"\xff\xfe garbage") == b"-ERR Invalid characters in the command.\r\n"
    assert _ask(file, b"HELO there") == b"-ERR Unknown command.\r\n"
    assert _ask(file, b"STAT") == b"-ERR Command not valid in this state.\r\n"
    assert _ask(file, b"PASS x") == b"-ERR Send USER first.\r\n"
    assert _ask(file, b"A" * 5000) == b"-ERR Line is too long.\r\n"
    assert _ask(file, b"USER  two  spaces") == b"-ERR Invalid arguments.\r\n"
    # Pipelined: all answered in order.
    file.write(
        b"USER " + USER.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n"
        b"STAT\r\nDELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 9\r\nTOP 1 x\r\nDELE -1\r\nRSET\r\nNOOP\r\n"
    )
    file.flush()
    replies = [file.readline() for _ in range(11)]
    assert replies[0] == b"+OK Send PASS.\r\n"
    assert replies[1].startswith(b"+OK Logged in, 1 messages")
    assert replies[2] == b"+OK 1 %d\r\n" % len(MESSAGE)
    assert replies[3] == b"+OK Message marked for deletion.\r\n"
    assert replies[4:9] == [
        b"-ERR There is no such message.\r\n",
        b"-ERR There is no such message.\r\n",
        b"-ERR There is no such message.\r\n",
        b"-ERR There is no such message.\r\n",
        b"-ERR Invalid message number.\r\n",
    ]
    assert replies[9].startswith(b"+OK 1 messages")
    assert replies[10] == b"+OK\r\n"
    assert _ask(file, b"USER x") == b"-ERR Command not valid in this state.\r\n"
    sock.close()  # no QUIT: the DELE (undone anyway) changes nothing
    assert _imap_flags_and_count(rig)[0] == 1


def test_two_sessions_of_one_user_and_several_users(rig: Pop3Rig) -> None:
    rig.add_user(OTHER)
    rig.deliver(MESSAGE)
    rig.deliver(MESSAGE)
    rig.deliver(MESSAGE, OTHER)
    first, second = rig.login(), rig.login()  # no maildrop lock, as Dovecot by default
    other = rig.login(OTHER)
    assert first.stat()[0] == second.stat()[0] == 2
    assert other.stat()[0] == 1
    first.dele(1)
    first.quit()
    # The second session's snapshot still lists it; reading it says what happened.
    with pytest.raises(poplib.error_proto, match="deleted by another session"):
        second.retr(1)
    second.dele(1)
    assert second.quit().startswith(b"+OK")  # expunging it again is no error
    other.quit()
    assert _imap_flags_and_count(rig)[0] == 1


def test_app_password_and_the_throttle_shared_with_imap(rig: Pop3Rig) -> None:
    async def make() -> str:
        account, _ = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        return await add_app_password(rig.engine, account, "phone", rig.config.crypto)

    app_password = rig.run(make())
    pop = rig.login(USER, app_password)
    pop.quit()
    for _ in range(5):
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            rig.login(USER, "wrong")
    imap = imaplib.IMAP4("127.0.0.1", rig.imap.port)
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        imap.login(USER, PASSWORD)
    imap.logout()


def test_malformed_auth_plain(rig: Pop3Rig) -> None:
    sock, file = _raw(rig)
    other = base64.b64encode(f"{OTHER}\0{USER}\0{PASSWORD}".encode())
    assert _ask(file, b"AUTH PLAIN " + other) == b"-ERR [AUTH] Authentication failed.\r\n"
    assert _ask(file, b"AUTH PLAIN !!!") == b"-ERR Invalid base64 data in the SASL response.\r\n"
    assert _ask(file, b"AUTH PLAIN =") == b"-ERR [AUTH] Authentication failed.\r\n"
    sock.close()


def test_idle_clients_are_disconnected(tmp_path: Path) -> None:
    from .conftest import start_rig

    for rig in start_rig(tmp_path, **{"pop3.idle_timeout_s": 1}):
        sock, file = _raw(rig)
        assert file.readline() == b"-ERR Disconnected for inactivity.\r\n"
        assert file.readline() == b""
        sock.close()


def test_too_many_bad_commands_close_the_connection(rig: Pop3Rig) -> None:
    sock, file = _raw(rig)
    for _ in range(21):
        assert _ask(file, b"XYZZY").startswith(b"-ERR")
    assert file.readline() == b"-ERR Too many bad commands.\r\n"
    assert file.readline() == b""
    sock.close()
