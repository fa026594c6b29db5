# mypy: disable-error-code="index"
# (imaplib's stubs type every response item as a union of bytes, tuples and None)
"""A session that selected a mailbox before `mailbox encrypt` swapped its blobs."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.store import encrypt_mailboxes
from cryptmail.users import get_user, set_crypt

from ..server_rig import ImapRig, start_rig

PLAIN_USER = "carol@example.org"
PLAIN_PASSWORD = "carol password 1"


def _message(index: int) -> bytes:
    return b"Subject: m%d\r\n\r\nbody %d\r\n" % (index, index)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _encrypt(rig: ImapRig) -> None:
    async def work() -> None:
        async with rig.engine.begin() as conn:
            user = await get_user(conn, PLAIN_USER)
            await set_crypt(conn, user.id, 2)
        async for _ in encrypt_mailboxes(rig.engine, rig.blobs, user.id):
            pass

    rig.run(work())


@pytest.mark.parametrize("command", ["SELECT", "EXAMINE"])
def test_fetch_reads_the_sealed_blob_after_encrypt(rig: ImapRig, command: str) -> None:
    rig.add_user(PLAIN_USER, PLAIN_PASSWORD, crypt=0)
    for index in (1, 2):
        rig.deliver(_message(index), PLAIN_USER)
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(PLAIN_USER, PLAIN_PASSWORD)
    typ, _ = imap.select("INBOX", readonly=command == "EXAMINE")
    assert typ == "OK"
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == _message(1)
    _encrypt(rig)
    # The session still holds the old blob ids; the plain blobs are deleted now.
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    assert [data[0][1], data[2][1]] == [_message(1), _message(2)]
    typ, data = imap.fetch("2", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == _message(2)
    imap.logout()
