"""The attack of "keys that really change": a copy of the database taken before a password
change (a backup, a snapshot, the old page still in the WAL), the OLD password, and the
live database after the change. Mail delivered after the change must not open from that;
mail delivered before it still does (the honest limit, documented in docs/security.md).

The attacker below uses nothing but the stored rows and `cryptmail.crypto`: it opens
every slot it can with the credential it knows, then every sealed private key and data
key with every account key it got, from both databases, until nothing new opens.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import (
    BlobOpener,
    BlobSealer,
    FieldCipher,
    PrivateKey,
    SlotLabel,
    derive_data_key,
    normalize_code,
    open_data_key,
    open_private_key,
    parse_blob_header,
    unlock_slot,
    unwrap_blob_key,
)
from cryptmail.db import UserId
from cryptmail.errors import DecryptionFailed, MalformedObject
from cryptmail.keys import (
    active_public_key,
    add_app_password,
    change_password,
    recover,
    revoke_app_password,
    rotate_key_pair,
    unlock_account,
)
from cryptmail.keys._account import UnlockedAccount
from keys.conftest import PASSWORD, MakeUser, pw

ALICE = "alice@example.org"
NEW = "a new password after the leak"


@dataclass
class Mail:
    """One delivered message: its blob, and the cache field a session wrote for it."""

    blob_id: bytes
    blob: bytes
    plaintext: bytes
    cache: bytes | None = None


async def deliver(engine: AsyncEngine, user_id: UserId, text: bytes) -> Mail:
    """What delivery does: seal to the active public key; no secret involved."""
    async with engine.connect() as conn:
        public = await active_public_key(conn, user_id)
    assert public is not None
    blob_id = os.urandom(16)
    sealer = BlobSealer(public, blob_id)
    return Mail(blob_id, sealer.header + sealer.update(text) + sealer.finalize(), text)


def read(account: UnlockedAccount, mail: Mail) -> bytes:
    """What a session does: unwrap with its private key, and cache the message key
    sealed under its data key (as the store's message cache records do)."""
    header = parse_blob_header(mail.blob)
    message_key = unwrap_blob_key(header, account.private_key(header.key_id), mail.blob_id)
    mail.cache = account.fields.seal(message_key, b"cache|" + mail.blob_id)
    return open_with(mail, message_key)


def open_with(mail: Mail, message_key: bytes) -> bytes:
    header = parse_blob_header(mail.blob)
    opener = BlobOpener(header, message_key, mail.blob_id)
    return opener.update(mail.blob[header.size :]) + opener.finalize()


def copy_database(db_path: Path, target: Path) -> Path:
    """The database file and its WAL, as a backup or a snapshot of the disk has them."""
    target.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(db_path) + suffix)
        if source.exists():
            shutil.copyfile(source, target / (db_path.name + suffix))
    return target / db_path.name


@dataclass
class Loot:
    account_keys: set[bytes] = field(default_factory=set)
    private_keys: dict[bytes, PrivateKey] = field(default_factory=dict)
    data_keys: dict[int, set[bytes]] = field(default_factory=dict)

    def opens(self, mail: Mail) -> bool:
        header = parse_blob_header(mail.blob)
        private = self.private_keys.get(header.key_id)
        if private is not None:
            try:
                return open_with(mail, unwrap_blob_key(header, private, mail.blob_id)) == (
                    mail.plaintext
                )
            except DecryptionFailed:
                pass
        if mail.cache is not None:
            for keys in self.data_keys.values():
                for key in keys:
                    # The cache field under any generation the attacker holds.
                    for later in ({}, *({g: key} for g in range(1, 8))):
                        try:
                            message_key = FieldCipher(key, later).open(
                                mail.cache, b"cache|" + mail.blob_id
                            )
                        except DecryptionFailed:
                            continue
                        return open_with(mail, message_key) == mail.plaintext
        return False


def attack(databases: list[Path], credentials: list[str]) -> Loot:
    """Everything `credentials` open in the union of the rows of `databases`."""
    rows = []
    for path in databases:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            accounts = db.execute("SELECT account_uuid, generation FROM cm_accounts").fetchall()
            slots = db.execute("SELECT kind, name, record FROM cm_key_slots").fetchall()
            pairs = db.execute("SELECT key_id, private_sealed FROM cm_key_pairs").fetchall()
            data = db.execute("SELECT generation, sealed FROM cm_data_keys").fetchall()
        rows.append((accounts, slots, pairs, data))
    loot = Loot()
    for accounts, slots, _pairs, _data in rows:
        for uuid, generation in accounts:
            for kind, name, record in slots:
                for secret in credentials:
                    normalized = normalize_code(secret) if kind != "password" else None
                    credential = (normalized or secret).encode()
                    try:
                        opened = unlock_slot(
                            bytes(record), credential, SlotLabel(uuid, kind, name, generation)
                        )
                    except (DecryptionFailed, MalformedObject):
                        continue
                    loot.account_keys.add(opened.account_key)
    for account_key in loot.account_keys:
        loot.data_keys.setdefault(0, set()).add(derive_data_key(account_key))
        for _accounts, _slots, pairs, data in rows:
            for key_id, sealed in pairs:
                try:
                    private = open_private_key(account_key, bytes(sealed), bytes(key_id))
                except DecryptionFailed:
                    continue
                loot.private_keys[bytes(key_id)] = private
            for generation, sealed in data:
                try:
                    key = open_data_key(account_key, bytes(sealed), generation)
                except DecryptionFailed:
                    continue
                loot.data_keys.setdefault(generation, set()).add(key)
    return loot


async def test_old_password_and_old_backup_do_not_open_mail_after_a_password_change(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig, db_path: Path, tmp_path: Path
) -> None:
    created = await make_user(ALICE)
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    before = await deliver(engine, created.user.id, b"mail before the change")
    assert read(account, before) == before.plaintext

    backup = copy_database(db_path, tmp_path / "backup")
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), crypto)
    after = await deliver(engine, created.user.id, b"mail after the change")
    now, _ = await unlock_account(engine, ALICE, pw(NEW), crypto)
    assert read(now, after) == after.plaintext  # a session cached its key, too

    loot = attack([backup, db_path], [PASSWORD])
    assert loot.account_keys, "the old password opens the old slot in the backup"
    assert not loot.opens(after)
    # The honest limit: what the old password opened before, it still opens.
    assert loot.opens(before)
    # The new password opens both, old mail through the re-sealed old private key.
    assert read(now, before) == before.plaintext
    assert attack([db_path], [NEW]).opens(after)


async def test_remaining_credentials_follow_the_change_without_being_used(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig
) -> None:
    created = await make_user(ALICE)
    assert created.recovery_code is not None
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    phone = await add_app_password(engine, account, "phone", crypto)
    before = await deliver(engine, created.user.id, b"before")
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW), crypto)
    after = await deliver(engine, created.user.id, b"after")

    by_app, slot = await unlock_account(engine, ALICE, pw(phone), crypto)
    assert slot.kind == "app"
    assert read(by_app, before) == before.plaintext
    assert read(by_app, after) == after.plaintext
    await recover(engine, ALICE, created.recovery_code, pw("after recovery"), crypto)
    by_password, _ = await unlock_account(engine, ALICE, pw("after recovery"), crypto)
    assert read(by_password, after) == after.plaintext


async def test_a_revoked_app_password_and_its_saved_slot_do_not_open_later_mail(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig, db_path: Path, tmp_path: Path
) -> None:
    created = await make_user(ALICE)
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    laptop = await add_app_password(engine, account, "laptop", crypto)
    phone = await add_app_password(engine, account, "phone", crypto)
    before = await deliver(engine, created.user.id, b"before the revocation")
    backup = copy_database(db_path, tmp_path / "backup")

    await revoke_app_password(engine, created.user.id, "laptop", account=account)
    after = await deliver(engine, created.user.id, b"after the revocation")
    now, _ = await unlock_account(engine, ALICE, pw(phone), crypto)  # not used meanwhile
    assert read(now, after) == after.plaintext

    loot = attack([backup, db_path], [laptop])
    assert loot.account_keys
    assert not loot.opens(after)
    assert loot.opens(before)


async def test_an_old_password_after_recovery_does_not_open_later_mail(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig, db_path: Path, tmp_path: Path
) -> None:
    created = await make_user(ALICE)
    assert created.recovery_code is not None
    before = await deliver(engine, created.user.id, b"before the recovery")
    backup = copy_database(db_path, tmp_path / "backup")

    new_code = await recover(engine, ALICE, created.recovery_code, pw(NEW), crypto)
    after = await deliver(engine, created.user.id, b"after the recovery")
    now, _ = await unlock_account(engine, ALICE, pw(NEW), crypto)
    assert read(now, after) == after.plaintext

    # The old password and the used recovery code, each with its saved slot.
    loot = attack([backup, db_path], [PASSWORD, created.recovery_code])
    assert loot.account_keys
    assert not loot.opens(after)
    assert loot.opens(before)
    assert attack([db_path], [new_code]).opens(after)


async def test_key_rotate_re_keys_too(
    engine: AsyncEngine, make_user: MakeUser, crypto: CryptoConfig, db_path: Path, tmp_path: Path
) -> None:
    created = await make_user(ALICE)
    account, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    before = await deliver(engine, created.user.id, b"before the rotation")
    backup = copy_database(db_path, tmp_path / "backup")
    async with engine.begin() as conn:
        await rotate_key_pair(conn, account, "prime256v1")
    after = await deliver(engine, created.user.id, b"after the rotation")
    now, _ = await unlock_account(engine, ALICE, pw(PASSWORD), crypto)
    assert now.active_key.curve == "prime256v1"
    assert read(now, before) == before.plaintext
    assert read(now, after) == after.plaintext
    # A copy of the rows from before the rotation, with the (unchanged) password, opens
    # the old account key only; the rotation is not a password change, so the live
    # password slot opens everything, as it should.
    loot = attack([backup], [PASSWORD])
    assert loot.opens(before)
    assert not attack([backup], [PASSWORD]).opens(after)
