"""Imports staged for a user's first login: the `cm_staged_imports` rows.

`import maildir --at-first-login` stages a Dovecot Maildir whose mail-crypt keys are
locked by the user's login password: the admin never knows it, so nothing can be
decrypted before the user logs in. Staging decrypts nothing and copies nothing (the
Dovecot files stay where they are: a copy would put folder names and keyword files into
the data directory); it counts the messages and reserves the INBOX's UIDs (see
`reserve_uids`), so mail delivered before and during the import never takes a UID the
import needs. Where the Maildir is is sealed under the server key (docs/security.md,
"Staged imports"); the state, counts and times are plain.

States: `sealing` (plain or global-key mail being sealed by the admin's command, see
`_sealed_import`), `staged` (waiting for a login), `running` (a process holds it and beats its
heartbeat), `done`, `failed`. A `running` row whose heartbeat is older than the stale
limit belongs to a process that died (kill -9, power cut): the next login claims it
again, and the import journal makes the rerun skip what is in already.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.db import UserId, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import CryptoError, StoreError
from cryptmail.keys import server_key
from cryptmail.store._import import reserve_uids
from cryptmail.store._mailboxes import create_default_mailboxes, mailbox_by_id
from cryptmail.store._maildir import scan_maildir

log = logging.getLogger(__name__)

SEALING: Final = "sealing"
STAGED: Final = "staged"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
_OPEN: Final = (STAGED, RUNNING)

_staged = t.cm_staged_imports


@dataclass(frozen=True)
class StagedSource:
    """Where the staged Maildir is: its root (the INBOX) and its dovecot-attributes; or,
    for mail sealed already (`_sealed_import`), the blob id (hex) of its manifest."""

    root: Path
    attributes: Path | None
    manifest: str | None = None


@dataclass(frozen=True)
class StagedImport:
    """One row, as `import status` shows it: no path, no folder name."""

    id: int
    user_id: UserId
    state: str
    done_messages: int
    total_messages: int
    error: str | None
    created_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class ClaimedImport:
    """A row this process now runs, with its source opened."""

    id: int
    total_messages: int
    source: StagedSource


def _context(user_id: UserId) -> bytes:
    return b"staged-import|%d" % user_id


def seal_source(user_id: UserId, source: StagedSource) -> bytes:
    """The source sealed under the server key's staged-import subkey."""
    value = {
        "root": str(source.root),
        "attributes": None if source.attributes is None else str(source.attributes),
        "manifest": source.manifest,
    }
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return server_key().staged_import_cipher().seal(data, _context(user_id))


def open_source(user_id: UserId, sealed: bytes) -> StagedSource:
    """The source of a staged import. Raises StoreError for a row that does not open
    (another server key, moved from another user's row, changed)."""
    try:
        data = server_key().staged_import_cipher().open(sealed, _context(user_id))
        value = json.loads(data.decode("utf-8", "surrogateescape"))
    except (CryptoError, ValueError) as exc:
        raise StoreError(
            f"the staged import of user id {user_id} does not open under this server key: "
            "it was changed, moved from another user, or staged with another server_key_file; "
            "stage it again"
        ) from exc
    attributes = value.get("attributes")
    return StagedSource(
        Path(value["root"]),
        None if attributes is None else Path(attributes),
        value.get("manifest"),
    )


def _row(row: object) -> StagedImport:
    return StagedImport(
        id=int(row.id),  # type: ignore[attr-defined]
        user_id=UserId(int(row.user_id)),  # type: ignore[attr-defined]
        state=str(row.state),  # type: ignore[attr-defined]
        done_messages=int(row.done_messages),  # type: ignore[attr-defined]
        total_messages=int(row.total_messages),  # type: ignore[attr-defined]
        error=row.error,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        heartbeat_at=row.heartbeat_at,  # type: ignore[attr-defined]
    )


async def stage_import(engine: AsyncEngine, user_id: UserId, source: StagedSource) -> StagedImport:
    """Stage the Maildir at `source.root` for the user's next login.

    Reads the folder tree and the uidlists (no message is opened), reserves the INBOX's
    UIDs and records the row. Raises StoreError (an import of this user is staged or
    running already), DovecotFormatError (a broken uidlist or folder name), OSError.
    """
    folders = await run_blocking(scan_maildir, source.root)
    total = sum(len(f.messages) for f in folders)
    inbox_folder = next((f for f in folders if f.name == "INBOX"), None)
    inbox_id = await create_default_mailboxes(engine, user_id)
    sealed = seal_source(user_id, source)
    now = utcnow()
    async with engine.begin() as conn:
        await refuse_second(conn, user_id)
        if inbox_folder is not None and inbox_folder.uidlist is not None:
            inbox = await mailbox_by_id(conn, None, inbox_id)
            await reserve_uids(conn, inbox, inbox_folder.uidlist)
        result = await conn.execute(
            _staged.insert().values(
                user_id=user_id,
                state=STAGED,
                source_sealed=sealed,
                done_messages=0,
                total_messages=total,
                created_at=now,
                heartbeat_at=now,
            )
        )
        job_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    log.info("import #%d of user id %d staged: %d messages", job_id, user_id, total)
    return StagedImport(job_id, user_id, STAGED, 0, total, None, now, now)


async def refuse_second(conn: AsyncConnection, user_id: UserId) -> None:
    """StoreError if an import of the user is staged, running or being sealed."""
    found = (
        await conn.execute(
            select(_staged.c.id).where(
                _staged.c.user_id == user_id, _staged.c.state.in_((*_OPEN, SEALING))
            )
        )
    ).first()
    if found is not None:
        raise StoreError(
            f"an import of user id {user_id} is staged or running already "
            f"(#{found.id}); see `cryptmail import status`"
        )


async def list_staged(engine: AsyncEngine, user_id: UserId | None = None) -> list[StagedImport]:
    """Every staged import (of one user, if given), oldest first."""
    query = select(_staged).order_by(_staged.c.id)
    if user_id is not None:
        query = query.where(_staged.c.user_id == user_id)
    async with engine.connect() as conn:
        return [_row(r) for r in await conn.execute(query)]


async def open_staged(engine: AsyncEngine, user_id: UserId) -> list[StagedImport]:
    """The user's imports that are staged or running."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(_staged).where(_staged.c.user_id == user_id, _staged.c.state.in_(_OPEN))
        )
        return [_row(r) for r in rows]


async def claim_staged(
    engine: AsyncEngine, rows: list[StagedImport], stale_after: timedelta
) -> list[ClaimedImport]:
    """Mark `rows` (as `open_staged` read them) as running here: the staged ones, and
    the running ones whose heartbeat is older than `stale_after` (their process died);
    the ones this call won.

    Each row changes only if it is still as read, so of several logins at once (in this
    process or on other nodes) exactly one claims it."""
    now = utcnow()
    claimed: list[ClaimedImport] = []
    for row in rows:
        if row.state == RUNNING and row.heartbeat_at > now - stale_after:
            continue  # alive elsewhere
        async with engine.begin() as conn:
            won = await conn.execute(
                update(_staged)
                .where(
                    _staged.c.id == row.id,
                    _staged.c.state == row.state,
                    _staged.c.heartbeat_at == row.heartbeat_at,
                )
                .values(state=RUNNING, heartbeat_at=now)
            )
            sealed = (
                await conn.execute(select(_staged.c.source_sealed).where(_staged.c.id == row.id))
            ).scalar_one()
        if won.rowcount != 1:
            continue
        try:
            source = open_source(row.user_id, bytes(sealed))
        except StoreError as exc:
            await finish_staged(engine, row.id, FAILED, str(exc))
            log.error("import #%d of user id %d: %s", row.id, row.user_id, exc)
            continue
        if row.state == RUNNING:
            log.info("import #%d of user id %d: its process died; resuming it", row.id, row.user_id)
        claimed.append(ClaimedImport(row.id, row.total_messages, source))
    return claimed


async def beat_staged(engine: AsyncEngine, job_id: int, done_messages: int) -> None:
    """The running import is alive and this far."""
    async with engine.begin() as conn:
        await conn.execute(
            update(_staged)
            .where(_staged.c.id == job_id, _staged.c.state == RUNNING)
            .values(heartbeat_at=utcnow(), done_messages=done_messages)
        )


async def finish_staged(
    engine: AsyncEngine,
    job_id: int,
    state: str,
    error: str | None = None,
    *,
    done_messages: int | None = None,
) -> None:
    """Set the import's end state: `done`, `failed` (with a message that names no folder
    and no path), or back to `staged` (the login's password did not unlock the Dovecot
    keys, or the server stopped: the next login tries again)."""
    values: dict[str, object] = {"state": state, "heartbeat_at": utcnow(), "error": error}
    if error is not None:
        values["error"] = error[:200]
    if done_messages is not None:
        values["done_messages"] = done_messages
    async with engine.begin() as conn:
        await conn.execute(update(_staged).where(_staged.c.id == job_id).values(**values))
