"""Users' Sieve scripts: one sealed row each in cm_sieve_scripts, at most one active.

Delivery runs the active script of a recipient with no user secret at hand, so scripts
cannot be sealed under the user's data key. They are sealed fields under a subkey of the
server key (`ServerKey.sieve_script_key`, kept in a file outside the database), so a
database dump alone reveals no name and no word of a script; a dump shows how many
scripts a user has, their sizes, which one is active and when each was written
(docs/security.md, "Sieve scripts").

    name_lookup = HMAC(lookup key, "sieve-script" ctx(user id) || 0 || name)
    name_sealed = seal(name, ctx("cm_sieve_scripts.name_sealed", user id, name_lookup))
    body_sealed = seal(text, ctx("cm_sieve_scripts.body_sealed", user id, name_lookup))

Both sealed values are bound to the user and the name's lookup, and an opened name must
hash to the row's lookup: a name or text moved to another row or user fails to open.
A rename seals both again under the new lookup.

Every change is one transaction: a client that disconnects, or a server killed, in the
middle of PUTSCRIPT leaves the old script as it was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.crypto import FieldCipher, context
from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import (
    DatabaseConflict,
    DecryptionFailed,
    ObjectTampered,
    ScriptActive,
    ScriptExists,
    ScriptNameInvalid,
    ScriptNotFound,
    ScriptQuotaExceeded,
)
from cryptmail.keys import server_key

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_NAME_CHARS: Final = 128
"""Longest script name, in characters (Dovecot allows 256 bytes of file name)."""

_s = t.cm_sieve_scripts


@dataclass(frozen=True)
class ScriptLimits:
    """What one user may store: the largest script, in bytes, and how many scripts."""

    max_script_size: int = 262144
    max_scripts: int = 100

    @classmethod
    def from_config(cls, config: Config) -> ScriptLimits:
        """`sieve.max_script_size` (the one limit delivery's compiler has too) and
        `managesieve.max_scripts`."""
        return cls(
            max_script_size=config.sieve.max_script_size,
            max_scripts=config.managesieve.max_scripts,
        )


@dataclass(frozen=True)
class ScriptInfo:
    """One script as LISTSCRIPTS shows it (no text)."""

    name: str
    active: bool
    size: int
    modified_at: datetime


def check_name(name: str) -> str:
    """The name in Unicode NFC (RFC 5804 1.6); ScriptNameInvalid for one that is empty,
    longer than MAX_NAME_CHARS or holds a control character (RFC 5804 1.6 forbids
    0x00-0x1F, 0x7F-0x9F, U+2028 and U+2029)."""
    name = unicodedata.normalize("NFC", name)
    if not name:
        raise ScriptNameInvalid("a script name may not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise ScriptNameInvalid(f"a script name is at most {MAX_NAME_CHARS} characters")
    for char in name:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or char in "\u2028\u2029":
            raise ScriptNameInvalid("a script name may not hold control characters")
    return name


def _cipher() -> FieldCipher:
    # Built per call: cheap (two HKDFs), and it keeps no key in a module global.
    return FieldCipher(server_key().sieve_script_key())


def _lookup(cipher: FieldCipher, user_id: UserId, name: str) -> bytes:
    return cipher.lookup(name.encode("utf-8"), context("sieve-script", user_id))


def _name_context(user_id: UserId, lookup: bytes) -> bytes:
    return context("cm_sieve_scripts.name_sealed", user_id, lookup)


def _body_context(user_id: UserId, lookup: bytes) -> bytes:
    return context("cm_sieve_scripts.body_sealed", user_id, lookup)


def _open_name(
    cipher: FieldCipher, user_id: UserId, row_id: int, sealed: bytes, lookup: bytes
) -> str:
    try:
        data = cipher.open(sealed, _name_context(user_id, lookup))
        name = data.decode("utf-8")
    except (DecryptionFailed, UnicodeDecodeError):
        name = None
    if name is None or not hmac.compare_digest(_lookup(cipher, user_id, name), lookup):
        raise ObjectTampered(
            f"Sieve script row {row_id} of user id {user_id} failed authentication: it was "
            "changed or moved in the database, or the server key file is not the one that "
            "sealed it; restore the row or the key file from the backup"
        )
    return name


def _open_body(
    cipher: FieldCipher, user_id: UserId, row_id: int, sealed: bytes, lookup: bytes
) -> str:
    try:
        return cipher.open(sealed, _body_context(user_id, lookup)).decode("utf-8")
    except (DecryptionFailed, UnicodeDecodeError):
        raise ObjectTampered(
            f"Sieve script row {row_id} of user id {user_id} failed authentication: its text "
            "was changed or moved in the database, or the server key file is not the one "
            "that sealed it; restore the row or the key file from the backup"
        ) from None


async def _run(engine: AsyncEngine, work: Callable[[Connection], T], *, writes: bool = True) -> T:
    # Every body here only reads, seals and writes rows: safe to run again.
    return await run_transaction(engine, work, writes=writes, retry=True)


def _lock_user(conn: Connection, user_id: UserId) -> None:
    """Take the user's row, first in every transaction that decides on the user's
    scripts as a whole (the count, which one is active): parallel ManageSieve writes
    of one user queue here, and what they read next includes every one committed
    before (on MariaDB the snapshot starts after this lock). Without it, on MariaDB
    and PostgreSQL eight parallel PUTSCRIPTs all fitted under a limit of 3, and on
    PostgreSQL eight parallel SETACTIVEs left seven scripts active. NO KEY UPDATE on
    PostgreSQL: inserts that only reference the user go on."""
    users = t.virtual_users
    conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update(key_share=True))


def _row(conn: Connection, user_id: UserId, lookup: bytes) -> tuple[int, bool] | None:
    found = conn.execute(
        select(_s.c.id, _s.c.active).where(_s.c.user_id == user_id, _s.c.name_lookup == lookup)
    ).first()
    return None if found is None else (int(found.id), bool(found.active))


def _space_left(
    conn: Connection, user_id: UserId, lookup: bytes, size: int, limits: ScriptLimits
) -> None:
    if size > limits.max_script_size:
        raise ScriptQuotaExceeded(
            f"a Sieve script is at most {limits.max_script_size} bytes (this one: {size})",
            limit="MAXSIZE",
        )
    if _row(conn, user_id, lookup) is not None:
        return  # a replacement: the count stays
    count = conn.execute(select(func.count()).where(_s.c.user_id == user_id)).scalar_one()
    if count >= limits.max_scripts:
        raise ScriptQuotaExceeded(
            f"a user keeps at most {limits.max_scripts} Sieve scripts; delete one first",
            limit="MAXSCRIPTS",
        )


async def list_scripts(engine: AsyncEngine, user_id: UserId) -> list[ScriptInfo]:
    """Every script of the user, by name. Raises ObjectTampered for a row that does not
    open, StoreUnavailable when the database does not answer."""
    cipher = _cipher()

    def work(conn: Connection) -> list[ScriptInfo]:
        columns = (_s.c.id, _s.c.name_lookup, _s.c.name_sealed, _s.c.active, _s.c.size)
        rows = conn.execute(select(*columns, _s.c.modified_at).where(_s.c.user_id == user_id)).all()
        return [
            ScriptInfo(
                _open_name(cipher, user_id, r.id, bytes(r.name_sealed), bytes(r.name_lookup)),
                bool(r.active),
                int(r.size),
                r.modified_at,
            )
            for r in rows
        ]

    return sorted(await _run(engine, work, writes=False), key=lambda s: s.name)


async def get_script(engine: AsyncEngine, user_id: UserId, name: str) -> str:
    """The text of the script `name`. Raises ScriptNotFound, ScriptNameInvalid,
    ObjectTampered, StoreUnavailable."""
    cipher = _cipher()
    name = check_name(name)
    lookup = _lookup(cipher, user_id, name)

    def work(conn: Connection) -> str:
        row = conn.execute(
            select(_s.c.id, _s.c.body_sealed).where(
                _s.c.user_id == user_id, _s.c.name_lookup == lookup
            )
        ).first()
        if row is None:
            raise ScriptNotFound(f"user id {user_id} has no Sieve script of that name")
        return _open_body(cipher, user_id, row.id, bytes(row.body_sealed), lookup)

    return await _run(engine, work, writes=False)


async def have_space(
    engine: AsyncEngine, user_id: UserId, name: str, size: int, limits: ScriptLimits
) -> None:
    """Whether a script `name` of `size` bytes would fit (RFC 5804 HAVESPACE): returns,
    or raises ScriptQuotaExceeded (`limit` says which), ScriptNameInvalid."""
    cipher = _cipher()
    lookup = _lookup(cipher, user_id, check_name(name))
    await _run(engine, lambda conn: _space_left(conn, user_id, lookup, size, limits), writes=False)


async def put_script(
    engine: AsyncEngine, user_id: UserId, name: str, text: str, limits: ScriptLimits
) -> None:
    """Store `text` as the script `name`, replacing one of that name (its active flag
    stays). One transaction: the old text stays until the new one is committed.
    Raises ScriptQuotaExceeded, ScriptNameInvalid, StoreUnavailable. The caller checks
    the syntax first."""
    cipher = _cipher()
    name = check_name(name)
    lookup = _lookup(cipher, user_id, name)
    data = text.encode("utf-8")
    size = len(data)

    def work(conn: Connection) -> None:
        _lock_user(conn, user_id)
        _space_left(conn, user_id, lookup, size, limits)
        # Sealed here, in the transaction's worker thread on SQLite: a 1 MiB script
        # takes a millisecond of AES-GCM that the event loop need not spend.
        body_sealed = cipher.seal(data, _body_context(user_id, lookup))
        now = utcnow()
        found = _row(conn, user_id, lookup)
        if found is not None:
            conn.execute(
                update(_s)
                .where(_s.c.id == found[0])
                .values(body_sealed=body_sealed, size=size, modified_at=now)
            )
            return
        conn.execute(
            _s.insert().values(
                user_id=user_id,
                name_lookup=lookup,
                name_sealed=cipher.seal(name.encode("utf-8"), _name_context(user_id, lookup)),
                body_sealed=body_sealed,
                active=False,
                size=size,
                modified_at=now,
            )
        )

    try:
        await _run(engine, work)
    except DatabaseConflict:
        # Another session made the same name between our look and our insert (not on
        # SQLite, whose writers queue): it exists now, so this one replaces it.
        await _run(engine, work)


async def set_active(engine: AsyncEngine, user_id: UserId, name: str) -> None:
    """Make `name` the user's one active script; "" leaves none active (RFC 5804
    SETACTIVE). Raises ScriptNotFound, ScriptNameInvalid, StoreUnavailable."""
    cipher = _cipher()
    lookup = None if name == "" else _lookup(cipher, user_id, check_name(name))

    def work(conn: Connection) -> None:
        _lock_user(conn, user_id)
        target = None
        if lookup is not None:
            found = _row(conn, user_id, lookup)
            if found is None:
                raise ScriptNotFound(f"user id {user_id} has no Sieve script of that name")
            target = found[0]
        others = update(_s).where(_s.c.user_id == user_id, _s.c.active.is_(True))
        if target is not None:
            others = others.where(_s.c.id != target)
        conn.execute(others.values(active=False))
        if target is not None:
            conn.execute(update(_s).where(_s.c.id == target).values(active=True))

    await _run(engine, work)


async def delete_script(engine: AsyncEngine, user_id: UserId, name: str) -> None:
    """Delete the script `name`. Raises ScriptNotFound, ScriptActive (deactivate it
    first, RFC 5804 2.10), ScriptNameInvalid, StoreUnavailable."""
    cipher = _cipher()
    lookup = _lookup(cipher, user_id, check_name(name))

    def work(conn: Connection) -> None:
        _lock_user(conn, user_id)  # no SETACTIVE of it commits between check and delete
        found = _row(conn, user_id, lookup)
        if found is None:
            raise ScriptNotFound(f"user id {user_id} has no Sieve script of that name")
        if found[1]:
            raise ScriptActive("the active Sieve script cannot be deleted; deactivate it first")
        conn.execute(delete(_s).where(_s.c.id == found[0]))

    await _run(engine, work)


async def rename_script(engine: AsyncEngine, user_id: UserId, old: str, new: str) -> None:
    """Rename the script `old` to `new`, keeping its text and active flag. Raises
    ScriptNotFound, ScriptExists, ScriptNameInvalid, ObjectTampered, StoreUnavailable."""
    cipher = _cipher()
    old_lookup = _lookup(cipher, user_id, check_name(old))
    new = check_name(new)
    new_lookup = _lookup(cipher, user_id, new)

    def work(conn: Connection) -> None:
        row = conn.execute(
            select(_s.c.id, _s.c.body_sealed).where(
                _s.c.user_id == user_id, _s.c.name_lookup == old_lookup
            )
        ).first()
        if row is None:
            raise ScriptNotFound(f"user id {user_id} has no Sieve script of that name")
        if new_lookup == old_lookup:
            return
        if _row(conn, user_id, new_lookup) is not None:
            raise ScriptExists(f"user id {user_id} has a Sieve script of the new name already")
        body = _open_body(cipher, user_id, row.id, bytes(row.body_sealed), old_lookup)
        conn.execute(
            update(_s)
            .where(_s.c.id == row.id)
            .values(
                name_lookup=new_lookup,
                name_sealed=cipher.seal(new.encode("utf-8"), _name_context(user_id, new_lookup)),
                body_sealed=cipher.seal(body.encode("utf-8"), _body_context(user_id, new_lookup)),
                modified_at=utcnow(),
            )
        )

    try:
        await _run(engine, work)
    except DatabaseConflict:
        raise ScriptExists(
            f"user id {user_id} has a Sieve script of the new name already"
        ) from None


@dataclass(frozen=True, repr=False)
class ActiveScript:
    """The user's active script as its row holds it, still sealed (delivery's read).

    `digest` names this version of the row without opening it: every write seals the
    text again under a fresh nonce, so a changed, replaced or renamed script (or another
    script made active) has another digest. Delivery keeps the compiled tree of a digest
    in memory and opens the row only for a digest it has not compiled yet.
    """

    user_id: UserId
    row_id: int
    name_lookup: bytes
    body_sealed: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(
            b"%d\0%d\0" % (self.user_id, self.row_id) + self.name_lookup + self.body_sealed
        ).digest()

    def open(self) -> str:
        """The text; ObjectTampered for a row that does not open."""
        return _open_body(_cipher(), self.user_id, self.row_id, self.body_sealed, self.name_lookup)


# Built once: LMTP runs it for every recipient, and building it cost more than running it.
_ACTIVE: Final = (
    select(_s.c.id, _s.c.name_lookup, _s.c.body_sealed)
    .where(_s.c.user_id == bindparam("user_id"), _s.c.active.is_(True))
    .order_by(_s.c.id)
)


def read_active_sync(conn: Connection, user_id: UserId) -> ActiveScript | None:
    """The user's active script row, sealed; None if none is active. One SELECT, for a
    caller's transaction (delivery reads it with the recipient, at RCPT)."""
    rows = conn.execute(_ACTIVE, {"user_id": user_id}).all()
    if not rows:
        return None
    if len(rows) > 1:
        # Only a write outside cryptmail makes two: run the oldest, as before it.
        log.warning(
            "user id %d has %d active Sieve scripts; running row %d",
            user_id,
            len(rows),
            rows[0].id,
        )
    row = rows[0]
    return ActiveScript(user_id, int(row.id), bytes(row.name_lookup), bytes(row.body_sealed))


async def read_active_script(engine: AsyncEngine, user_id: UserId) -> ActiveScript | None:
    """`read_active_sync` in a read transaction of its own. StoreUnavailable when the
    database does not answer."""
    return await _run(engine, lambda conn: read_active_sync(conn, user_id), writes=False)


async def load_active_script(engine: AsyncEngine, user_id: UserId) -> str | None:
    """The text of the user's active script, None if none is active. Raises
    ObjectTampered for a row that does not open, StoreUnavailable when the database
    does not answer."""
    active = await read_active_script(engine, user_id)
    return None if active is None else active.open()
