"""Key pairs: rotation keeps old keys, listing shows nothing secret, export is PKCS#8."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.keys import (
    active_public_key,
    export_private_keys,
    list_key_pairs,
    rotate_key_pair,
    unlock_account,
)
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"


async def test_rotation_keeps_old_private_keys(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser
) -> None:
    new = await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    old_id = account.active_key.key_id
    async with engine.begin() as conn:
        info = await rotate_key_pair(conn, account, "secp521r1")
    async with engine.connect() as conn:
        pairs = await list_key_pairs(conn, new.user.id)
        active = await active_public_key(conn, new.user.id)
    assert [(p.key_id, p.active) for p in pairs] == [(old_id, False), (info.key_id, True)]
    assert active == info
    assert len(pairs[0].fingerprint) == 39  # 8 groups of 4 hex digits

    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert set(account.private_keys) == {old_id, info.key_id}
    assert account.active_key == info


@pytest.mark.parametrize("passphrase", [None, b"export passphrase"])
async def test_export_is_pkcs8(
    engine: AsyncEngine, crypto: CryptoConfig, make_user: MakeUser, passphrase: bytes | None
) -> None:
    await make_user()
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    async with engine.begin() as conn:
        await rotate_key_pair(conn, account, "prime256v1")
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    pems = export_private_keys(account, passphrase)
    assert len(pems) == 2
    for pem in pems:
        header = b"ENCRYPTED PRIVATE KEY" if passphrase else b"-----BEGIN PRIVATE KEY"
        assert header in pem
        load_pem_private_key(pem, passphrase)
