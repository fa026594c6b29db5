"""The keys package's Argon2 work, all on the KDF pool: lock and open a slot record, make
and check a virtual_users.password hash, and burn one derivation to even out timing.

A slot is bound to the account uuid, its kind and name and the account key's
generation (`SlotLabel`), so a slot row copied elsewhere, or restored from before a
re-key, does not open.
"""

from __future__ import annotations

import logging

from cryptmail.concurrency import run_kdf
from cryptmail.config import Argon2Config
from cryptmail.crypto import (
    OpenedSlot,
    SlotLabel,
    lock_slot,
    slot_params,
    unlock_slot,
)
from cryptmail.errors import DecryptionFailed, KdfParametersRefused, MalformedObject, UserError
from cryptmail.keys._slots import SlotRow
from cryptmail.secret import Password, SecretBytes
from cryptmail.users import hash_password, verify_password

log = logging.getLogger(__name__)


def slot_label(account_uuid: bytes, kind: str, name: str, generation: int) -> SlotLabel:
    return SlotLabel(account_uuid, kind, name, generation)


async def make_slot(
    account_key: bytes, credential: SecretBytes, config: Argon2Config, label: SlotLabel
) -> bytes:
    """A new (version 2) slot record (one Argon2id)."""
    return await run_kdf(lock_slot, account_key, credential.reveal(), config, label)


async def open_slot(
    row: SlotRow,
    account_uuid: bytes,
    generation: int,
    credential: SecretBytes,
    config: Argon2Config,
) -> OpenedSlot | None:
    """The account key and the slot's key pair, or None if the credential does not open
    this slot (one Argon2id, none for a slot asking for more work than the ceiling)."""
    try:
        slot_params(row.record).check_ceiling(config.max_memory_kib, config.max_time_cost)
        label = slot_label(account_uuid, row.kind, row.name, generation)
        return await run_kdf(unlock_slot, row.record, credential.reveal(), label)
    except (DecryptionFailed, MalformedObject):
        return None
    except KdfParametersRefused as exc:
        # A planted or foreign slot: to the client a failed login like any other.
        log.warning("key slot %d of user id %d refused: %s", row.id, row.user_id, exc)
        return None


def _hash_password_sync(password: SecretBytes, config: Argon2Config) -> str:
    return hash_password(Password(password.reveal()), argon2=config)


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
    await run_kdf(lock_slot, bytes(32), b"", config, SlotLabel(b"", "burn", "", 0))
