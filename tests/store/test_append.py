"""Delivery into the INBOX: sealed or plain, key and quota checks, UIDs, retry tags."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cryptmail import store
from cryptmail.crypto import PublicKeyInfo, generate_private_key, public_info
from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import KeyLocked, QuotaExceeded, RecipientChanged, RecipientKeyUnverified
from cryptmail.keys import (
    active_public_key,
    install_server_key,
    load_server_key,
    rotate_key_pair,
    seal_delivery,
    server_key,
    unlock_account,
)
from cryptmail.store import _append
from cryptmail.users import add_alias, add_user, get_user, set_crypt, set_quota

from .conftest import PASSWORD, StoreRig

MARKER = b"append-marker-91d2"


async def _source(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 8192):
        yield data[start : start + 8192]


def _message(size: int = 3000) -> bytes:
    head = b"Subject: test\r\n\r\n" + MARKER + b"\r\n"
    return head + os.urandom(size).hex().encode()[: max(0, size - len(head))]


async def _blob_count(rig: StoreRig) -> int:
    return len([b async for b in rig.blobs.list_ids()])


async def test_crypt2_delivers_sealed(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org", crypt=2)
    message = _message()
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source(message))
    assert appended.uid == 1
    assert not appended.duplicate
    assert appended.blob is not None and appended.blob.sealed
    assert appended.blob.size == len(message)
    raw = await rig.blobs.read(appended.blob.blob_id)
    assert MARKER not in raw
    opened = await store.open_blob(
        rig.blobs, None, appended.blob.blob_id, message_key=appended.blob.message_key
    )
    assert await store.read_plaintext(rig.blobs, opened) == message


async def test_crypt0_delivers_plain(rig: StoreRig) -> None:
    user = await rig.user("bob@example.org", crypt=0)
    message = _message()
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source(message))
    assert appended.blob is not None and not appended.blob.sealed
    assert appended.blob.message_key is None
    opened = await store.open_blob(rig.blobs, None, appended.blob.blob_id)
    assert await store.read_plaintext(rig.blobs, opened) == message
    async with rig.engine.connect() as conn:
        sealed = (await conn.execute(select(t.cm_messages.c.sealed))).scalar_one()
    assert sealed is False


async def test_crypt2_without_key_pair_is_key_locked(rig: StoreRig) -> None:
    async with rig.engine.begin() as conn:
        user = await add_user(conn, "nokey@example.org", "{PLAIN}x", crypt=2)
    with pytest.raises(KeyLocked):
        await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert await _blob_count(rig) == 0


async def test_quota_zero_means_none(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    assert user.quota == 0
    for _ in range(3):
        await store.deliver_message(rig.engine, rig.blobs, user, _source(_message(50_000)))
    async with rig.engine.connect() as conn:
        assert await store.used_bytes(conn, user.id) == 3 * store.round_size(50_000)


async def _counted(rig: StoreRig, user_id: UserId) -> tuple[int, int]:
    """(the per-mailbox counters' sum, COUNT(*) of the user's rows)."""
    async with rig.engine.connect() as conn:
        kept = await store.message_count(conn, user_id)
        boxes = select(t.cm_mailboxes.c.id).where(t.cm_mailboxes.c.user_id == user_id)
        rows = (
            await conn.execute(select(func.count()).where(t.cm_messages.c.mailbox_id.in_(boxes)))
        ).scalar_one()
    return kept, int(rows)


async def test_message_limit_refuses_the_delivery_past_it_before_any_blob(
    rig: StoreRig,
) -> None:
    user = await rig.user("alice@example.org")
    for _ in range(2):
        await store.deliver_message(
            rig.engine, rig.blobs, user, _source(_message()), message_limit=2
        )
    with pytest.raises(QuotaExceeded, match="message limit"):
        await store.deliver_message(
            rig.engine, rig.blobs, user, _source(_message()), message_limit=2
        )
    assert await _blob_count(rig) == 2
    assert await _counted(rig, user.id) == (2, 2)
    # Without a limit (0) the same user takes more.
    await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert await _counted(rig, user.id) == (3, 3)


async def test_message_count_follows_expunge_copy_and_move(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    for _ in range(4):
        await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    account, _slot = await unlock_account(
        rig.engine, "alice@example.org", PASSWORD, rig.config.crypto
    )
    async with rig.engine.connect() as conn:
        inbox = await store.get_mailbox(conn, account, "INBOX")
        trash = await store.get_mailbox(conn, account, "Trash")
        rows = await store.load_messages(conn, account, inbox.id)
    async with rig.engine.begin() as conn:
        await store.copy_messages(conn, account, rows[:2], trash.id)
    assert await _counted(rig, user.id) == (6, 6)
    async with rig.engine.begin() as conn:
        await store.move_messages(conn, account, rows[2:3], inbox.id, trash.id)
    assert await _counted(rig, user.id) == (6, 6)
    await store.expunge_messages(rig.engine, inbox.id, rows[:1])
    assert await _counted(rig, user.id) == (5, 5)


async def test_quota_exceeded_removes_the_orphan(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    async with rig.engine.begin() as conn:
        await set_quota(conn, user.id, 10_000)
    user = type(user)(**{**user.__dict__, "quota": 10_000})
    await store.deliver_message(rig.engine, rig.blobs, user, _source(_message(4000)))
    # The size hint is small, so only the check after the blob write catches it.
    with pytest.raises(QuotaExceeded):
        await store.deliver_message(
            rig.engine, rig.blobs, user, _source(_message(20_000)), size_hint=10
        )
    assert await _blob_count(rig) == 1
    # With an honest size hint it is refused before any blob is written.
    with pytest.raises(QuotaExceeded):
        await store.deliver_message(
            rig.engine, rig.blobs, user, _source(_message(20_000)), size_hint=20_000
        )
    assert await _blob_count(rig) == 1
    assert (await store.check_store(rig.engine, rig.blobs)).clean


async def test_concurrent_deliveries_get_distinct_increasing_uids(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    results = await asyncio.gather(
        *(
            store.deliver_message(rig.engine, rig.blobs, user, _source(_message(1000)))
            for _ in range(20)
        )
    )
    uids = sorted(r.uid for r in results)
    assert uids == list(range(1, 21))
    assert len({r.modseq for r in results}) == 20
    async with rig.engine.connect() as conn:
        inbox = await store.mailbox_by_id(conn, None, results[0].mailbox_id)
        count = (await conn.execute(select(func.count()).select_from(t.cm_messages))).scalar()
    assert inbox.uidnext == 21
    assert count == 20
    assert await _blob_count(rig) == 20


async def test_retry_with_same_digest_within_the_hour_is_a_duplicate(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    message = _message()
    digest = hashlib.sha256(message).digest()
    first = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(message), message_digest=digest
    )
    again = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(message), message_digest=digest
    )
    assert again.duplicate
    assert again.blob is None
    assert (again.uid, again.row_id, again.mailbox_id) == (
        first.uid,
        first.row_id,
        first.mailbox_id,
    )
    assert await _blob_count(rig) == 1
    # Another message, or no digest, is stored.
    other = await store.deliver_message(
        rig.engine,
        rig.blobs,
        user,
        _source(message + b"x"),
        message_digest=hashlib.sha256(message + b"x").digest(),
    )
    assert not other.duplicate and other.uid == 2


async def test_retry_after_the_window_is_stored_again(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    message = _message()
    digest = hashlib.sha256(message).digest()
    first = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(message), message_digest=digest
    )
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(t.cm_messages)
            .where(t.cm_messages.c.id == first.row_id)
            .values(internal_date=utcnow() - _append.DELIVERY_TAG_WINDOW - timedelta(seconds=5))
        )
    later = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(message), message_digest=digest
    )
    assert not later.duplicate
    assert later.uid == first.uid + 1
    assert await _blob_count(rig) == 2
    assert await store.expire_delivery_tags(rig.engine) == 1
    async with rig.engine.connect() as conn:
        tags = (
            (await conn.execute(select(t.cm_messages.c.delivery_tag).order_by(t.cm_messages.c.id)))
            .scalars()
            .all()
        )
    assert tags[0] is None  # cleared: tags do not outlive the window (by much)
    assert tags[1] is not None


async def test_tag_is_per_user(rig: StoreRig) -> None:
    alice = await rig.user("alice@example.org")
    bob = await rig.user("bob@example.org")
    message = _message()
    digest = hashlib.sha256(message).digest()
    for user in (alice, bob):
        appended = await store.deliver_message(
            rig.engine, rig.blobs, user, _source(message), message_digest=digest
        )
        assert not appended.duplicate


async def test_a_sealer_that_fails_to_start_leaves_no_temp_file(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await rig.user("alice@example.org")
    async with rig.engine.connect() as conn:
        recipient = await active_public_key(conn, user.id)

    def refuse(*_args: object) -> None:
        raise ValueError("refused recipient key")

    monkeypatch.setattr(_append, "BlobSealer", refuse)
    with pytest.raises(ValueError, match="refused"):
        await store.write_blob(rig.blobs, recipient, _source(b"body"))
    assert list((rig.blobs.root / "tmp").iterdir()) == []


async def test_stored_blob_and_appended_reprs_hide_the_message_key(rig: StoreRig) -> None:
    user = await rig.user("alice@example.org")
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert appended.blob is not None and appended.blob.message_key is not None
    key = appended.blob.message_key
    for value in (appended.blob, appended):
        assert repr(key) not in repr(value) and key.hex() not in repr(value)


async def test_resolve_delivery_gives_each_user_with_key_and_inbox(rig: StoreRig) -> None:
    alice = await rig.user("alice@example.org")
    bob = await rig.user("bob@example.org", crypt=0)
    async with rig.engine.begin() as conn:
        await add_alias(conn, "team@example.org", "alice@example.org")
        await add_alias(conn, "team@example.org", "bob@example.org")
        nokey = await add_user(conn, "nokey@example.org", "{PLAIN}x", crypt=2)
        alice_key = await active_public_key(conn, alice.id)
    targets = {
        t.user.email: t for t in await store.resolve_delivery(rig.engine, "TEAM@example.org")
    }
    assert set(targets) == {"alice@example.org", "bob@example.org"}
    assert targets["alice@example.org"].recipient == alice_key
    assert targets["alice@example.org"].inbox is not None
    assert targets["bob@example.org"].user == bob
    assert await store.resolve_delivery(rig.engine, "nobody@example.org") == []
    # No key pair and no mailboxes yet: KeyLocked before a byte is written.
    [locked] = await store.resolve_delivery(rig.engine, "nokey@example.org")
    assert (locked.recipient, locked.inbox) == (None, None)
    with pytest.raises(KeyLocked):
        await store.deliver_message(
            rig.engine, rig.blobs, nokey, _source(_message()), target=locked
        )
    assert await _blob_count(rig) == 0


async def test_delivery_to_a_resolved_target_checks_the_retry_tag_at_commit(
    rig: StoreRig,
) -> None:
    user = await rig.user("alice@example.org")
    [target] = await store.resolve_delivery(rig.engine, "alice@example.org")
    message = _message()
    digest = hashlib.sha256(message).digest()
    first = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(message), message_digest=digest, target=target
    )
    again = await store.deliver_message(
        rig.engine, rig.blobs, user, _source(message), message_digest=digest, target=target
    )
    assert not first.duplicate and again.duplicate
    assert (again.uid, again.row_id) == (first.uid, first.row_id)
    assert await _blob_count(rig) == 1  # the retry's blob was written and removed
    assert first.blob is not None
    opened = await store.open_blob(
        rig.blobs, None, first.blob.blob_id, message_key=first.blob.message_key
    )
    assert await store.read_plaintext(rig.blobs, opened) == message
    other = await rig.user("bob@example.org")
    with pytest.raises(ValueError, match="another user"):
        await store.deliver_message(rig.engine, rig.blobs, other, _source(message), target=target)


# Authenticated key rows at delivery (docs/security.md, "Authenticated key rows").


async def _replace_public_key(rig: StoreRig, user_id: int) -> PublicKeyInfo:
    """Finding 4 of issue 14: a SQL writer puts their own public key in the user's
    active key-pair row."""
    attacker = public_info(generate_private_key("x25519"))
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(t.cm_key_pairs)
            .where(t.cm_key_pairs.c.user_id == user_id, t.cm_key_pairs.c.active.is_(True))
            .values(key_id=attacker.key_id, public_key=attacker.encoded)
        )
    return attacker


async def _events(rig: StoreRig, user_id: int) -> list[str]:
    async with rig.engine.connect() as conn:
        rows = await conn.execute(
            select(t.cm_key_events.c.event)
            .where(t.cm_key_events.c.user_id == user_id)
            .order_by(t.cm_key_events.c.id)
        )
        return [str(r.event) for r in rows]


async def test_a_public_key_replaced_in_sql_defers_delivery_and_seals_nothing(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    user = await rig.user("alice@example.org")
    await _replace_public_key(rig, user.id)
    with pytest.raises(RecipientKeyUnverified):
        await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert await _blob_count(rig) == 0
    async with rig.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.cm_messages))).scalar() == 0
    assert "key_rows_changed" in await _events(rig, user.id)
    assert any(r.levelname == "ERROR" and "deferred" in r.getMessage() for r in caplog.records)
    # Resolved at RCPT time, as LMTP does: the same refusal at DATA.
    [target] = await store.resolve_delivery(rig.engine, "alice@example.org")
    with pytest.raises(RecipientKeyUnverified):
        await store.deliver_message(rig.engine, rig.blobs, user, _source(b"x"), target=target)
    assert await _blob_count(rig) == 0
    assert (await _events(rig, user.id)).count("key_rows_changed") == 1  # once


async def test_crypt_flipped_to_0_in_sql_still_seals_and_tells_the_user(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    created = await rig.user("alice@example.org")
    async with rig.engine.begin() as conn:
        await conn.execute(
            update(t.virtual_users).where(t.virtual_users.c.id == created.id).values(crypt=0)
        )
        user = await get_user(conn, "alice@example.org")
    assert user.crypt == 0
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert appended.blob is not None and appended.blob.sealed
    assert MARKER not in await rig.blobs.read(appended.blob.blob_id)
    assert (await _events(rig, user.id))[-1] == "crypt_changed"
    assert any("crypt is 0 in the database" in r.getMessage() for r in caplog.records)
    await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert (await _events(rig, user.id)).count("crypt_changed") == 1


async def test_crypt_set_through_cryptmail_is_obeyed(rig: StoreRig) -> None:
    created = await rig.user("alice@example.org")
    async with rig.engine.begin() as conn:
        await set_crypt(conn, created.id, 0)
        assert await seal_delivery(conn, created.id)  # what `user crypt` does
        user = await get_user(conn, "alice@example.org")
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert appended.blob is not None and not appended.blob.sealed
    assert "crypt_changed" not in await _events(rig, user.id)


async def test_keys_without_a_delivery_mac_are_delivered_to_with_a_warning(
    rig: StoreRig, caplog: pytest.LogCaptureFixture
) -> None:
    user = await rig.user("alice@example.org")
    async with rig.engine.begin() as conn:
        await conn.execute(update(t.cm_accounts).values(delivery_mac=None, key_mac=None))
    appended = await store.deliver_message(rig.engine, rig.blobs, user, _source(_message()))
    assert appended.blob is not None and appended.blob.sealed
    assert any("has no MAC yet" in r.getMessage() for r in caplog.records)


async def test_the_retry_tag_is_keyed_by_the_server_key(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"the same bytes").digest()
    session_key = server_key()
    try:
        install_server_key(load_server_key(tmp_path / "one.key"))
        one = _append.delivery_tag(UserId(7), digest)
        assert _append.delivery_tag(UserId(7), digest) == one
        install_server_key(load_server_key(tmp_path / "two.key"))
        two = _append.delivery_tag(UserId(7), digest)
    finally:
        install_server_key(session_key)
    assert len(one) == len(two) == 16
    assert one != two
    # Not the unkeyed hash a database reader could compute from the same bytes.
    assert one != hashlib.sha256(b"delivery|7|" + digest).digest()[:16]


async def _targets(rig: StoreRig, *emails: str) -> list[store.DeliveryTarget]:
    found = []
    for email in emails:
        found += await store.resolve_delivery(rig.engine, email)
    return found


async def test_deliver_many_commits_every_row_in_one_transaction(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [await rig.user(f"u{n}@example.org", crypt=2 if n % 2 else 0) for n in range(6)]
    message = _message(90_000)
    targets = await _targets(rig, *(u.email for u in users))
    commits: list[int] = []
    original = run_transaction

    async def counted(*args: Any, **kwargs: Any) -> Any:
        commits.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(_append, "run_transaction", counted)
    jobs = [store.DeliveryJob(t, _source(message), b"d%d" % n) for n, t in enumerate(targets)]
    results = await store.deliver_many(rig.engine, rig.blobs, jobs)
    monkeypatch.undo()
    assert len(commits) == 1
    assert all(isinstance(r, store.Appended) and r.uid == 1 for r in results)
    for user in users:
        account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
        async with rig.engine.connect() as conn:
            rows = await store.load_messages(conn, account, await store.inbox_id(conn, user.id))
        assert len(rows) == 1 and rows[0].sealed == (user.crypt == 2)
        opened = await store.open_blob(rig.blobs, account, rows[0].blob_id)
        assert await store.read_plaintext(rig.blobs, opened) == message
    assert (await store.check_store(rig.engine, rig.blobs)).clean


async def test_deliver_many_fails_each_user_alone(rig: StoreRig) -> None:
    alice = await rig.user("alice@example.org")
    full = await rig.user("full@example.org")
    retried = await rig.user("retried@example.org")
    async with rig.engine.begin() as conn:
        await set_quota(conn, full.id, 10_000)
        nokey = await add_user(conn, "nokey@example.org", "{PLAIN}x", crypt=2)
    message = _message(20_000)
    digest = hashlib.sha256(message).digest()
    first = await store.deliver_message(
        rig.engine, rig.blobs, retried, _source(message), message_digest=digest
    )
    emails = ("alice@example.org", "full@example.org", "nokey@example.org", retried.email)
    targets = await _targets(rig, *emails)
    assert [t.user.id for t in targets] == [alice.id, full.id, nokey.id, retried.id]
    jobs = [store.DeliveryJob(t, _source(message), digest) for t in targets]
    results = await store.deliver_many(rig.engine, rig.blobs, jobs)
    assert isinstance(results[0], store.Appended) and not results[0].duplicate
    assert isinstance(results[1], QuotaExceeded)
    assert isinstance(results[2], KeyLocked)
    assert isinstance(results[3], store.Appended) and results[3].duplicate
    assert results[3].uid == first.uid
    # alice's and the first delivery's blobs only: the over-quota and the retried
    # copies' blobs were removed, the key-locked one never written.
    assert await _blob_count(rig) == 2
    assert (await store.check_store(rig.engine, rig.blobs)).clean
    with pytest.raises(ValueError, match="one job per user"):
        await store.deliver_many(rig.engine, rig.blobs, [jobs[0], jobs[0]])


async def test_deliver_many_refuses_only_the_copies_whose_user_changed(
    rig: StoreRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await rig.user("alice@example.org")
    bob = await rig.user("bob@example.org")
    carol = await rig.user("carol@example.org", crypt=0)
    dave = await rig.user("dave@example.org", crypt=0)
    users = [alice, bob, carol, dave]
    targets = await _targets(rig, *(u.email for u in users))
    # After the lookup (LMTP's RCPT, or its cache): Bob's key rotated, Dave set to crypt 2.
    bob_account, _ = await unlock_account(rig.engine, bob.email, PASSWORD, rig.config.crypto)
    async with rig.engine.begin() as conn:
        new_key = await rotate_key_pair(conn, bob_account, "prime256v1")
        await set_crypt(conn, dave.id, 2)
        assert await seal_delivery(conn, dave.id)
    reads: list[list[UserId]] = []
    real = _append._sealing_now_of

    def counted(conn: Any, user_ids: list[UserId]) -> Any:
        reads.append(list(user_ids))
        return real(conn, user_ids)

    monkeypatch.setattr(_append, "_sealing_now_of", counted)
    message = _message()
    jobs = [store.DeliveryJob(t, _source(message)) for t in targets]
    results = await store.deliver_many(rig.engine, rig.blobs, jobs)
    monkeypatch.undo()
    assert reads == [[u.id for u in users]]  # one statement for the four copies
    assert [type(r) for r in results] == [
        store.Appended,
        RecipientChanged,
        store.Appended,
        RecipientChanged,
    ]
    assert await _blob_count(rig) == 2  # the refused copies' blobs are gone
    # Delivered again after a fresh lookup (as LMTP does): Bob's copy is sealed to his
    # new key, Dave's is sealed; the others got theirs once.
    for user in (bob, dave):
        [fresh] = await store.resolve_delivery(rig.engine, user.email)
        [again] = await store.deliver_many(
            rig.engine, rig.blobs, [store.DeliveryJob(fresh, _source(message))]
        )
        assert isinstance(again, store.Appended) and again.blob is not None
        assert again.blob.sealed
    bob_now, _ = await unlock_account(rig.engine, bob.email, PASSWORD, rig.config.crypto)
    async with rig.engine.connect() as conn:
        [row] = await store.load_messages(conn, bob_now, await store.inbox_id(conn, bob.id))
    opened = await store.open_blob(rig.blobs, bob_now, row.blob_id)
    assert opened.header.key_id == new_key.key_id
    for user in users:
        assert await _counted(rig, user.id) == (1, 1)
    assert (await store.check_store(rig.engine, rig.blobs)).clean
