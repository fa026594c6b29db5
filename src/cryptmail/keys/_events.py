"""Security events a user sees on the web page: password changed, code used, app
password added or revoked, failed sign-ins; with time and client address.

The detail (client address, app password name) is sealed to the user's active public
key, so a failed sign-in can be recorded without the unlocked key, and a stolen
database shows only event kinds and times. A detail is bound to its row (column and
event id): moved to another event, it fails to open. Details written before that
binding are bound to the user only and still open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.crypto import context, open_box, seal_box
from cryptmail.db import UserId, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import DecryptionFailed
from cryptmail.keys._account import UnlockedAccount
from cryptmail.keys._keyring import active_public_key

PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name, not a secret
RECOVERY_USED = "recovery_used"
RECOVERY_RENEWED = "recovery_renewed"
APP_PASSWORD_ADDED = "app_password_added"  # noqa: S105 - an event name
APP_PASSWORD_REVOKED = "app_password_revoked"  # noqa: S105 - an event name
# Failed attempts, each named for what was tried (a wrong password at a login, whichever
# protocol; a wrong recovery code; a wrong current password at a password change).
SIGN_IN_FAILED = "sign_in_failed"
RECOVERY_FAILED = "recovery_failed"
PASSWORD_CHANGE_FAILED = "password_change_failed"  # noqa: S105 - an event name
KEY_CREATED = "key_created"
KEY_ROTATED = "key_rotated"
# The account's key rows, or its `crypt`, were changed in the database outside cryptmail
# (keys/_integrity.py). Recorded without a sealed detail: the public key it would be
# sealed to is the one in doubt.
KEY_ROWS_CHANGED = "key_rows_changed"
CRYPT_CHANGED = "crypt_changed"

KEEP_EVENTS = 500


@dataclass(frozen=True)
class Event:
    at: datetime
    event: str
    client_ip: str
    name: str


def _legacy_context(user_id: UserId) -> bytes:
    """The context of details sealed before they were bound to their row."""
    return b"key-event|" + str(user_id).encode()


def _context(event_id: int) -> bytes:
    return context("cm_key_events.detail_sealed", event_id)


async def record_event(
    conn: AsyncConnection, user_id: UserId, event: str, client_ip: str = "", name: str = ""
) -> None:
    public = await active_public_key(conn, user_id)
    result = await conn.execute(
        t.cm_key_events.insert().values(user_id=user_id, at=utcnow(), event=event)
    )
    if public is None:
        return
    # The detail is bound to the event id, known only now: sealed in the same
    # transaction, so nobody sees the row without it.
    event_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    payload = json.dumps({"ip": client_ip, "name": name}).encode()
    detail = public.key_id + seal_box(payload, public, _context(event_id))
    await conn.execute(
        update(t.cm_key_events).where(t.cm_key_events.c.id == event_id).values(detail_sealed=detail)
    )


async def record_plain_event(
    conn: AsyncConnection,
    user_id: UserId,
    event: str,
    client_ip: str = "",
    *,
    once: bool = False,
) -> None:
    """Record `event` without a sealed detail (`client_ip` goes only to the log, by the
    caller). With `once`, not if the user's newest event is already this one."""
    del client_ip  # no key to seal it to that is not in doubt
    if once:
        newest = (
            await conn.execute(
                select(t.cm_key_events.c.event)
                .where(t.cm_key_events.c.user_id == user_id)
                .order_by(t.cm_key_events.c.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if newest == event:
            return
    await conn.execute(
        t.cm_key_events.insert().values(
            user_id=user_id, at=utcnow(), event=event, detail_sealed=None
        )
    )


async def list_events(
    conn: AsyncConnection, account: UnlockedAccount, limit: int = 100
) -> list[Event]:
    rows = await conn.execute(
        select(t.cm_key_events)
        .where(t.cm_key_events.c.user_id == account.user.id)
        .order_by(t.cm_key_events.c.at.desc(), t.cm_key_events.c.id.desc())
        .limit(limit)
    )
    events: list[Event] = []
    for row in rows:
        ip = name = ""
        if row.detail_sealed:
            sealed = bytes(row.detail_sealed)
            try:
                private = account.private_key(sealed[:32])
                opened = open_box(
                    sealed[32:],
                    private,
                    _context(int(row.id)),
                    legacy=_legacy_context(account.user.id),
                )
                detail = json.loads(opened)
                ip, name = str(detail.get("ip", "")), str(detail.get("name", ""))
            except (DecryptionFailed, ValueError):
                ip = "?"
        events.append(Event(row.at, str(row.event), ip, name))
    return events


async def prune_events(conn: AsyncConnection, user_id: UserId) -> None:
    """Keep the newest KEEP_EVENTS events of a user."""
    cutoff = (
        await conn.execute(
            select(t.cm_key_events.c.id)
            .where(t.cm_key_events.c.user_id == user_id)
            .order_by(t.cm_key_events.c.id.desc())
            .offset(KEEP_EVENTS)
            .limit(1)
        )
    ).first()
    if cutoff is not None:
        await conn.execute(
            delete(t.cm_key_events).where(
                t.cm_key_events.c.user_id == user_id, t.cm_key_events.c.id <= cutoff.id
            )
        )
