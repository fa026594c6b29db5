"""IMAP subscriptions: one sealed row per subscribed name.

A subscribed name need not exist (RFC 3501 6.3.6), so a row holds the name sealed
under the data key, keyed by the same keyed hash as folder names. The six default
folders are subscribed the first time a session holding the key asks; a marker in
``cm_user_settings`` keeps that from happening again after the user unsubscribes one.

A row's sealed name is bound to the row's key (the user and the name's lookup), and an
opened name must hash to that lookup: a name moved to another row fails. Names sealed
before that binding (field versions 1 and 2, bound to the user only) still open, and
`reseal_subscriptions` binds them at the user's next login.
"""

from __future__ import annotations

import hmac
import logging
from typing import Final

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptmail.crypto import FieldCipher, context
from cryptmail.db import ChangeKind, UserId, record_user_change
from cryptmail.db import tables as t
from cryptmail.errors import DatabaseConflict, DecryptionFailed
from cryptmail.keys import UnlockedAccount
from cryptmail.store._mailboxes import DEFAULT_MAILBOXES, check_name, normal_name

log = logging.getLogger(__name__)

_SEEDED: Final = "subscriptions-seeded"


def _context(user_id: UserId) -> bytes:
    """The keyed lookup's context, and the sealing context of names written before
    field version 3. Lookups keep it: a subscribed name must hash as it always did."""
    return b"subscription|" + str(user_id).encode()


def _sealed_context(user_id: UserId, lookup: bytes) -> bytes:
    # The row's primary key is (user_id, name_lookup).
    return context("cm_subscriptions.name_sealed", user_id, lookup)


def _open(account: UnlockedAccount, sealed: bytes, lookup: bytes) -> str:
    """The subscribed name of a row; DecryptionFailed unless it opens for this row and
    hashes to its lookup (a name moved from another row fails either way)."""
    user_id = account.user.id
    data = account.fields.open(sealed, _sealed_context(user_id, lookup), legacy=_context(user_id))
    if not hmac.compare_digest(account.fields.lookup(data, _context(user_id)), lookup):
        raise DecryptionFailed("subscription")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptionFailed("subscription") from exc


def _canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else normal_name(name)


async def _insert(conn: AsyncConnection, account: UnlockedAccount, name: str) -> None:
    user_id = account.user.id
    data = name.encode("utf-8")
    lookup = account.fields.lookup(data, _context(user_id))
    sub = t.cm_subscriptions
    found = await conn.execute(
        select(sub.c.user_id).where(sub.c.user_id == user_id, sub.c.name_lookup == lookup)
    )
    if found.first() is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                sub.insert().values(
                    user_id=user_id,
                    name_lookup=lookup,
                    name_sealed=account.fields.seal(data, _sealed_context(user_id, lookup)),
                )
            )
    except DatabaseConflict:
        pass  # another session subscribed the same name meanwhile


async def _seed_defaults(conn: AsyncConnection, account: UnlockedAccount) -> None:
    user_id = account.user.id
    st = t.cm_user_settings
    found = await conn.execute(
        select(st.c.name).where(st.c.user_id == user_id, st.c.name == _SEEDED)
    )
    if found.first() is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                st.insert().values(
                    user_id=user_id,
                    name=_SEEDED,
                    value_sealed=account.fields.seal(
                        b"1", context("cm_user_settings.value_sealed", user_id, _SEEDED)
                    ),
                )
            )
    except DatabaseConflict:
        return  # another session seeds them
    for name, _attribute in DEFAULT_MAILBOXES.values():
        await _insert(conn, account, name)


async def subscribe(conn: AsyncConnection, account: UnlockedAccount, name: str) -> None:
    """Add `name` to the user's subscriptions; raises StoreError for an invalid name."""
    name = _canonical(check_name(name))
    await _seed_defaults(conn, account)
    await _insert(conn, account, name)
    # Every node's NOTIFY sessions hear of it (SubscriptionChange, RFC 5465 5.5).
    await conn.run_sync(record_user_change, account.user.id, ChangeKind.MAILBOXES)


async def unsubscribe(conn: AsyncConnection, account: UnlockedAccount, name: str) -> bool:
    """Remove `name` (in any Unicode normal form); returns whether it was subscribed."""
    name = _canonical(name)
    await _seed_defaults(conn, account)
    # A name subscribed before names were normalised is stored in the form given then:
    # merged into its NFC row first, so the one row below is all there is to delete.
    await _merged_names(conn, account)
    user_id = account.user.id
    lookup = account.fields.lookup(name.encode("utf-8"), _context(user_id))
    sub = t.cm_subscriptions
    result = await conn.execute(
        delete(sub).where(sub.c.user_id == user_id, sub.c.name_lookup == lookup)
    )
    if result.rowcount:
        await conn.run_sync(record_user_change, user_id, ChangeKind.MAILBOXES)
    return bool(result.rowcount)


async def list_subscriptions(conn: AsyncConnection, account: UnlockedAccount) -> set[str]:
    """Every subscribed name (existing or not), in NFC as folder names are stored;
    seeds the defaults on first use.

    A row whose name fails authentication is left out and logged. A row stored in
    another normal form (subscribed before names were normalised) is merged into the
    NFC row here, so a name subscribed in two forms is listed once."""
    await _seed_defaults(conn, account)
    return await _merged_names(conn, account)


async def _merged_names(conn: AsyncConnection, account: UnlockedAccount) -> set[str]:
    """Open every row; move each one whose name is not in its canonical form (NFC,
    INBOX in capitals) to the canonical form's row. The canonical row is written before
    the other is deleted, in the caller's transaction: a failure loses no subscription."""
    user_id = account.user.id
    sub = t.cm_subscriptions
    rows = await conn.execute(
        select(sub.c.name_sealed, sub.c.name_lookup).where(sub.c.user_id == user_id)
    )
    names: set[str] = set()
    stale: list[tuple[bytes, str]] = []
    for row in rows.all():
        lookup = bytes(row.name_lookup)
        try:
            name = _open(account, bytes(row.name_sealed), lookup)
        except DecryptionFailed:
            log.warning(
                "user id %d: a subscription left out: its sealed name failed "
                "authentication (changed, or moved from another row, in the database)",
                user_id,
            )
            continue
        canonical = _canonical(name)
        names.add(canonical)
        if canonical != name:
            stale.append((lookup, canonical))
    for lookup, canonical in stale:
        await _insert(conn, account, canonical)
        await conn.execute(delete(sub).where(sub.c.user_id == user_id, sub.c.name_lookup == lookup))
    if stale:
        log.info("user id %d: %d subscriptions merged into NFC names", user_id, len(stale))
    return names


def reseal_subscriptions(conn: Connection, account: UnlockedAccount, *, write: bool) -> int:
    """Bind the user's subscriptions sealed before field version 3 to their rows; with
    `write` False only count them. As `reseal_names`: a row that fails is logged and
    left, one changed meanwhile is skipped. Returns the count."""
    user_id = account.user.id
    sub = t.cm_subscriptions
    rows = conn.execute(
        select(sub.c.name_sealed, sub.c.name_lookup).where(sub.c.user_id == user_id)
    ).all()
    old = [r for r in rows if not FieldCipher.is_current(bytes(r.name_sealed))]
    if not write:
        return len(old)
    done = 0
    for row in old:
        lookup = bytes(row.name_lookup)
        try:
            name = _open(account, bytes(row.name_sealed), lookup)
        except DecryptionFailed:
            log.warning(
                "user id %d: a subscription not re-sealed: it fails authentication", user_id
            )
            continue
        result = conn.execute(
            update(sub)
            .where(
                sub.c.user_id == user_id,
                sub.c.name_lookup == lookup,
                sub.c.name_sealed == row.name_sealed,
            )
            .values(
                name_sealed=account.fields.seal(
                    name.encode("utf-8"), _sealed_context(user_id, lookup)
                )
            )
        )
        done += result.rowcount
    return done
