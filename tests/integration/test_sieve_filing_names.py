"""`fileinto :create` of a name with a control character, end to end on a live
`cryptmail serve`: real LMTP in, a real Sieve script, imaplib out.

IMAP CREATE refuses such a name (RFC 9051 6.3.4: a new name must be Net-Unicode, RFC
5198). Filing must refuse it the same way, and the message must still arrive: LMTP
answers 250, and the filing at login keeps it in INBOX (Pigeonhole's implicit keep after
a failed fileinto) and says so in the log, while a good :create beside it still works.
Several sessions of two users log in at once from one client address.
"""

from __future__ import annotations

import imaplib
import smtplib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

USERS = {"ann@example.org": 2, "ben@example.org": 2}
# A tab, DEL and a C1 control (U+0085) in three names; "Good/Box" is fine.
BAD = ("Tab\there", "Del\x7fhere", "Next\u0085line")
SCRIPT = (
    'require ["fileinto", "mailbox"];\n'
    + "".join(
        f'if header :contains "subject" "bad{n}" {{ fileinto :create "{name}"; stop; }}\n'
        for n, name in enumerate(BAD)
    )
    + 'if header :contains "subject" "good" { fileinto :create "Good/Box"; stop; }\n'
)
SUBJECTS = [*(f"bad{n}" for n in range(len(BAD))), "good", "plain"]


def _send(port: int, to: str, subject: str) -> None:
    message = (
        f"From: a@example.net\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}.{to}>\r\n\r\nbody of {subject}\r\n"
    ).encode()
    with smtplib.LMTP("127.0.0.1", port) as lmtp:
        refused = lmtp.sendmail("a@example.net", [to], message)
    assert refused == {}


def _look(port: int, user: str) -> tuple[list[bytes], dict[str, list[str]]]:
    """LIST's lines, and {folder: subjects} of INBOX and Good/Box, after a login."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(user, PASSWORD)
        status, listed = imap.list()
        assert status == "OK"
        found: dict[str, list[str]] = {}
        for folder in ("INBOX", "Good/Box"):
            status, _ = imap.select(f'"{folder}"', readonly=True)
            if status != "OK":
                continue
            _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            found[folder] = sorted(
                i[1].decode().split(":", 1)[1].strip() for i in data if isinstance(i, tuple)
            )
    finally:
        imap.logout()
    return [line for line in listed if isinstance(line, bytes)], found


def test_fileinto_create_of_a_control_character_name_keeps_the_message_in_inbox(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", USERS)
    (tmp_path / "before.sieve").write_text(SCRIPT, encoding="utf-8")
    config = f'[sieve]\nbefore = "{tmp_path}/before.sieve"\n'
    server = CryptmailServer(data_dir, config=config, imap=True)
    server.start(timeout=120)
    try:
        for user in USERS:
            for subject in SUBJECTS:
                _send(server.port, user, subject)
        # Four sessions per user at once: whichever files first, each message once.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda u: _look(server.imap_port, u), [*USERS] * 4))
        looks = [_look(server.imap_port, user) for user in USERS]  # all filed by now
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    for listed, found in looks:
        assert found == {"INBOX": ["bad0", "bad1", "bad2", "plain"], "Good/Box": ["good"]}
        assert not any(b"here" in line or b"Next" in line for line in listed), listed
    assert log.count("goes to INBOX: a new mailbox name has no control characters") == 6
    for name in BAD:
        assert name not in log
