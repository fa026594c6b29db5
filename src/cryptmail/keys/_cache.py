"""Unlocked accounts shared by a user's live sessions, in memory only.

Argon2 must not run again for every parallel connection of the same user. The first
login unlocks; later logins with the same credential are checked against a keyed hash
held in memory (HMAC under a per-process random key) and against the slot record in
the database (so a password change or a revoked app password elsewhere takes effect at
once) and against virtual_users.password (a hash an admin wrote directly must match the
fingerprint on the password slot, or the login goes the full way and the new hash
decides), then share the account. The entry is dropped when its last session ends.

After a password change or recovery, `forget` drops the cached credentials, so only the
new password logs in; sessions already open keep their unlocked key until they end
(the key itself did not change, only the slots locking it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import CryptoConfig
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._login import unlock_account
from cryptmail.keys._slots import slot_still_opens
from cryptmail.secret import Password


@dataclass
class _Entry:
    account: UnlockedAccount
    # credential tag -> (slot id, slot record) that it opened
    credentials: dict[bytes, tuple[int, bytes]] = field(default_factory=dict, repr=False)
    sessions: int = 0


class UnlockedAccounts:
    """Refcounted unlocked accounts, keyed by lower-cased address."""

    def __init__(self, engine: AsyncEngine, crypto: CryptoConfig) -> None:
        self._engine = engine
        self._crypto = crypto
        self._tag_key = os.urandom(32)
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}  # acquire calls in progress, per address

    def _tag(self, address: str, credential: Password) -> bytes:
        return hmac.new(
            self._tag_key, address.encode() + b"\x00" + credential.reveal(), hashlib.sha256
        ).digest()

    async def _slot_unchanged(self, user_id: int, slot_id: int, record: bytes) -> bool:
        async with self._engine.connect() as conn:
            return await slot_still_opens(conn, user_id, slot_id, record)

    async def acquire(
        self, address: str, credential: Password, *, client_ip: str = ""
    ) -> UnlockedAccount:
        """Log in and hold the account for one session; call `release` when it ends.

        Raises AuthenticationFailed.
        """
        key = address.strip().lower()
        tag = self._tag(key, credential)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            return await self._acquire_locked(lock, key, tag, credential, client_ip)
        finally:
            # Failed logins for made-up addresses must not leave a lock behind each.
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                if key not in self._entries:
                    self._locks.pop(key, None)

    async def _acquire_locked(
        self, lock: asyncio.Lock, key: str, tag: bytes, credential: Password, client_ip: str
    ) -> UnlockedAccount:
        async with lock:
            entry = self._entries.get(key)
            if entry is not None and tag in entry.credentials:
                slot_id, record = entry.credentials[tag]
                if await self._slot_unchanged(entry.account.user.id, slot_id, record):
                    entry.sessions += 1
                    return entry.account
                del entry.credentials[tag]
            account, slot = await unlock_account(
                self._engine, key, credential, self._crypto, client_ip=client_ip
            )
            if entry is None:
                entry = _Entry(account)
                self._entries[key] = entry
            entry.credentials[tag] = (slot.id, slot.record)
            entry.sessions += 1
            return entry.account

    def release(self, account: UnlockedAccount) -> None:
        key = account.user.email.lower()
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.sessions -= 1
        if entry.sessions <= 0:
            del self._entries[key]
            if key not in self._waiting:
                self._locks.pop(key, None)

    def forget(self, address: str) -> None:
        """Drop cached credentials of `address` (after a password change in-process)."""
        entry = self._entries.get(address.strip().lower())
        if entry is not None:
            entry.credentials.clear()

    @property
    def live_accounts(self) -> int:
        return len(self._entries)
