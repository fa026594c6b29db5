"""COPY and MOVE against the quota: a COPY that would pass it fails whole, a MOVE passes."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.store import used_bytes
from cryptmail.users import get_user, set_quota

from ...server_rig import PASSWORD, USER, ImapRig, start_rig

MESSAGE = b"From: a@example.net\r\nSubject: quota\r\n\r\n" + b"x" * 20_000 + b"\r\n"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _usage(rig: ImapRig) -> int:
    async def read() -> int:
        async with rig.engine.connect() as conn:
            return await used_bytes(conn, (await get_user(conn, USER)).id)

    return rig.run(read())


def test_copy_over_quota_is_refused_and_move_is_not(rig: ImapRig) -> None:
    for _ in range(2):
        rig.deliver(MESSAGE)
    stored = _usage(rig)

    async def limit() -> None:
        async with rig.engine.begin() as conn:
            # Room for one more message of this size, not two.
            await set_quota(conn, (await get_user(conn, USER)).id, stored + stored // 2 + 1)

    rig.run(limit())
    imap = imaplib.IMAP4("127.0.0.1", rig.port)
    imap.login(USER, PASSWORD)  # the session sees the quota set before its login
    imap.select("INBOX")
    typ, data = imap.copy("1:2", "Archive")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    assert _usage(rig) == stored  # nothing of the refused COPY stayed
    assert imap.copy("1", "Archive")[0] == "OK"
    typ, _ = imap.uid("MOVE", "1:2", "Trash")
    assert typ == "OK"
    imap.logout()
