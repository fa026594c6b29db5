"""Sort key chunks on a real SQLite database: sealed under the user's data key and
bound to user, mailbox, UIDVALIDITY and chunk; replaced whole; rows of another
UIDVALIDITY dropped and not read; gone with their mailbox; no payload byte in clear."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from cryptmail.db import tables as t
from cryptmail.errors import DecryptionFailed
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import (
    SORT_CHUNK_UIDS,
    MailboxId,
    create_mailbox,
    delete_mailbox,
    inbox_id,
    load_sort_chunks,
    open_sort_chunk,
    save_sort_chunks,
    seal_sort_chunk,
    sort_chunk_of,
)

from .conftest import PASSWORD, StoreRig

PAYLOAD = b"SUBJECT-MARKER-qzx " * 200


async def _account(rig: StoreRig, email: str = "alice@example.org") -> UnlockedAccount:
    user = await rig.user(email)
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


async def _inbox(rig: StoreRig, account: UnlockedAccount) -> MailboxId:
    async with rig.engine.connect() as conn:
        return await inbox_id(conn, account.user.id)


def test_chunks_of_uids() -> None:
    assert sort_chunk_of(1) == 0
    assert sort_chunk_of(SORT_CHUNK_UIDS - 1) == 0
    assert sort_chunk_of(SORT_CHUNK_UIDS) == 1


async def test_a_chunk_opens_only_where_it_was_sealed(rig: StoreRig) -> None:
    alice, bob = await _account(rig), await _account(rig, "bob@example.org")
    box = await _inbox(rig, alice)
    sealed = seal_sort_chunk(alice, box, 7, 0, PAYLOAD)
    assert open_sort_chunk(alice, box, 7, 0, sealed) == PAYLOAD
    assert b"MARKER" not in sealed
    assert len(sealed) % 4096 < 64  # padded: the plain size is a multiple of 4 KiB
    for other in (
        (alice, MailboxId(box + 1), 7, 0),  # another mailbox
        (alice, box, 8, 0),  # another UIDVALIDITY
        (alice, box, 7, 1),  # another chunk
        (bob, box, 7, 0),  # another user
    ):
        with pytest.raises(DecryptionFailed):
            open_sort_chunk(*other, sealed)
    changed = bytearray(sealed)
    changed[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        open_sort_chunk(alice, box, 7, 0, bytes(changed))


async def test_chunks_are_replaced_whole_and_another_uidvalidity_is_dropped(
    rig: StoreRig,
) -> None:
    account = await _account(rig)
    box = await _inbox(rig, account)

    def seal(validity: int, chunk: int, payload: bytes) -> bytes:
        return seal_sort_chunk(account, box, validity, chunk, payload)

    await save_sort_chunks(rig.engine, box, 5, {0: seal(5, 0, b"a"), 1: seal(5, 1, b"b")})
    await save_sort_chunks(rig.engine, box, 5, {1: seal(5, 1, b"c")})
    found = await load_sort_chunks(rig.engine, box, 5)
    assert {c: open_sort_chunk(account, box, 5, c, v) for c, v in found.items()} == {
        0: b"a", 1: b"c"
    }  # fmt: skip
    assert set(await load_sort_chunks(rig.engine, box, 5, {1, 9})) == {1}
    assert await load_sort_chunks(rig.engine, box, 5, set()) == {}
    assert await load_sort_chunks(rig.engine, box, 6) == {}  # another UIDVALIDITY: not read
    await save_sort_chunks(rig.engine, box, 6, {3: seal(6, 3, b"d")})
    assert await load_sort_chunks(rig.engine, box, 5) == {}  # dropped with the new one
    assert set(await load_sort_chunks(rig.engine, box, 6)) == {3}


async def test_chunks_go_with_their_mailbox(rig: StoreRig) -> None:
    account = await _account(rig)
    async with rig.engine.begin() as conn:
        box = await create_mailbox(conn, account, "Projects")
    await save_sort_chunks(
        rig.engine, box.id, box.uidvalidity, {0: seal_sort_chunk(account, box.id, 1, 0, b"x")}
    )
    async with rig.engine.begin() as conn:
        await delete_mailbox(conn, account, "Projects")
        left = await conn.execute(select(func.count()).select_from(t.cm_sort_chunks))
        assert left.scalar_one() == 0


async def test_a_full_chunk_is_stored_and_read_back(rig: StoreRig) -> None:
    """2,048 messages with long, all different references (little to compress): more
    than a BLOB's 64 KiB and a default packet, as MEDIUMBLOB and the driver must take."""
    account = await _account(rig)
    box = await _inbox(rig, account)
    payload = os.urandom(SORT_CHUNK_UIDS * 600)
    sealed = seal_sort_chunk(account, box, 3, 0, payload)
    assert len(sealed) > 1024 * 1024
    await save_sort_chunks(rig.engine, box, 3, {0: sealed})
    found = await load_sort_chunks(rig.engine, box, 3)
    assert open_sort_chunk(account, box, 3, 0, found[0]) == payload
