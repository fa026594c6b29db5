"""Staging a first-login import: nothing decrypted, no path in the database, the INBOX's
UIDs reserved at once, one claim per row however many logins race for it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cryptmail import store
from cryptmail.crypto.dovecot import parse_uidlist
from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import StoreError
from cryptmail.store import StagedSource, stage_import
from cryptmail.store._staged import (
    RUNNING,
    STAGED,
    claim_staged,
    open_source,
    open_staged,
    seal_source,
)

from .conftest import StoreRig

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    root = tmp_path / "vmail" / "alice-secret-folder" / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", root)
    return root


async def _one() -> AsyncIterator[bytes]:
    yield b"Subject: new\r\n\r\nbody\r\n"


async def test_stage_counts_reserves_and_seals_the_path(rig: StoreRig, maildir: Path) -> None:
    user = await rig.user("alice@example.org")
    staged = await stage_import(rig.engine, user.id, StagedSource(maildir, None))
    assert (staged.state, staged.done_messages, staged.total_messages) == (STAGED, 0, 7)
    async with rig.engine.connect() as conn:
        raw = (await conn.execute(select(t.cm_staged_imports.c.source_sealed))).scalar_one()
    assert b"alice-secret-folder" not in bytes(raw) and b"Maildir" not in bytes(raw)
    assert open_source(user.id, bytes(raw)) == StagedSource(maildir, None)

    # Mail delivered before the login takes a UID above every UID of the uidlist.
    uidlist = parse_uidlist((maildir / "dovecot-uidlist").read_bytes())
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _one())
    assert appended.uid == uidlist.next_uid
    async with rig.engine.connect() as conn:
        inbox = await store.mailbox_by_id(conn, None, appended.mailbox_id)
    assert inbox.uidvalidity == uidlist.uid_validity


async def test_a_second_stage_is_refused_and_nothing_is_decrypted(
    rig: StoreRig, maildir: Path
) -> None:
    user = await rig.user("alice@example.org")
    await stage_import(rig.engine, user.id, StagedSource(maildir, None))
    with pytest.raises(StoreError, match="staged or running already"):
        await stage_import(rig.engine, user.id, StagedSource(maildir, None))
    async with rig.engine.connect() as conn:
        count = len(list(await conn.execute(select(t.cm_messages.c.id))))
    assert count == 0


async def test_inbox_with_other_mail_is_not_reserved(rig: StoreRig, maildir: Path) -> None:
    user = await rig.user("alice@example.org")
    first = await store.deliver_message(rig.engine, rig.blobs, user, _one())
    await stage_import(rig.engine, user.id, StagedSource(maildir, None))
    second = await store.deliver_message(rig.engine, rig.blobs, user, _one())
    assert second.uid == first.uid + 1  # the import will renumber instead


async def test_a_source_moved_to_another_user_does_not_open(rig: StoreRig, maildir: Path) -> None:
    sealed = seal_source(UserId(1), StagedSource(maildir, maildir / "dovecot-attributes"))
    assert open_source(UserId(1), sealed).attributes == maildir / "dovecot-attributes"
    with pytest.raises(StoreError, match="does not open"):
        open_source(UserId(2), sealed)


async def test_racing_claims_win_once_and_a_live_run_is_left_alone(
    rig: StoreRig, maildir: Path
) -> None:
    user = await rig.user("alice@example.org")
    await stage_import(rig.engine, user.id, StagedSource(maildir, None))
    rows = await open_staged(rig.engine, user.id)
    results = await asyncio.gather(
        *(claim_staged(rig.engine, rows, timedelta(seconds=60)) for _ in range(4))
    )
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    (row,) = await open_staged(rig.engine, user.id)
    assert row.state == RUNNING
    # Alive (fresh heartbeat): not claimed again; dead (stale): claimed again, once.
    assert await claim_staged(rig.engine, [row], timedelta(seconds=60)) == []
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(t.cm_staged_imports).values(heartbeat_at=row.heartbeat_at - timedelta(hours=1))
        )
    rows = await open_staged(rig.engine, user.id)
    results = await asyncio.gather(
        *(claim_staged(rig.engine, rows, timedelta(seconds=60)) for _ in range(3))
    )
    assert sorted(len(r) for r in results) == [0, 0, 1]
