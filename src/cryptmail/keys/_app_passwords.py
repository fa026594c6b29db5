"""App passwords: one named slot each, for phones and mail clients.

Revoking with the unlocked account re-keys it (`_rekey`), so the revoked app password,
kept with an old copy of its slot, opens nothing delivered after the revocation.
Without it (an admin on the command line, a signed-in web page: neither holds the key)
the slot is deleted, the credential generation bumped (the app password's sessions
end, its cached logins are dropped) and the account marked re-key pending: the next
login that opens the account key re-keys it. Until then the revoked app password with
a copy of its old slot (a backup) still opens the account key, and so mail delivered
meanwhile; the revocation says so."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.crypto import code_lookup_id, generate_app_password, normalize_code
from cryptmail.db import UserId
from cryptmail.errors import (
    AppPasswordExists,
    AppPasswordNotFound,
    DatabaseConflict,
    KeySlotError,
)
from cryptmail.keys import _events as events
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._generation import bump_generation
from cryptmail.keys._integrity import keeping_rows_sealed
from cryptmail.keys._kdf import make_slot, slot_label
from cryptmail.keys._rekey import check_generation, mark_rekey_pending, next_generation, rekey
from cryptmail.keys._slots import APP, app_slot_names, delete_app_slot, insert_slot, slots_of
from cryptmail.secret import Password

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[\w .@+-]{1,64}$")


@dataclass(frozen=True)
class AppPasswordInfo:
    name: str
    created_at: datetime


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise KeySlotError("an app password name is 1-64 letters, digits, spaces or . @ + - _")
    return name


async def add_app_password(
    engine: AsyncEngine,
    account: UnlockedAccount,
    name: str,
    crypto: CryptoConfig,
    *,
    client_ip: str = "",
) -> str:
    """A new app password named `name`, returned once (one Argon2id).

    Raises KeySlotError for a bad name, AppPasswordExists.
    """
    name = check_name(name)
    secret = generate_app_password()
    normalized = normalize_code(secret)
    assert normalized is not None  # noqa: S101 - generated codes are always valid
    record = await make_slot(
        account.account_key.reveal(),
        Password.from_str(normalized),
        crypto.argon2,
        slot_label(account.account_uuid, APP, name, account.generation),
    )
    try:
        async with engine.begin() as conn:
            await check_generation(conn, account.user.id, account.generation)
            async with keeping_rows_sealed(conn, account.user.id, account.account_key.reveal()):
                await insert_slot(
                    conn,
                    account.user.id,
                    APP,
                    record,
                    name=name,
                    lookup_id=code_lookup_id(normalized),
                )
            await events.record_event(
                conn, account.user.id, events.APP_PASSWORD_ADDED, client_ip, name
            )
    except DatabaseConflict as exc:
        raise AppPasswordExists(f"an app password named {name!r} exists already") from exc
    return secret


async def revoke_app_password(
    engine: AsyncEngine,
    user_id: UserId,
    name: str,
    *,
    client_ip: str = "",
    account: UnlockedAccount | None = None,
) -> None:
    """Delete the app password `name`: it stops working at the next login, and the
    user's live sessions end at the next poll of their `CredentialWatcher`. With
    `account` (the user's, unlocked), re-key in the same transaction; without, mark the
    account re-key pending (the next login re-keys). Raises AppPasswordNotFound,
    KeySlotError (`account` is of an older generation)."""
    async with engine.begin() as conn:
        if account is not None:
            if account.user.id != user_id:
                raise ValueError("the unlocked account is another user's")
            slots = await slots_of(conn, user_id)
            slot = next((s for s in slots if s.kind == APP and s.name == name.strip()), None)
            if slot is None:
                raise AppPasswordNotFound(f"no app password named {name.strip()!r}")
            old_key = account.account_key.reveal()
            async with keeping_rows_sealed(conn, user_id, old_key) as sealing:
                following = next_generation(account.generation)
                await rekey(
                    conn,
                    user_id,
                    account.account_uuid,
                    old_key,
                    account.generation,
                    following,
                    skip={slot.id},
                )
                sealing.account_key = following.account_key
                if not await delete_app_slot(conn, user_id, name.strip()):
                    raise AppPasswordNotFound(f"no app password named {name.strip()!r}")
        elif not await delete_app_slot(conn, user_id, name.strip()):
            # Without the user's key the MAC cannot be rewritten; a slot missing from
            # the table is allowed by it (keys/_integrity.py), and the next unlock
            # rewrites it.
            raise AppPasswordNotFound(f"no app password named {name.strip()!r}")
        if account is None:  # a re-key does both itself
            await bump_generation(conn, user_id)  # in every process
            await mark_rekey_pending(conn, user_id)
        await events.record_event(conn, user_id, events.APP_PASSWORD_REVOKED, client_ip, name)
    if account is None:
        log.info("app password of user id %d revoked; re-key pending until its next login", user_id)


async def list_app_passwords(engine: AsyncEngine, user_id: UserId) -> list[AppPasswordInfo]:
    async with engine.connect() as conn:
        return [AppPasswordInfo(n, at) for n, at in await app_slot_names(conn, user_id)]
