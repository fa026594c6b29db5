"""Security events: recorded with each change, detail sealed to the user's public key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import generate_recovery_code, wrap_key
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import (
    UnlockedAccount,
    add_app_password,
    change_password,
    list_events,
    recover,
    renew_recovery_code,
    revoke_app_password,
    rotate_key_pair,
    unlock_account,
)
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"
IP = "203.0.113.219"
DEVICE = "marker-device-q7"


async def test_events_are_recorded_and_sealed(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, db_path: Path
) -> None:
    new = await make_user()
    assert new.recovery_code is not None
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw("guess"), crypto, client_ip=IP)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    await add_app_password(engine, account, DEVICE, crypto, client_ip=IP)
    await revoke_app_password(engine, account.user.id, DEVICE, client_ip=IP)
    await change_password(engine, ALICE, pw(PASSWORD), pw("second"), crypto, client_ip=IP)
    code = await recover(engine, ALICE, new.recovery_code, pw("third"), crypto, client_ip=IP)
    account, _slot = await unlock_account(engine, ALICE, pw("third"), crypto)
    await renew_recovery_code(engine, account, crypto, client_ip=IP)
    assert code

    async with engine.connect() as conn:
        events = await list_events(conn, account)
    assert [e.event for e in reversed(events)] == [
        "key_created",
        "sign_in_failed",
        "app_password_added",
        "app_password_revoked",
        "password_changed",
        "recovery_used",
        "recovery_renewed",
    ]
    assert all(e.client_ip == IP for e in events if e.event != "key_created")
    assert {e.name for e in events if e.event.startswith("app_")} == {DEVICE}

    async with engine.connect() as conn:
        sealed = [
            bytes(row.detail_sealed)
            for row in await conn.execute(select(t.cm_key_events.c.detail_sealed))
        ]
    assert len(sealed) == 7
    await engine.dispose()
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    for marker in (IP, DEVICE):
        for form in (marker.encode(), marker.encode("utf-16-le")):
            assert form not in raw
            assert not any(form in blob for blob in sealed)


async def test_old_events_stay_readable_after_rotation(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    await make_user()
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw("guess"), crypto, client_ip=IP)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.begin() as conn:
        await rotate_key_pair(conn, account, "prime256v1")
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw("guess"), crypto, client_ip="198.51.100.2")
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.connect() as conn:
        events = await list_events(conn, account)
    failed = [e.client_ip for e in events if e.event == "sign_in_failed"]
    assert failed == ["198.51.100.2", IP]


async def test_each_failed_attempt_is_named_for_what_was_tried(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """A wrong password at a login, a wrong recovery code and a wrong current password
    at a password change are three different events, not one "failed sign-in"."""
    await make_user()
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw("guess"), crypto, client_ip=IP)
    with pytest.raises(AuthenticationFailed):
        # Well-formed, but not alice's code.
        await recover(engine, ALICE, generate_recovery_code(), pw("n"), crypto, client_ip=IP)
    with pytest.raises(AuthenticationFailed):
        await change_password(engine, ALICE, pw("guess"), pw("second"), crypto, client_ip=IP)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.connect() as conn:
        events = await list_events(conn, account)
    failures = [(e.event, e.client_ip) for e in reversed(events) if e.event != "key_created"]
    assert failures == [
        ("sign_in_failed", IP),
        ("recovery_failed", IP),
        ("password_change_failed", IP),
    ]


# --- details bound to their rows (issue 14, finding 6) --------------------------------


async def _two_failures(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> tuple[UnlockedAccount, list[int]]:
    await make_user()
    for ip in (IP, "198.51.100.2"):
        with pytest.raises(AuthenticationFailed):
            await unlock_account(engine, ALICE, pw("guess"), crypto, client_ip=ip)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    ev = t.cm_key_events
    async with engine.connect() as conn:
        ids = [
            int(r.id)
            for r in await conn.execute(
                select(ev.c.id).where(ev.c.event == "sign_in_failed").order_by(ev.c.id)
            )
        ]
    return account, ids


async def _failed_ips(engine: AsyncEngine, account: UnlockedAccount) -> list[str]:
    async with engine.connect() as conn:
        events = await list_events(conn, account)
    return [e.client_ip for e in events if e.event == "sign_in_failed"]


async def test_swapped_details_are_detected(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    account, (first, second) = await _two_failures(engine, crypto, make_user)
    assert await _failed_ips(engine, account) == ["198.51.100.2", IP]
    ev = t.cm_key_events
    async with engine.begin() as conn:
        one, two = [
            (await conn.execute(select(ev.c.detail_sealed).where(ev.c.id == i))).scalar_one()
            for i in (first, second)
        ]
        await conn.execute(update(ev).where(ev.c.id == first).values(detail_sealed=two))
        await conn.execute(update(ev).where(ev.c.id == second).values(detail_sealed=one))
    assert await _failed_ips(engine, account) == ["?", "?"]


async def test_old_format_details_still_open(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    """A detail sealed before the sealed box had its own label and a per-row context."""
    account, (first, _second) = await _two_failures(engine, crypto, make_user)
    public = account.active_key
    message_key = os.urandom(32)
    context = b"key-event|%d" % account.user.id
    wrapped = wrap_key(message_key, public, context)  # the shared version-1 label
    body = AESGCM(message_key).encrypt(bytes(12), b'{"ip": "192.0.2.77", "name": ""}', context)
    box = bytes([len(wrapped.ephemeral)]) + wrapped.ephemeral + wrapped.wrapped + body
    ev = t.cm_key_events
    async with engine.begin() as conn:
        await conn.execute(
            update(ev).where(ev.c.id == first).values(detail_sealed=public.key_id + box)
        )
    assert await _failed_ips(engine, account) == ["198.51.100.2", "192.0.2.77"]
