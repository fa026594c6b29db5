"""Re-keying: a new account key and a new delivery key pair, so that a credential (or a
slot row) that opened the old account key opens nothing delivered after the change.

`rekey` runs inside the caller's write transaction, after any Argon2 work:

1. the generation moves from g to g + 1 (compare-and-swap: a concurrent re-key loses);
2. every data key is sealed again under the new account key, and a new random data key
   of generation g + 1 is added (new index fields are sealed under it);
3. every private key is sealed again under the new account key, and a new key pair,
   sealed under it, becomes the active one (delivery seals to it from the commit on);
4. every version-2 slot that the caller does not write itself is sealed again to its
   own public key (no credential needed); a version-1 slot cannot be, and is deleted.

The caller then writes or deletes the slots it named in `skip` (the changed password,
the used recovery code, the revoked app password), sealed to `new.account_key` for
generation `new.generation`. One transaction: a crash leaves the old state or the new.

A change made without the account key (an app password revoked by an admin, or from a
web page, which holds no key) cannot re-key: it deletes the slot and marks the account
`rekey_pending`; the next login that opens the account key re-keys (keys/_login.py),
and every re-key clears the mark.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.crypto import (
    CurveName,
    PublicKeyInfo,
    new_account_key,
    new_data_key,
    open_private_key,
    reseal_slot,
    seal_data_key,
    seal_private_key,
    slot_version,
)
from cryptmail.db import ChangeKind, UserId, record_user_change
from cryptmail.db import tables as t
from cryptmail.errors import KeySlotError, MalformedObject
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._faults import checkpoint
from cryptmail.keys._integrity import keeping_rows_sealed
from cryptmail.keys._kdf import slot_label
from cryptmail.keys._keyring import data_keys, insert_key_pair, new_private_key
from cryptmail.keys._slots import replace_slot, slots_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, repr=False)
class GenerationKey:
    """An account key and its generation: the next one is chosen before the
    transaction, so that the caller's new slot can be locked to it while no lock is held."""

    account_key: bytes = field(repr=False)
    generation: int


@dataclass(frozen=True)
class Rekeyed:
    """What a re-key did: the new active key, and the version-1 slots it had to delete
    (kind, name), which their credential never opened since the upgrade."""

    active_key: PublicKeyInfo
    dropped: tuple[tuple[str, str], ...]


def next_generation(generation: int) -> GenerationKey:
    return GenerationKey(new_account_key(), generation + 1)


def stale_keys() -> KeySlotError:
    return KeySlotError(
        "the account's keys changed while this ran (a password change or sign-in "
        "elsewhere); nothing was changed: sign in again and retry"
    )


async def check_generation(conn: AsyncConnection, user_id: UserId, generation: int) -> None:
    """KeySlotError unless the account key is still of `generation`."""
    row = (
        await conn.execute(
            select(t.cm_accounts.c.generation).where(t.cm_accounts.c.user_id == user_id)
        )
    ).first()
    if row is None or int(row.generation) != generation:
        raise stale_keys()


async def mark_rekey_pending(conn: AsyncConnection, user_id: UserId) -> None:
    """The next login that opens the account key re-keys it (no-op without keys)."""
    await conn.execute(
        update(t.cm_accounts).where(t.cm_accounts.c.user_id == user_id).values(rekey_pending=True)
    )


async def rekey_pending(conn: AsyncConnection, user_id: UserId) -> bool:
    row = (
        await conn.execute(
            select(t.cm_accounts.c.rekey_pending).where(t.cm_accounts.c.user_id == user_id)
        )
    ).first()
    return row is not None and bool(row.rekey_pending)


async def rekey(
    conn: AsyncConnection,
    user_id: UserId,
    account_uuid: bytes,
    old_key: bytes,
    old_generation: int,
    new: GenerationKey,
    *,
    skip: Collection[int] = (),
    curve: CurveName | None = None,
) -> Rekeyed:
    """Move the account from `old_key` (generation `old_generation`) to `new`, in the
    caller's transaction. The new key pair is on `curve` (default: the active pair's).
    Raises KeySlotError if the account was re-keyed meanwhile."""
    if new.generation != old_generation + 1:
        raise ValueError("a re-key moves to the next generation")
    moved = await conn.execute(
        update(t.cm_accounts)
        .where(t.cm_accounts.c.user_id == user_id, t.cm_accounts.c.generation == old_generation)
        # Cached logins of every process end too (keys/_generation.py).
        .values(
            generation=new.generation,
            credential_generation=t.cm_accounts.c.credential_generation + 1,
            rekey_pending=False,
        )
    )
    if moved.rowcount != 1:
        raise stale_keys()
    await conn.run_sync(record_user_change, user_id, ChangeKind.CREDENTIALS)  # every node
    checkpoint("rekey:after-generation")

    keys = await data_keys(conn, user_id, old_key)
    keys[new.generation] = new_data_key()
    await conn.execute(delete(t.cm_data_keys).where(t.cm_data_keys.c.user_id == user_id))
    for generation, data_key in sorted(keys.items()):
        await conn.execute(
            t.cm_data_keys.insert().values(
                user_id=user_id,
                generation=generation,
                sealed=seal_data_key(new.account_key, data_key, generation),
            )
        )

    pairs = (
        await conn.execute(select(t.cm_key_pairs).where(t.cm_key_pairs.c.user_id == user_id))
    ).all()
    for pair in pairs:
        key_id = bytes(pair.key_id)
        private = open_private_key(old_key, bytes(pair.private_sealed), key_id)
        if curve is None and pair.active:
            curve = pair.curve
        await conn.execute(
            update(t.cm_key_pairs)
            .where(t.cm_key_pairs.c.id == pair.id)
            .values(private_sealed=seal_private_key(new.account_key, private, key_id))
        )
    if curve is None:
        raise KeySlotError("the account has no active key pair to replace")
    active = await insert_key_pair(
        conn, user_id, new.account_key, new_private_key(curve), active=True
    )
    checkpoint("rekey:after-keys")

    dropped: list[tuple[str, str]] = []
    for slot in await slots_of(conn, user_id):
        if slot.id in skip:
            continue
        try:
            version = slot_version(slot.record)
        except MalformedObject:
            version = 0
        if version == 2:
            label = slot_label(account_uuid, slot.kind, slot.name, new.generation)
            await replace_slot(conn, slot, reseal_slot(slot.record, new.account_key, label))
            continue
        # A version-1 slot holds the old account key under its credential's Argon2 key,
        # which the server does not have: it cannot follow, and kept it would open nothing.
        await conn.execute(delete(t.cm_key_slots).where(t.cm_key_slots.c.id == slot.id))
        dropped.append((slot.kind, slot.name))
    checkpoint("rekey:after-slots")
    if dropped:
        log.warning(
            "re-key of user id %d deleted %d version-1 key slot(s) (%s) that were not used "
            "since the upgrade; renew them",
            user_id,
            len(dropped),
            ", ".join(kind for kind, _name in dropped),
        )
    return Rekeyed(active, tuple(dropped))


async def rotate_key_pair(
    conn: AsyncConnection, account: UnlockedAccount, curve: CurveName
) -> PublicKeyInfo:
    """`key rotate`: a re-key whose new key pair is on `curve`, in the caller's
    transaction; old private keys stay (sealed under the new account key) so old mail
    stays readable. `account` is stale afterwards. Raises KeySlotError."""
    new = next_generation(account.generation)
    old_key = account.account_key.reveal()
    async with keeping_rows_sealed(conn, account.user.id, old_key) as sealing:
        done = await rekey(
            conn,
            account.user.id,
            account.account_uuid,
            old_key,
            account.generation,
            new,
            curve=curve,
        )
        sealing.account_key = new.account_key
    return done.active_key
