"""Key-slot rows: which credential locks the account key, and opening them.

kinds: "password" (the login password; one), "recovery" (the recovery code; one),
"app" (app passwords; one per name). A slot's AEAD context is the account uuid, kind
and name, so a slot row copied elsewhere does not open.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.concurrency import run_kdf
from cryptmail.config import Argon2Config
from cryptmail.crypto import Argon2Params, lock_slot, slot_params, unlock_slot
from cryptmail.db import tables as t
from cryptmail.errors import DecryptionFailed, KdfParametersRefused, MalformedObject, UserError
from cryptmail.secret import Password, SecretBytes
from cryptmail.users import Argon2Parameters, hash_password, verify_password

log = logging.getLogger(__name__)

PASSWORD = "password"  # noqa: S105 - a slot kind, not a secret
RECOVERY = "recovery"
APP = "app"


@dataclass(frozen=True, repr=False)
class SlotRow:
    id: int
    user_id: int
    kind: str
    name: str
    lookup_id: bytes | None
    record: bytes
    hash_fingerprint: bytes | None


def slot_context(account_uuid: bytes, kind: str, name: str) -> bytes:
    return account_uuid + b"|" + kind.encode() + b"|" + name.encode("utf-8")


def params_of(config: Argon2Config) -> Argon2Params:
    return Argon2Params(config.memory_kib, config.time_cost, config.parallelism)


def hash_fingerprint(password_hash: str) -> bytes:
    return hashlib.sha256(password_hash.encode("utf-8")).digest()


async def make_slot(
    account_key: bytes, credential: SecretBytes, config: Argon2Config, context: bytes
) -> bytes:
    """A new slot record (Argon2id on the KDF pool)."""
    return await run_kdf(lock_slot, account_key, credential.reveal(), params_of(config), context)


async def open_slot(
    row: SlotRow, account_uuid: bytes, credential: SecretBytes, config: Argon2Config
) -> bytes | None:
    """The account key, or None if the credential does not open this slot."""
    try:
        slot_params(row.record).check_ceiling(config.max_memory_kib, config.max_time_cost)
        context = slot_context(account_uuid, row.kind, row.name)
        return await run_kdf(unlock_slot, row.record, credential.reveal(), context)
    except (DecryptionFailed, MalformedObject):
        return None
    except KdfParametersRefused as exc:
        # A planted or foreign slot: to the client a failed login like any other.
        log.warning("key slot %d of user id %d refused: %s", row.id, row.user_id, exc)
        return None


def _hash_password_sync(password: SecretBytes, config: Argon2Config) -> str:
    params = Argon2Parameters(
        time_cost=config.time_cost, memory_cost=config.memory_kib, parallelism=config.parallelism
    )
    return hash_password(Password(password.reveal()), argon2=params)


async def hash_for_slot(password: SecretBytes, config: Argon2Config) -> str:
    """The `{ARGON2ID}` hash for virtual_users.password, at the slots' own cost: the SQL
    hash is an offline target too, and the weaker of the two would protect the mail."""
    return await run_kdf(_hash_password_sync, password, config)


def _verify_sync(stored: str, password: SecretBytes) -> bool:
    try:
        return verify_password(stored, Password(password.reveal()))
    except UserError as exc:
        # A hash we cannot use (unknown scheme, malformed) fails like a wrong password;
        # the operator log says which, by user id, in the caller.
        log.warning("stored password hash cannot be checked: %s", type(exc).__name__)
        return False


async def verify_hash(stored: str, password: SecretBytes) -> bool:
    """Check `password` against a virtual_users.password value, off the event loop."""
    return await run_kdf(_verify_sync, stored, password)


async def burn_kdf(config: Argon2Config) -> None:
    """Spend one Argon2 on nothing, so an unknown user costs as long as a wrong password."""
    await run_kdf(lock_slot, bytes(32), b"", params_of(config), b"burn")


def _row(r: object) -> SlotRow:
    return SlotRow(
        id=int(r.id),  # type: ignore[attr-defined]
        user_id=int(r.user_id),  # type: ignore[attr-defined]
        kind=str(r.kind),  # type: ignore[attr-defined]
        name=str(r.name),  # type: ignore[attr-defined]
        lookup_id=bytes(r.lookup_id) if r.lookup_id is not None else None,  # type: ignore[attr-defined]
        record=bytes(r.record),  # type: ignore[attr-defined]
        hash_fingerprint=(
            bytes(r.hash_fingerprint) if r.hash_fingerprint is not None else None  # type: ignore[attr-defined]
        ),
    )


async def slots_of(conn: AsyncConnection, user_id: int) -> list[SlotRow]:
    rows = await conn.execute(
        select(t.cm_key_slots).where(t.cm_key_slots.c.user_id == user_id).order_by("id")
    )
    return [_row(r) for r in rows]


async def slot_by_lookup(conn: AsyncConnection, lookup_id: bytes) -> SlotRow | None:
    row = (
        await conn.execute(select(t.cm_key_slots).where(t.cm_key_slots.c.lookup_id == lookup_id))
    ).first()
    return _row(row) if row is not None else None
