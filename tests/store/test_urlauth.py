"""URLAUTH grants in the store: granted in the owner's session, redeemed without any
key, revoked, capped, pruned; every failure to redeem is the same None."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, update

from cryptmail import store
from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.errors import QuotaExceeded
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import MailboxId, MessageId

from .conftest import PASSWORD, StoreRig

MESSAGE = b"Subject: hi\r\n\r\nZqStoreUrlMk7 body\r\n"
URL = ("urlauth-v1", "alice@example.org", "INBOX", "", "1", "", "", "", "authuser")


async def _source() -> AsyncIterator[bytes]:
    yield MESSAGE


async def _setup(rig: StoreRig, crypt: int = 2) -> tuple[UnlockedAccount, store.Appended]:
    user = await rig.user("alice@example.org", crypt=crypt)
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source())
    return account, appended


async def _grant(
    rig: StoreRig,
    account: UnlockedAccount,
    appended: store.Appended,
    *,
    url: tuple[str, ...] = URL,
    expires_at: dt.datetime | None = None,
    limit: int = 10,
) -> bytes:
    assert appended.blob is not None
    opened = await store.open_blob(rig.blobs, account, appended.blob.blob_id)
    token = await store.grant_url(
        rig.engine,
        account,
        url=url,
        row_id=MessageId(appended.row_id),
        mailbox_id=appended.mailbox_id,
        uid=appended.uid,
        opened=opened,
        extra=b"plan",
        expires_at=expires_at,
        limit=limit,
    )
    parsed = store.parse_url_token(token)
    assert parsed is not None
    return parsed


async def _redeem(rig: StoreRig, token: bytes, url: tuple[str, ...] = URL) -> bytes | None:
    grant = await store.redeem_url(rig.engine, rig.blobs, token=token, url=url)
    if grant is None:
        return None
    assert grant.extra == b"plan"
    return await store.read_plaintext(rig.blobs, grant.opened)


async def _rows(rig: StoreRig) -> int:
    async with rig.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(t.cm_url_grants)) or 0)


@pytest.mark.parametrize("crypt", [2, 0], ids=["sealed", "plain"])
async def test_redeemed_without_any_key(rig: StoreRig, crypt: int) -> None:
    account, appended = await _setup(rig, crypt)
    token = await _grant(rig, account, appended)
    assert await _redeem(rig, token) == MESSAGE
    async with rig.engine.connect() as conn:
        row = (await conn.execute(select(t.cm_url_grants))).one()
    assert b"ZqStoreUrlMk7" not in bytes(row.grant_sealed) and token not in bytes(row.lookup)


async def test_failures_are_all_none(rig: StoreRig) -> None:
    account, appended = await _setup(rig)
    token = await _grant(rig, account, appended)
    assert await _redeem(rig, bytes(32)) is None
    assert await _redeem(rig, token[:16]) is None
    assert await _redeem(rig, token, (*URL[:-1], "user+bob@example.org")) is None
    # A row moved to another user does not open (the owner is in the associated data).
    other = await rig.user("bob@example.org")
    async with rig.engine.begin() as conn:
        await conn.execute(update(t.cm_url_grants).values(user_id=other.id))
    assert await _redeem(rig, token) is None
    async with rig.engine.begin() as conn:
        await conn.execute(update(t.cm_url_grants).values(user_id=account.user.id))
    assert await _redeem(rig, token) == MESSAGE
    # Expunged: the row is gone, so is the URL.
    async with rig.engine.begin() as conn:
        await conn.execute(t.cm_messages.delete())
    assert await _redeem(rig, token) is None


async def test_expiry_prunes(rig: StoreRig) -> None:
    account, appended = await _setup(rig)
    past = utcnow() - dt.timedelta(seconds=1)
    later = utcnow() + dt.timedelta(days=1)
    gone = await _grant(rig, account, appended, expires_at=past)
    kept = await _grant(rig, account, appended, expires_at=later)
    assert await _redeem(rig, gone) is None
    assert await _redeem(rig, kept) == MESSAGE
    assert await _rows(rig) == 1  # the expired row went when it was asked for
    await _grant(rig, account, appended, expires_at=past)
    assert await store.prune_urls(rig.engine) == 1
    assert await _rows(rig) == 1


async def test_limit_counts_only_live_rows(rig: StoreRig) -> None:
    account, appended = await _setup(rig)
    past = utcnow() - dt.timedelta(seconds=1)
    await _grant(rig, account, appended, limit=2, expires_at=past)
    await _grant(rig, account, appended, limit=2)
    await _grant(rig, account, appended, limit=2)  # the expired one made room
    with pytest.raises(QuotaExceeded):
        await _grant(rig, account, appended, limit=2)
    assert await _rows(rig) == 2


async def test_revoke_all_or_one_mailbox(rig: StoreRig) -> None:
    account, appended = await _setup(rig)
    in_inbox = await _grant(rig, account, appended)
    assert await store.revoke_urls(rig.engine, account, MailboxId(appended.mailbox_id + 99)) == 0
    assert await _redeem(rig, in_inbox) == MESSAGE
    assert await store.revoke_urls(rig.engine, account, appended.mailbox_id) == 1
    assert await _redeem(rig, in_inbox) is None
    again = await _grant(rig, account, appended)
    assert await store.revoke_urls(rig.engine, account) == 1
    assert await _redeem(rig, again) is None


def test_token_text() -> None:
    assert store.parse_url_token("ab" * 32) == bytes([0xAB]) * 32
    for bad in ("", "ab" * 31, "zz" * 32, "ab" * 33, "é" * 64):
        assert store.parse_url_token(bad) is None
