"""RCPT's lookup reused for a moment (`lmtp.recipient_cache_s`), and what the commit
checks again so a reused lookup never seals to a retired key or stores plain mail for a
user switched to crypt 2."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from typing import Any

import pytest
from sqlalchemy import select

from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.delivery import _handler
from cryptmail.delivery._recipient_cache import MAX_ADDRESSES, RecipientCache
from cryptmail.keys import rotate_key_pair, unlock_account
from cryptmail.secret import Password
from cryptmail.store import open_blob
from cryptmail.users import set_crypt
from hand_clock import HandClock

from .conftest import CRYPTO, PASSWORD, MakeRig, Rig

ALICE = "alice@example.org"
BOB = "bob@example.org"


def test_a_lookup_is_reused_until_it_expires() -> None:
    clock = HandClock()
    cache: RecipientCache[str] = RecipientCache(1.0, clock=clock)
    cache.put(ALICE, [UserId(1)], "found")
    clock.now += 0.9
    assert cache.get(ALICE) == "found"
    clock.now += 0.2
    assert cache.get(ALICE) is None


def test_forgetting_a_user_drops_every_address_reaching_them() -> None:
    cache: RecipientCache[str] = RecipientCache(60.0)
    cache.put(ALICE, [UserId(1)], "alice")
    cache.put("team@example.org", [UserId(1), UserId(2)], "team")
    cache.put("bob@example.org", [UserId(2)], "bob")
    cache.forget_user(UserId(1))
    assert cache.get(ALICE) is None and cache.get("team@example.org") is None
    assert cache.get("bob@example.org") == "bob"


def test_off_keeps_nothing_and_the_oldest_address_goes_first() -> None:
    off: RecipientCache[str] = RecipientCache(0.0)
    off.put(ALICE, [UserId(1)], "found")
    assert off.get(ALICE) is None
    cache: RecipientCache[int] = RecipientCache(60.0)
    for n in range(MAX_ADDRESSES + 1):
        cache.put(f"u{n}@example.org", [UserId(n)], n)
    assert cache.get("u0@example.org") is None
    assert cache.get(f"u{MAX_ADDRESSES}@example.org") == MAX_ADDRESSES


def _send(port: int, subject: str) -> None:
    message = f"From: a@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.ehlo("client.test")
        assert client.sendmail("sender@example.net", [ALICE], message) == {}


async def _sealing_keys(rig: Rig, email: str = ALICE) -> list[bytes | None]:
    """The key id each of the user's messages is sealed to (None: stored plain), in
    the order they were delivered."""
    account, _slot = await unlock_account(rig.engine, email, Password.from_str(PASSWORD), CRYPTO)
    m, b = t.cm_messages, t.cm_mailboxes
    query = (
        select(m.c.blob_id)
        .select_from(m.join(b, m.c.mailbox_id == b.c.id))
        .where(b.c.user_id == account.user.id)
        .order_by(m.c.id)
    )
    async with rig.engine.connect() as conn:
        blob_ids = (await conn.execute(query)).scalars()
        found = [bytes(blob_id) for blob_id in blob_ids]
    keys: list[bytes | None] = []
    for blob_id in found:
        opened = await open_blob(rig.blobs, account, blob_id)  # type: ignore[arg-type]
        keys.append(opened.header.key_id if opened.header.sealed else None)
    return keys


async def test_a_key_rotated_after_the_lookup_gets_the_next_message(
    rig_factory: MakeRig,
) -> None:
    rig = await rig_factory(recipient_cache_s=3600.0)
    await rig.add_user(ALICE)
    await asyncio.to_thread(_send, rig.port, "first")  # makes the INBOX: not kept yet
    await asyncio.to_thread(_send, rig.port, "before")  # this lookup is kept
    account, _slot = await unlock_account(rig.engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
    old = account.active_key.key_id
    async with rig.engine.begin() as conn:
        new = (await rotate_key_pair(conn, account, "prime256v1")).key_id
    # The lookup of "before" is still kept: the commit finds the key retired and the
    # message is sealed again, to the new one, after a fresh lookup.
    await asyncio.to_thread(_send, rig.port, "after")
    await asyncio.to_thread(_send, rig.port, "later")
    assert await _sealing_keys(rig) == [old, old, new, new]
    assert len(await rig.messages(ALICE)) == 4


async def test_a_switch_to_crypt_2_after_the_lookup_seals_the_next_message(
    rig_factory: MakeRig,
) -> None:
    rig = await rig_factory(recipient_cache_s=3600.0)
    await rig.add_user(ALICE, crypt=0)
    await asyncio.to_thread(_send, rig.port, "first")  # makes the INBOX: not kept yet
    await asyncio.to_thread(_send, rig.port, "plain")  # this lookup is kept
    async with rig.engine.begin() as conn:
        user_id = (
            await conn.execute(select(t.virtual_users.c.id).where(t.virtual_users.c.email == ALICE))
        ).scalar_one()
        await set_crypt(conn, user_id, 2)
    await asyncio.to_thread(_send, rig.port, "sealed")
    keys = await _sealing_keys(rig)
    assert keys[:2] == [None, None] and keys[2] is not None, keys
    assert len(await rig.messages(ALICE)) == 3


def _send_to(port: int, recipients: list[str], subject: str) -> None:
    """One message to several recipients; LMTP answers each after the data (smtplib's
    LMTP reads only the first of those replies)."""
    message = f"From: a@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        replies = sock.makefile("rb")

        def reply() -> bytes:
            line = replies.readline()
            while line[3:4] == b"-":
                line = replies.readline()
            return line

        assert reply().startswith(b"220")
        commands = [b"LHLO client.test", b"MAIL FROM:<sender@example.net>"]
        commands += [b"RCPT TO:<%s>" % r.encode() for r in recipients] + [b"DATA"]
        for command in commands:
            sock.sendall(command + b"\r\n")
            assert reply()[:1] in (b"2", b"3")
        sock.sendall(message + b".\r\n")
        assert all(reply().startswith(b"250") for _ in recipients)


async def test_a_message_to_several_users_redoes_only_the_changed_ones_copy(
    rig_factory: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = await rig_factory(recipient_cache_s=3600.0)
    await rig.add_user(ALICE)
    await rig.add_user(BOB)
    lookups: list[str] = []
    real = _handler.resolve_delivery_sync  # type: ignore[attr-defined]  # -- patched below

    def counted(conn: Any, address: str, delimiter: str) -> Any:
        lookups.append(address)
        return real(conn, address, delimiter)

    monkeypatch.setattr(_handler, "resolve_delivery_sync", counted)
    both = [ALICE, BOB]
    await asyncio.to_thread(_send_to, rig.port, both, "first")  # makes the INBOXes
    await asyncio.to_thread(_send_to, rig.port, both, "before")  # these lookups are kept
    account, _slot = await unlock_account(rig.engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
    async with rig.engine.begin() as conn:
        new = (await rotate_key_pair(conn, account, "prime256v1")).key_id
    await asyncio.to_thread(_send_to, rig.port, both, "after")
    assert (await _sealing_keys(rig, ALICE))[-1] == new
    assert len(await rig.messages(ALICE)) == 3
    assert len(await rig.messages(BOB)) == 3
    # Looked up for "first" (no INBOX yet: not kept) and "before" (kept); "after" took
    # both from the cache, and Alice's copy went again after a lookup by user id.
    assert lookups.count(BOB) == 2 and lookups.count(ALICE) == 2, lookups
