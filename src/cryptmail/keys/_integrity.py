"""Authenticated key rows: what a login and a delivery read from the database is what
cryptmail wrote there.

Two MACs in the account's cm_accounts row (docs/security.md, "Authenticated key rows"):

- `key_mac`, under a key derived from the account key, over the user id, the account's
  uuid and generation, `crypt`, the active public key, every key-pair row and the slot
  list (`key_mac_slots`: each slot's row id and a digest of the row). Checked at every
  unlock; a SQL writer cannot forge it without the account key.
- `delivery_mac`, under the server key (keys/_server_key.py), over the user id, `crypt`
  and the active public key: delivery holds no user secret, and checks this one.

Every change of those rows rewrites both in its own transaction (`keeping_rows_sealed`,
or `seal_key_rows` for new keys). Rows from before migration 0008 have neither until
their first unlock, which writes them (trust on first use, after checking that every
stored public key is the one of its private key).

A slot that is in the list but no longer in the table is allowed: an administrator
revokes an app password without the user's key, so cannot rewrite the MAC. A slot that
is in the table but not in the list (or differs from its digest) is not.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.crypto import (
    KeyPairRow,
    PublicKeyInfo,
    SlotEntry,
    account_mac,
    decode_slot_list,
    delivery_mac,
    encode_slot_list,
    macs_equal,
    open_private_key,
    public_info,
    slot_digest,
)
from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import CryptoError, KeyRowsTampered, KeySlotError, RecipientKeyUnverified
from cryptmail.keys import _events as events
from cryptmail.keys._server_key import server_key
from cryptmail.keys._slots import slots_of

log = logging.getLogger(__name__)

# The values `crypt` has in ISPmail schemas; a MAC that fits one of the others tells
# that only `crypt` changed.
_CRYPT_VALUES = (0, 1, 2)


@dataclass(frozen=True, repr=False)
class KeyRows:
    """An account's rows as the MACs cover them, and the stored MACs."""

    user_id: UserId
    crypt: int
    account_uuid: bytes
    generation: int
    pairs: tuple[KeyPairRow, ...]
    slots: tuple[SlotEntry, ...]
    key_mac: bytes | None
    key_mac_slots: bytes | None
    delivery_mac: bytes | None

    @property
    def active(self) -> PublicKeyInfo | None:
        active = [p for p in self.pairs if p.active]
        if len(active) != 1:
            return None
        return PublicKeyInfo(active[0].curve, active[0].public_key)  # type: ignore[arg-type]


class Verdict(enum.Enum):
    SEALED = "sealed"
    """Both MACs fit (or the key MAC fits and the delivery MAC is to be rewritten)."""
    UNSEALED = "unsealed"
    """No key MAC yet: rows from before migration 0008."""
    CRYPT_SET = "crypt_set"
    """Only `crypt` differs, and the delivery MAC covers its new value: `user crypt`."""
    CRYPT_CHANGED = "crypt_changed"
    """Only `crypt` differs, and nothing of ours covers its new value: a SQL write."""
    TAMPERED = "tampered"
    """Key pairs or slots differ from what the key MAC covers."""


async def read_key_rows(conn: AsyncConnection, user_id: UserId) -> KeyRows | None:
    """The account's key rows, or None for a user without keys."""
    acc = t.cm_accounts
    row = (
        await conn.execute(
            select(
                acc.c.account_uuid,
                acc.c.generation,
                acc.c.key_mac,
                acc.c.key_mac_slots,
                acc.c.delivery_mac,
                t.virtual_users.c.crypt,
            )
            .select_from(acc.join(t.virtual_users, t.virtual_users.c.id == acc.c.user_id))
            .where(acc.c.user_id == user_id)
        )
    ).first()
    if row is None:
        return None
    pairs = (
        await conn.execute(select(t.cm_key_pairs).where(t.cm_key_pairs.c.user_id == user_id))
    ).all()
    slots = await slots_of(conn, user_id)
    return KeyRows(
        user_id=user_id,
        crypt=int(row.crypt),
        account_uuid=bytes(row.account_uuid),
        generation=int(row.generation),
        pairs=tuple(
            KeyPairRow(
                bytes(p.key_id),
                str(p.curve),
                bytes(p.public_key),
                bytes(p.private_sealed),
                bool(p.active),
            )
            for p in pairs
        ),
        slots=tuple(
            SlotEntry(s.id, slot_digest(s.kind, s.name, s.lookup_id, s.record)) for s in slots
        ),
        key_mac=_opt(row.key_mac),
        key_mac_slots=_opt(row.key_mac_slots),
        delivery_mac=_opt(row.delivery_mac),
    )


def _opt(value: object) -> bytes | None:
    return bytes(value) if value is not None else None  # type: ignore[call-overload]


def _key_mac(rows: KeyRows, account_key: bytes, crypt: int, slot_list: bytes) -> bytes:
    active = rows.active
    return account_mac(
        account_key,
        user_id=rows.user_id,
        account_uuid=rows.account_uuid,
        generation=rows.generation,
        crypt=crypt,
        active_curve=active.curve if active else "",
        active_public=active.encoded if active else b"",
        pairs=rows.pairs,
        slot_list=slot_list,
    )


def expected_delivery_mac(user_id: int, crypt: int, active: PublicKeyInfo | None) -> bytes:
    """The delivery MAC of these values under this process's server key."""
    return delivery_mac(
        server_key().delivery_mac_key(),
        user_id=user_id,
        crypt=crypt,
        curve=active.curve if active else "",
        public_key=active.encoded if active else b"",
    )


def _slots_allowed(rows: KeyRows, stored: list[SlotEntry]) -> bool:
    listed = {e.slot_id: e.digest for e in stored}
    return all(listed.get(s.slot_id) == s.digest for s in rows.slots)


def judge(rows: KeyRows, account_key: bytes) -> tuple[Verdict, int]:
    """What the key MAC says of `rows`, and the `crypt` value it vouches for."""
    if rows.key_mac is None:
        return Verdict.UNSEALED, rows.crypt
    stored = decode_slot_list(rows.key_mac_slots or b"")
    if stored is None or not _slots_allowed(rows, stored):
        return Verdict.TAMPERED, rows.crypt
    slot_list = rows.key_mac_slots or b""
    if macs_equal(rows.key_mac, _key_mac(rows, account_key, rows.crypt, slot_list)):
        return Verdict.SEALED, rows.crypt
    for crypt in _CRYPT_VALUES:
        if crypt != rows.crypt and macs_equal(
            rows.key_mac, _key_mac(rows, account_key, crypt, slot_list)
        ):
            if macs_equal(
                rows.delivery_mac, expected_delivery_mac(rows.user_id, rows.crypt, rows.active)
            ):
                return Verdict.CRYPT_SET, rows.crypt
            return Verdict.CRYPT_CHANGED, crypt
    return Verdict.TAMPERED, rows.crypt


def pairs_match(rows: KeyRows, account_key: bytes) -> bool:
    """Every key pair's private key opens under `account_key` and has the row's public
    key, and exactly one is active: what a first unlock checks before trusting rows."""
    if rows.active is None:
        return False
    for pair in rows.pairs:
        try:
            private = open_private_key(account_key, pair.private_sealed, pair.key_id)
        except CryptoError:
            return False
        info = public_info(private)
        if (info.curve, info.encoded, info.key_id) != (pair.curve, pair.public_key, pair.key_id):
            return False
    return True


async def seal_key_rows(
    conn: AsyncConnection, user_id: UserId, account_key: bytes, crypt: int | None = None
) -> None:
    """Write both MACs over the account's rows as they are now in this transaction;
    `crypt`: the value to vouch for (default: the stored one)."""
    rows = await read_key_rows(conn, user_id)
    if rows is None:
        return
    vouched = rows.crypt if crypt is None else crypt
    slot_list = encode_slot_list(rows.slots)
    await conn.execute(
        update(t.cm_accounts)
        .where(t.cm_accounts.c.user_id == user_id)
        .values(
            key_mac=_key_mac(rows, account_key, vouched, slot_list),
            key_mac_slots=slot_list,
            delivery_mac=expected_delivery_mac(user_id, vouched, rows.active),
        )
    )


async def seal_delivery(conn: AsyncConnection, user_id: UserId) -> bool:
    """Write the delivery MAC over the stored `crypt` and active key (no user secret:
    `cryptmail user crypt`). False for a user without keys. Raises KeySlotError if
    the stored MAC vouches for another public key: a `crypt` may be recorded, not a key
    changed in SQL (the user's next sign-in records a key it verified)."""
    rows = await read_key_rows(conn, user_id)
    if rows is None:
        return False
    if rows.delivery_mac is not None and not any(
        macs_equal(rows.delivery_mac, expected_delivery_mac(user_id, crypt, rows.active))
        for crypt in {*_CRYPT_VALUES, rows.crypt}
    ):
        raise KeySlotError(
            f"user id {user_id}: the public key in the database is not the one cryptmail "
            "recorded (changed outside cryptmail, or another server_key_file); crypt was "
            "not recorded. Restore the key rows, or let the user sign in once if the "
            "server key was replaced (docs/security.md, 'Authenticated key rows')"
        )
    await conn.execute(
        update(t.cm_accounts)
        .where(t.cm_accounts.c.user_id == user_id)
        .values(delivery_mac=expected_delivery_mac(user_id, rows.crypt, rows.active))
    )
    return True


@dataclass
class Resealing:
    """The key the MACs are written under at the end (a re-key replaces it)."""

    account_key: bytes
    crypt: int


@asynccontextmanager
async def keeping_rows_sealed(
    conn: AsyncConnection, user_id: UserId, account_key: bytes
) -> AsyncIterator[Resealing]:
    """Check the rows before a change in the caller's transaction, and write the MACs
    again after it (under `Resealing.account_key`, which a re-key sets to the new key).
    A `crypt` changed in SQL stays unvouched. Raises KeyRowsTampered."""
    rows = await read_key_rows(conn, user_id)
    crypt = rows.crypt if rows is not None else 0
    if rows is not None:
        verdict, crypt = judge(rows, account_key)
        if verdict is Verdict.TAMPERED or (
            verdict is Verdict.UNSEALED and not pairs_match(rows, account_key)
        ):
            raise _tampered(user_id)
    resealing = Resealing(account_key, crypt)
    yield resealing
    await seal_key_rows(conn, user_id, resealing.account_key, resealing.crypt)


def _tampered(user_id: int) -> KeyRowsTampered:
    log.error(
        "user id %d: the key pairs or key slots in the database are not the ones cryptmail "
        "wrote (their MAC does not match): sign-in refused. Someone with write access to "
        "the database changed them; restore the user's cm_key_pairs, cm_key_slots and "
        "cm_accounts rows from a backup (docs/security.md, 'Authenticated key rows')",
        user_id,
    )
    return KeyRowsTampered(
        "the account's keys in the database were changed outside cryptmail; sign-in is "
        "refused until an administrator restores them"
    )


async def verify_key_rows(
    engine: AsyncEngine, user_id: UserId, account_key: bytes, generation: int, client_ip: str = ""
) -> None:
    """The unlock check: refuse rows that do not match their MAC (KeyRowsTampered, with
    a security event), seal rows that have none yet, rewrite a delivery MAC that does
    not match (a new server key), and record a `crypt` changed in SQL as an event.
    Reads only, unless one of those needs a write."""
    async with engine.connect() as conn:
        rows = await read_key_rows(conn, user_id)
    if rows is None or rows.generation != generation:
        return  # changed meanwhile by one of us; the next unlock checks
    verdict, _crypt = judge(rows, account_key)
    if verdict is Verdict.SEALED and _sealed_as_stored(rows):
        return
    if verdict is not Verdict.TAMPERED:
        async with engine.begin() as conn:
            if await _settle(conn, user_id, account_key, generation):
                return
    async with engine.begin() as conn:
        await events.record_plain_event(conn, user_id, events.KEY_ROWS_CHANGED, client_ip)
    raise _tampered(user_id)


async def _settle(
    conn: AsyncConnection, user_id: UserId, account_key: bytes, generation: int
) -> bool:
    # The write half of `verify_key_rows`, on rows read again in its transaction.
    # False: the rows are not to be trusted.
    rows = await read_key_rows(conn, user_id)
    if rows is None or rows.generation != generation:
        return True
    verdict, crypt = judge(rows, account_key)
    if verdict is Verdict.UNSEALED:
        if not pairs_match(rows, account_key):
            return False
        await seal_key_rows(conn, user_id, account_key)
        log.info("user id %d: key rows sealed at first unlock (trust on first use)", user_id)
    elif verdict is Verdict.CRYPT_CHANGED:
        await note_crypt_changed(conn, user_id, rows.crypt, crypt)
    elif verdict is Verdict.TAMPERED:
        return False
    elif verdict is Verdict.CRYPT_SET or not _sealed_as_stored(rows):
        await seal_key_rows(conn, user_id, account_key)
    return True


def _sealed_as_stored(rows: KeyRows) -> bool:
    # The delivery MAC fits (not a new server key) and the slot list is the table's
    # (no slot revoked by an administrator since).
    return macs_equal(
        rows.delivery_mac, expected_delivery_mac(rows.user_id, rows.crypt, rows.active)
    ) and rows.key_mac_slots == encode_slot_list(rows.slots)


async def note_crypt_changed(
    conn: AsyncConnection, user_id: UserId, stored: int, vouched: int
) -> None:
    """Log a `crypt` changed in SQL, and record it as a security event (once, until
    another event comes between)."""
    log.warning(
        "user id %d: crypt is %d in the database, but cryptmail last recorded %d (changed "
        "in SQL, not with `cryptmail user crypt`): new mail is sealed while a verified "
        "key exists; run `cryptmail user crypt ADDRESS %d` to make the change",
        user_id,
        stored,
        vouched,
        stored,
    )
    await events.record_plain_event(conn, user_id, events.CRYPT_CHANGED, once=True)


@dataclass(frozen=True)
class DeliveryCheck:
    """What the delivery MAC says of the key and `crypt` delivery read.

    `verified`: the MAC fits (or there is none yet: `unsealed`). `crypt`: the value to
    act on: the stored one, or the safer one (2, seal) when only `crypt` fails its MAC
    and the key verifies (`crypt_changed`)."""

    verified: bool
    crypt: int
    unsealed: bool = False
    crypt_changed: bool = False
    vouched: int | None = None


def check_delivery(
    user_id: int, crypt: int, active: PublicKeyInfo | None, mac: bytes | None
) -> DeliveryCheck:
    """Check what delivery read against the delivery MAC (pure; the caller logs and
    records). A user without keys has no MAC: nothing to check."""
    if mac is None:
        return DeliveryCheck(verified=True, crypt=crypt, unsealed=active is not None)
    if macs_equal(mac, expected_delivery_mac(user_id, crypt, active)):
        return DeliveryCheck(verified=True, crypt=crypt)
    for other in _CRYPT_VALUES:
        if other != crypt and macs_equal(mac, expected_delivery_mac(user_id, other, active)):
            safer = 2 if active is not None else crypt
            return DeliveryCheck(verified=True, crypt=safer, crypt_changed=True, vouched=other)
    return DeliveryCheck(verified=False, crypt=crypt)


async def note_key_unverified(engine: AsyncEngine, user_id: UserId) -> None:
    """Record the security event of a delivery that found a public key its MAC does
    not vouch for (once, until another event comes between)."""
    async with engine.begin() as conn:
        await events.record_plain_event(conn, user_id, events.KEY_ROWS_CHANGED, once=True)


async def note_crypt_changed_at_delivery(
    engine: AsyncEngine, user_id: UserId, stored: int, vouched: int
) -> None:
    async with engine.begin() as conn:
        await note_crypt_changed(conn, user_id, stored, vouched)


async def verified_public_key(conn: AsyncConnection, user_id: UserId) -> PublicKeyInfo | None:
    """The active public key, checked against the delivery MAC like a delivery's (for
    sealing without the user: `mailbox encrypt`); None without keys. Raises
    RecipientKeyUnverified for a key the MAC does not vouch for."""
    rows = await read_key_rows(conn, user_id)
    if rows is None:
        return None
    if not check_delivery(user_id, rows.crypt, rows.active, rows.delivery_mac).verified:
        log.error(
            "user id %d: the public key in the database does not match its MAC under the "
            "server key; nothing is sealed to it",
            user_id,
        )
        raise RecipientKeyUnverified(
            f"user id {user_id}: the public key in the database is not the one cryptmail "
            "recorded; nothing was sealed to it (docs/security.md, 'Authenticated key rows')"
        )
    return rows.active
