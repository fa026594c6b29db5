"""Unlocked accounts shared by a user's live sessions, kept a while after, in memory only.

Argon2 must not run again for every parallel connection of the same user, nor for every
page of a webmail that logs in per request. The first login unlocks; the account then
stays in memory while the user has a live session and for `ttl_s` (`auth.cache_ttl_s`)
after the last one ends. A later login is served from memory when its credential
matches a verifier of an earlier successful login: an HMAC-SHA256 over the user id and
the credential under a random per-process key (the credential itself is never kept),
one per credential (the password and each app password apart, with the slot kind, so
an app password never passes where only the password may).

Before serving from memory, one connection reads the account's credential generation
(cm_accounts.credential_generation, bumped by every password change, recovery,
app-password revocation and key rotation in any process, see `_generation`) and drops
the verifiers when it moved, and checks the slot record and virtual_users.password as
the login saw them (a hash an admin wrote directly must match the fingerprint on the
password slot). A credential that matches no verifier (a wrong password too) goes the
full Argon2 way, as without the cache, so the cache shows in no failure's timing.

Idle accounts expire `ttl_s` after their last release: a timer on the running loop
purges them, and every acquire purges the expired ones first. At most `max_users`
accounts are kept; beyond it the least recently released idle ones go first.

After a password change or recovery in this process, `forget` drops the verifiers of
the address at once. Sessions already open are ended by the `CredentialWatcher` (see
`_watcher`) within seconds; one released with `ended_generation` takes the entry's
verifiers with it, so the account leaves memory with its last session instead of
staying `ttl_s` longer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import AuthConfig, Config, CryptoConfig
from cryptmail.db import UserId, run_transaction
from cryptmail.db import tables as t
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._generation import read_generation_of
from cryptmail.keys._login import unlock_account
from cryptmail.keys._slots import PASSWORD, hash_fingerprint
from cryptmail.metrics import current as current_metrics
from cryptmail.secret import Password, SecretBytes

_DEFAULTS = AuthConfig()


_accounts, _users, _slots = t.cm_accounts, t.virtual_users, t.cm_key_slots
_password_slot = _slots.alias("password_slot")
_STILL_VALID = (
    select(
        _accounts.c.credential_generation,
        _slots.c.record,
        _users.c.password,
        _password_slot.c.hash_fingerprint,
    )
    .select_from(
        _accounts.join(_users, _users.c.id == _accounts.c.user_id)
        .outerjoin(
            _slots,
            and_(_slots.c.user_id == _accounts.c.user_id, _slots.c.id == bindparam("slot_id")),
        )
        .outerjoin(
            _password_slot,
            and_(
                _password_slot.c.user_id == _accounts.c.user_id,
                _password_slot.c.kind == PASSWORD,
            ),
        )
    )
    .where(_accounts.c.user_id == bindparam("user_id"))
)
"""`read_generation` and `slot_still_opens` in one query."""


def _slot_unchanged(found: Any, record: bytes) -> bool:
    # As `slot_still_opens`: the slot still holds the record the login opened, and the
    # SQL hash is the one the password slot was locked alongside.
    if found.record is None or found.hash_fingerprint is None:
        return False
    return hmac.compare_digest(bytes(found.record), record) and hmac.compare_digest(
        bytes(found.hash_fingerprint), hash_fingerprint(str(found.password))
    )


@dataclass
class _Verifier:
    """One credential that unlocked the account: its keyed hash and the slot it opened."""

    digest: SecretBytes
    kind: str
    slot_id: int
    record: bytes = field(repr=False)


@dataclass
class _Entry:
    account: UnlockedAccount
    generation: int | None  # as read before the login that unlocked; None: no keys then
    verifiers: list[_Verifier] = field(default_factory=list, repr=False)
    sessions: int = 0
    idle_since: float = 0.0


def _same_keys(old: UnlockedAccount, new: UnlockedAccount) -> bool:
    # A new password hash alone does not matter: the sessions share the account still.
    return (
        replace(old.user, password_hash=new.user.password_hash) == new.user
        and old.account_key == new.account_key
        and old.active_key.key_id == new.active_key.key_id
        and set(old.private_keys) == set(new.private_keys)
    )


def _generation_of(entry: _Entry) -> int:
    return 0 if entry.generation is None else entry.generation


class UnlockedAccounts:
    """Refcounted unlocked accounts, keyed by lower-cased address, kept `ttl_s` seconds
    after their last session (0: dropped with it)."""

    def __init__(
        self,
        engine: AsyncEngine,
        crypto: CryptoConfig,
        *,
        ttl_s: float = _DEFAULTS.cache_ttl_s,
        max_users: int = _DEFAULTS.cache_max_users,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._crypto = crypto
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._clock = clock
        self._verifier_key = SecretBytes(secrets.token_bytes(32))
        self._entries: dict[str, _Entry] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()  # by release time, oldest first
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}  # acquire calls in progress, per address
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_config(cls, engine: AsyncEngine, config: Config) -> UnlockedAccounts:
        return cls(
            engine,
            config.crypto,
            ttl_s=config.auth.cache_ttl_s,
            max_users=config.auth.cache_max_users,
        )

    def _digest(self, user_id: UserId, credential: Password) -> bytes:
        message = str(user_id).encode() + b"\x00" + credential.reveal()
        return hmac.new(self._verifier_key.reveal(), message, hashlib.sha256).digest()

    def _match(
        self, entry: _Entry, credential: Password, allow_app_password: bool
    ) -> _Verifier | None:
        digest = self._digest(entry.account.user.id, credential)
        found = None
        for verifier in entry.verifiers:
            if hmac.compare_digest(verifier.digest.reveal(), digest) and (
                allow_app_password or verifier.kind == PASSWORD
            ):
                found = verifier
        return found

    async def _still_valid(self, entry: _Entry, verifier: _Verifier) -> bool:
        user_id = entry.account.user.id
        params = {"user_id": user_id, "slot_id": verifier.slot_id}
        # One statement built once, in one read transaction (on SQLite one worker call):
        # the two async queries it replaces took about 1 ms of a 1.6 ms cache hit.
        found = await run_transaction(
            self._engine, lambda conn: conn.execute(_STILL_VALID, params).first(), writes=False
        )
        generation = None if found is None else int(found.credential_generation)
        if generation != entry.generation:
            entry.verifiers.clear()
            return False
        if found is not None and _slot_unchanged(found, verifier.record):
            return True
        entry.verifiers.remove(verifier)
        return False

    async def acquire(
        self,
        address: str,
        credential: Password,
        *,
        client_ip: str = "",
        allow_app_password: bool = True,
    ) -> UnlockedAccount:
        """Log in and hold the account for one session; call `release` when it ends.

        Raises AuthenticationFailed.
        """
        account, _generation = await self.acquire_with_generation(
            address, credential, client_ip=client_ip, allow_app_password=allow_app_password
        )
        return account

    async def acquire_with_generation(
        self,
        address: str,
        credential: Password,
        *,
        client_ip: str = "",
        allow_app_password: bool = True,
    ) -> tuple[UnlockedAccount, int]:
        """`acquire`, and the credential generation the login was checked at: read
        before the credential check, so a change committed while it ran shows as a
        moved generation to the session's `CredentialWatcher`. Raises AuthenticationFailed.
        """
        self.purge()
        key = address.strip().lower()
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                return await self._acquire_locked(key, credential, client_ip, allow_app_password)
        finally:
            # Failed logins for made-up addresses must not leave a lock behind each.
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                if key not in self._entries:
                    self._locks.pop(key, None)

    async def _acquire_locked(
        self, key: str, credential: Password, client_ip: str, allow_app_password: bool
    ) -> tuple[UnlockedAccount, int]:
        entry = self._entries.get(key)
        if entry is not None:
            verifier = self._match(entry, credential, allow_app_password)
            if verifier is not None and await self._still_valid(entry, verifier):
                current_metrics().key_cache(hit=True)
                return self._hold(key, entry), _generation_of(entry)
        current_metrics().key_cache(hit=False)
        # Read before the unlock: a change committed meanwhile then shows at the next hit.
        async with self._engine.connect() as conn:
            generation = await read_generation_of(conn, key)
        account, slot = await unlock_account(
            self._engine,
            key,
            credential,
            self._crypto,
            client_ip=client_ip,
            allow_app_password=allow_app_password,
        )
        if account.credential_generation is not None:
            generation = account.credential_generation  # this login re-keyed
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(account, generation)
        elif not _same_keys(entry.account, account):
            entry.account = account  # a rotated key; open sessions keep what they hold
        if entry.generation != generation:
            entry.verifiers.clear()
            entry.generation = generation
        if generation is not None:
            entry.verifiers = [v for v in entry.verifiers if v.slot_id != slot.id]
            digest = SecretBytes(self._digest(account.user.id, credential))
            entry.verifiers.append(_Verifier(digest, slot.kind, slot.id, slot.record))
        held = self._hold(key, entry)
        self._evict()
        # Keys made by this very login (none before) start at generation 0.
        return held, 0 if generation is None else generation

    def _hold(self, key: str, entry: _Entry) -> UnlockedAccount:
        entry.sessions += 1
        self._idle.pop(key, None)
        self._entries[key] = entry  # a purge may have dropped it while we checked
        return entry.account

    def release(self, account: UnlockedAccount, *, ended_generation: int | None = None) -> None:
        """One session of `account` ended. `ended_generation`: it was ended because the
        credentials of that generation changed; unless a later login refreshed the
        entry, its verifiers go, and the account leaves memory with its last session."""
        key = account.user.email.strip().lower()
        entry = self._entries.get(key)
        if entry is None or entry.sessions <= 0:
            return
        if ended_generation is not None and _generation_of(entry) == ended_generation:
            entry.verifiers.clear()
        entry.sessions -= 1
        if entry.sessions > 0:
            return
        if self.ttl_s <= 0 or (ended_generation is not None and not entry.verifiers):
            self._drop(key)
            return
        entry.idle_since = self._clock()
        self._idle[key] = None
        self._idle.move_to_end(key)
        self._evict()
        self._schedule()

    def forget(self, address: str) -> None:
        """Drop cached credentials of `address` (after a password change in-process)."""
        key = address.strip().lower()
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.verifiers.clear()
        if entry.sessions <= 0:
            self._drop(key)

    def purge(self) -> int:
        """Drop the idle accounts whose time is up; how many."""
        now = self._clock()
        dropped = 0
        while self._idle:
            key = next(iter(self._idle))
            if now - self._entries[key].idle_since < self.ttl_s:
                break
            self._drop(key)
            dropped += 1
        return dropped

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._idle.pop(key, None)
        if key not in self._waiting:
            self._locks.pop(key, None)

    def _evict(self) -> None:
        while len(self._entries) > self.max_users and self._idle:
            self._drop(next(iter(self._idle)))

    def _schedule(self) -> None:
        # One timer for the oldest idle account; it re-arms for the next one.
        if self._timer is not None or not self._idle:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the next acquire purges
        oldest = self._entries[next(iter(self._idle))]
        delay = max(0.0, oldest.idle_since + self.ttl_s - self._clock())
        self._timer = loop.call_later(delay + 0.05, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.purge()
        self._schedule()

    @property
    def live_accounts(self) -> int:
        """Accounts held by at least one session."""
        return sum(1 for entry in self._entries.values() if entry.sessions > 0)

    @property
    def cached_accounts(self) -> int:
        """Accounts in memory: held by a session or idle within their time."""
        return len(self._entries)
