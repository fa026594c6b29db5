"""Key-slot rows in SQL: every statement on cm_key_slots lives here.

kinds: "password" (the login password; one), "recovery" (the recovery code; one),
"app" (app passwords; one per name). The record is the account key locked by that
credential (see `_kdf`); the password slot also holds the fingerprint of the
virtual_users.password it was locked alongside, so a hash rewritten outside cryptmail
is noticed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.db import UserId, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import KeySlotError

PASSWORD = "password"  # noqa: S105 - a slot kind, not a secret
RECOVERY = "recovery"
APP = "app"


@dataclass(frozen=True, repr=False)
class SlotRow:
    id: int
    user_id: UserId
    kind: str
    name: str
    lookup_id: bytes | None
    record: bytes
    hash_fingerprint: bytes | None


def hash_fingerprint(password_hash: str) -> bytes:
    return hashlib.sha256(password_hash.encode("utf-8")).digest()


def _row(r: object) -> SlotRow:
    return SlotRow(
        id=int(r.id),  # type: ignore[attr-defined]
        user_id=UserId(int(r.user_id)),  # type: ignore[attr-defined]
        kind=str(r.kind),  # type: ignore[attr-defined]
        name=str(r.name),  # type: ignore[attr-defined]
        lookup_id=bytes(r.lookup_id) if r.lookup_id is not None else None,  # type: ignore[attr-defined]
        record=bytes(r.record),  # type: ignore[attr-defined]
        hash_fingerprint=(
            bytes(r.hash_fingerprint) if r.hash_fingerprint is not None else None  # type: ignore[attr-defined]
        ),
    )


async def slots_of(conn: AsyncConnection, user_id: UserId) -> list[SlotRow]:
    rows = await conn.execute(
        select(t.cm_key_slots).where(t.cm_key_slots.c.user_id == user_id).order_by("id")
    )
    return [_row(r) for r in rows]


async def slot_by_lookup(conn: AsyncConnection, lookup_id: bytes) -> SlotRow | None:
    row = (
        await conn.execute(select(t.cm_key_slots).where(t.cm_key_slots.c.lookup_id == lookup_id))
    ).first()
    return _row(row) if row is not None else None


async def insert_slot(
    conn: AsyncConnection,
    user_id: UserId,
    kind: str,
    record: bytes,
    *,
    name: str = "",
    lookup_id: bytes | None = None,
    fingerprint: bytes | None = None,
) -> None:
    """Raises DatabaseConflict if the user has a slot of this kind and name already."""
    await conn.execute(
        t.cm_key_slots.insert().values(
            user_id=user_id,
            kind=kind,
            name=name,
            lookup_id=lookup_id,
            record=record,
            hash_fingerprint=fingerprint,
            created_at=utcnow(),
        )
    )


async def replace_slot(
    conn: AsyncConnection, old: SlotRow, record: bytes, **values: object
) -> None:
    """Swap the record of `old` (and other columns); KeySlotError if it changed meanwhile."""
    # Compare-and-swap on the record: a concurrent change of the same slot loses cleanly.
    result = await conn.execute(
        update(t.cm_key_slots)
        .where(t.cm_key_slots.c.id == old.id, t.cm_key_slots.c.record == old.record)
        .values(record=record, **values)
    )
    if result.rowcount != 1:
        raise KeySlotError("the key slot changed while this change ran; try again")


async def set_fingerprint(conn: AsyncConnection, slot: SlotRow, fingerprint: bytes) -> bool:
    """Record the SQL hash a password slot goes with, unless the slot changed meanwhile."""
    result = await conn.execute(
        update(t.cm_key_slots)
        .where(t.cm_key_slots.c.id == slot.id, t.cm_key_slots.c.record == slot.record)
        .values(hash_fingerprint=fingerprint)
    )
    return bool(result.rowcount == 1)


async def delete_app_slot(conn: AsyncConnection, user_id: UserId, name: str) -> bool:
    """Delete the app password slot `name`; False if there was none."""
    result = await conn.execute(
        delete(t.cm_key_slots).where(
            t.cm_key_slots.c.user_id == user_id,
            t.cm_key_slots.c.kind == APP,
            t.cm_key_slots.c.name == name,
        )
    )
    return bool(result.rowcount)


async def app_slot_names(conn: AsyncConnection, user_id: UserId) -> list[tuple[str, datetime]]:
    """Name and creation time of each app password slot, by name."""
    rows = await conn.execute(
        select(t.cm_key_slots.c.name, t.cm_key_slots.c.created_at)
        .where(t.cm_key_slots.c.user_id == user_id, t.cm_key_slots.c.kind == APP)
        .order_by(t.cm_key_slots.c.name)
    )
    return [(str(r.name), r.created_at) for r in rows]


async def slot_still_opens(
    conn: AsyncConnection, user_id: UserId, slot_id: int, record: bytes
) -> bool:
    """Whether slot `slot_id` still holds `record` and the SQL hash is still the one the
    password slot was locked alongside (not rewritten from outside)."""
    slots = t.cm_key_slots
    password_slot = slots.alias("password_slot")
    row = (
        await conn.execute(
            select(
                slots.c.record,
                t.virtual_users.c.password,
                password_slot.c.hash_fingerprint,
            )
            .select_from(
                slots.join(t.virtual_users, t.virtual_users.c.id == slots.c.user_id).join(
                    password_slot,
                    and_(
                        password_slot.c.user_id == slots.c.user_id,
                        password_slot.c.kind == PASSWORD,
                    ),
                )
            )
            .where(slots.c.id == slot_id, slots.c.user_id == user_id)
        )
    ).first()
    if row is None or row.hash_fingerprint is None:
        return False
    return hmac.compare_digest(bytes(row.record), record) and hmac.compare_digest(
        bytes(row.hash_fingerprint), hash_fingerprint(str(row.password))
    )
