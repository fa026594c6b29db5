"""DESIGN.md §1, T1: nothing about a crypt=2 user's mail is readable at rest or in logs.

Markers go into subject, from, to, body, an attachment file name, a header, a folder
name and a keyword; an IMAP session searches for them and waits until the search index
holds the message, so the index's segments are scanned too. Every byte under the data
directory (database, WAL, blobs, spool) and the server's DEBUG log is scanned for each
marker raw, lower-cased, base64, quoted-printable and UTF-16. crypt=0 markers must be
found: that proves the scan works.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import quopri
import smtplib
import sqlite3
import time
from pathlib import Path

from cryptmail.db import create_engine
from cryptmail.keys import unlock_account
from cryptmail.secret import Password
from cryptmail.store import create_mailbox, inbox_id, load_messages, set_flags

from .cryptmail_server import CRYPTO, PASSWORD, CryptmailServer, db_url, make_users

FIELDS = ("SUBJ", "FROM", "TOXX", "BODY", "FILE", "HDRX")


def _markers(tag: str) -> dict[str, str]:
    return {f: f"Zq{tag}{f}Mk7" for f in FIELDS}


def _message(m: dict[str, str], to: str) -> bytes:
    return (
        f"From: {m['FROM']} <{m['FROM'].lower()}@example.net>\r\n"
        f"To: {m['TOXX']} <{to}>\r\nSubject: {m['SUBJ']}\r\nX-Custom: {m['HDRX']}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\n{m['BODY']}\r\n--b\r\n"
        f'Content-Type: text/plain; name="{m["FILE"]}.txt"\r\n'
        f'Content-Disposition: attachment; filename="{m["FILE"]}.txt"\r\n\r\nx\r\n--b--\r\n'
    ).encode()


def _forms(marker: str) -> list[bytes]:
    raw = marker.encode()
    return [
        raw,
        raw.lower(),
        base64.b64encode(raw)[:-4] or raw,
        quopri.encodestring(raw),
        marker.encode("utf-16-le"),
        marker.encode("utf-16-be"),
    ]


def _hits(blob: bytes, marker: str) -> bool:
    low = blob.lower()
    return any(form in blob or form.lower() in low for form in _forms(marker))


async def _folder_and_keyword(data_dir: Path, email: str, tag: str) -> None:
    engine = create_engine(db_url(data_dir))
    account, _ = await unlock_account(engine, email, Password.from_str(PASSWORD), CRYPTO)
    async with engine.begin() as conn:
        await create_mailbox(conn, account, f"Zq{tag}FOLDMk7")
        inbox = await inbox_id(conn, account.user.id)
        rows = await load_messages(conn, account, inbox)
        await set_flags(conn, account, inbox, {rows[0].id: frozenset({f"Zq{tag}KEYWMk7"})})
    await engine.dispose()


def _search_until_indexed(server: CryptmailServer, data_dir: Path, email: str, tag: str) -> None:
    """SEARCH for every marker over IMAP, then wait until the user's search index has a
    segment (the background pass indexed the message)."""
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(email, PASSWORD)
    client.select("INBOX")
    for field, marker in _markers(tag).items():
        key = {"SUBJ": "SUBJECT", "FROM": "FROM", "TOXX": "TO"}.get(field, "TEXT")
        status, data = client.uid("SEARCH", key, marker)
        assert status == "OK" and data[0], (field, data)
    deadline = time.monotonic() + 60
    database = sqlite3.connect(data_dir / "cryptmail.db")
    try:
        while time.monotonic() < deadline:
            query = (
                "SELECT COUNT(*) FROM cm_fts_segments s JOIN virtual_users u"
                " ON u.id = s.user_id WHERE u.email = ?"
            )
            if database.execute(query, (email,)).fetchone()[0]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no search index segment for {email}")
    finally:
        database.close()
    client.logout()


def test_nothing_readable_at_rest(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"sealed@example.org": 2, "plain@example.org": 0})
    server = CryptmailServer(data_dir, verbose=True, imap=True)
    server.start()
    try:
        with smtplib.LMTP("127.0.0.1", server.port) as client:
            client.sendmail(
                "s@example.net",
                ["sealed@example.org"],
                _message(_markers("S"), "sealed@example.org"),
            )
            client.sendmail(
                "s@example.net", ["plain@example.org"], _message(_markers("P"), "plain@example.org")
            )
        asyncio.run(_folder_and_keyword(data_dir, "sealed@example.org", "S"))
        _search_until_indexed(server, data_dir, "sealed@example.org", "S")
        _search_until_indexed(server, data_dir, "plain@example.org", "P")
    finally:
        server.stop()
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    everything = b"".join(p.read_bytes() for p in files)
    log = server.log_path.read_bytes()
    sealed = [*_markers("S").values(), "ZqSFOLDMk7", "ZqSKEYWMk7"]
    assert [m for m in sealed if _hits(everything, m)] == []
    assert [m for m in sealed if _hits(log, m)] == []
    plain_found = [m for m in _markers("P").values() if _hits(everything, m)]
    assert len(plain_found) == len(FIELDS), "the scanner must see crypt=0 markers"
