"""Mailboxes: the six default folders with SPECIAL-USE roles, and the user's own.

A default folder's name follows from its role (the same six for everyone), so only the
role is plain. Other names are sealed under the data key, with a keyed hash for
uniqueness. Hierarchy is in the name ("Work/2026"), delimiter "/".

A sealed name is bound to its row (column and mailbox id), and an opened name must hash
to the row's `name_lookup`: a name moved to another row, or a lookup moved, fails
instead of showing one folder's messages under another's name. Names sealed before
that binding (field versions 1 and 2, bound to the user only) still open, and
`reseal_names` binds them at the user's next login.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.crypto import FieldCipher, context
from cryptmail.db import (
    ChangeKind,
    UserId,
    record_mailbox_change,
    record_user_change,
    run_transaction,
    utcnow,
)
from cryptmail.db import tables as t
from cryptmail.errors import (
    DatabaseConflict,
    DecryptionFailed,
    MailboxExists,
    MailboxNotFound,
    ObjectTampered,
    StoreError,
    TransactionAborted,
)
from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import BlobId, MailboxId

log = logging.getLogger(__name__)

DELIMITER = "/"
_ATTEMPTS = 5
_NAME_COLUMN = "cm_mailboxes.name_sealed"
# role -> (name, SPECIAL-USE attribute)
DEFAULT_MAILBOXES: dict[str, tuple[str, str]] = {
    "inbox": ("INBOX", ""),
    "sent": ("Sent", "\\Sent"),
    "drafts": ("Drafts", "\\Drafts"),
    "trash": ("Trash", "\\Trash"),
    "junk": ("Junk", "\\Junk"),
    "archive": ("Archive", "\\Archive"),
}
# The hidden holding mailbox where Sieve's filing notes wait (store/_filing.py): made on
# demand, never listed, never selectable by name, counted in the quota like any other.
HOLDING_ROLE = "filing"
_ROLE_BY_NAME = {
    name.upper() if role == "inbox" else name: role for role, (name, _) in DEFAULT_MAILBOXES.items()
}


@dataclass(frozen=True)
class Mailbox:
    id: MailboxId
    name: str
    role: str | None
    uidvalidity: int
    uidnext: int
    highest_modseq: int

    @property
    def special_use(self) -> str:
        return DEFAULT_MAILBOXES[self.role][1] if self.role in DEFAULT_MAILBOXES else ""


def _allocate_uidvalidities(conn: Connection, user_id: UserId, count: int) -> list[int]:
    """`count` UIDVALIDITY values for new (or renamed) mailboxes of the user, each
    greater than any the user's mailboxes ever had (RFC 3501 2.3.1.1).

    Time-based like Dovecot's, taken from a per-user counter that only grows; its row
    stays locked until the caller's transaction ends, so two sessions never get the
    same value. Stays within 32 bits until the year 2106.
    """
    uv, mb = t.cm_uidvalidity, t.cm_mailboxes
    now = int(time.time())
    grown = case((uv.c.last_value > now, uv.c.last_value), else_=now) + count
    for _attempt in range(3):
        bumped = conn.execute(update(uv).where(uv.c.user_id == user_id).values(last_value=grown))
        if bumped.rowcount:
            break
        # No counter yet (a user made before it, or by other tools): start above every
        # value the user's mailboxes have.
        highest = conn.execute(
            select(func.coalesce(func.max(mb.c.uidvalidity), 0)).where(mb.c.user_id == user_id)
        ).scalar_one()
        first = uv.insert().values(user_id=user_id, last_value=max(int(highest), now) + count)
        if conn.dialect.name == "sqlite":  # the UPDATE took the write lock: nobody races
            conn.execute(first)
            break
        try:
            with conn.begin_nested():
                conn.execute(first)
            break
        except DatabaseConflict:
            continue  # another transaction made the row first: move it on instead
    last = int(conn.execute(select(uv.c.last_value).where(uv.c.user_id == user_id)).scalar_one())
    return list(range(last - count + 1, last + 1))


async def _new_uidvalidity(conn: AsyncConnection, user_id: UserId) -> int:
    return (await conn.run_sync(_allocate_uidvalidities, user_id, 1))[0]


def _role_for(name: str) -> str | None:
    if name.upper() == "INBOX":
        return "inbox"
    return _ROLE_BY_NAME.get(name)


def _name_context(user_id: UserId) -> bytes:
    """The keyed lookup's context, and the sealing context of names written before
    field version 3 (bound to the user only). Lookups keep it: unique names must hash
    as they always did."""
    return b"mailbox-name|" + str(user_id).encode()


def _sealed_name_context(mailbox_id: int) -> bytes:
    return context(_NAME_COLUMN, mailbox_id)


def _seal_name(account: UnlockedAccount, mailbox_id: int, name: str) -> bytes:
    return account.fields.seal(name.encode("utf-8"), _sealed_name_context(mailbox_id))


def _open_name(account: UnlockedAccount, row: object) -> str:
    """The name of a user folder's row; ObjectTampered if its sealed name does not open
    for this row or does not match the row's lookup (a swapped name or lookup)."""
    mailbox_id = int(row.id)  # type: ignore[attr-defined]
    sealed, lookup = row.name_sealed, row.name_lookup  # type: ignore[attr-defined]
    legacy = _name_context(account.user.id)
    try:
        if sealed is None or lookup is None:
            raise DecryptionFailed("mailbox name")
        data = account.fields.open(bytes(sealed), _sealed_name_context(mailbox_id), legacy=legacy)
        if not hmac.compare_digest(account.fields.lookup(data, legacy), bytes(lookup)):
            raise DecryptionFailed("mailbox name")
        return data.decode("utf-8")
    except (DecryptionFailed, UnicodeDecodeError) as exc:
        raise ObjectTampered(
            f"the sealed name of mailbox id {mailbox_id} failed authentication: it was "
            "changed, or moved from another row, in the database"
        ) from exc


def _missing_roles(conn: Connection, user_id: UserId) -> list[str]:
    rows = conn.execute(
        select(t.cm_mailboxes.c.role).where(
            t.cm_mailboxes.c.user_id == user_id, t.cm_mailboxes.c.role.is_not(None)
        )
    )
    have = {r.role for r in rows}
    return [role for role in DEFAULT_MAILBOXES if role not in have]


def _ensure_defaults(conn: Connection, user_id: UserId) -> None:
    """Create the default folders the user lacks, tolerating another transaction that
    creates them at the same time (first deliveries in parallel, a login meanwhile)."""
    missing = _missing_roles(conn, user_id)
    if not missing:
        return
    values = _allocate_uidvalidities(conn, user_id, len(missing))
    # Read again under the write lock the counter took (SQLite) or after the rows that
    # another transaction committed meanwhile (elsewhere a duplicate fails below).
    missing = _missing_roles(conn, user_id)
    for role, uidvalidity in zip(missing, values, strict=False):
        row = t.cm_mailboxes.insert().values(
            user_id=user_id,
            role=role,
            uidvalidity=uidvalidity,
            uidnext=1,
            highest_modseq=1,
            created_at=utcnow(),
        )
        if conn.dialect.name == "sqlite":
            conn.execute(row)
            continue
        try:
            with conn.begin_nested():
                conn.execute(row)
        except DatabaseConflict:
            pass  # another transaction created this folder first: it exists, as wanted


async def ensure_default_mailboxes(conn: AsyncConnection, user_id: UserId) -> None:
    """Create whichever of the six default folders the user lacks (no key needed)."""
    await conn.run_sync(_ensure_defaults, user_id)


async def create_default_mailboxes(engine: AsyncEngine, user_id: UserId) -> MailboxId:
    """`ensure_default_mailboxes` through the write path (`run_transaction`, so on
    SQLite behind this process's other writers); the INBOX id.

    One read-only look first: nearly every user has them already, and a login or a
    delivery should not queue for the write lock for nothing."""

    def inbox(conn: Connection, *, latest: bool = False) -> MailboxId | None:
        query = select(t.cm_mailboxes.c.id).where(
            t.cm_mailboxes.c.user_id == user_id, t.cm_mailboxes.c.role == "inbox"
        )
        # A locking read sees the row another transaction committed meanwhile, which
        # MariaDB's snapshot (REPEATABLE READ) would hide.
        row = conn.execute(query.with_for_update() if latest else query).first()
        return None if row is None else MailboxId(int(row.id))

    def create(conn: Connection) -> MailboxId:
        _ensure_defaults(conn, user_id)
        found = inbox(conn, latest=True)
        assert found is not None  # noqa: S101 - _ensure_defaults just made it
        return found

    def look(conn: Connection) -> MailboxId | None:
        return None if _missing_roles(conn, user_id) else inbox(conn)

    found = await run_transaction(engine, look, writes=False)
    if found is not None:
        return found
    for attempt in range(_ATTEMPTS):
        try:
            return await run_transaction(engine, create)
        except (TransactionAborted, DatabaseConflict):
            # MariaDB ends a transaction that lost a deadlock between parallel first
            # deliveries (InnoDB's gap and duplicate-key locks); the winner's folders
            # are there by the time this one looks again.
            if attempt == _ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


async def inbox_id(conn: AsyncConnection, user_id: UserId) -> MailboxId:
    row = (
        await conn.execute(
            select(t.cm_mailboxes.c.id).where(
                t.cm_mailboxes.c.user_id == user_id, t.cm_mailboxes.c.role == "inbox"
            )
        )
    ).first()
    if row is None:
        await ensure_default_mailboxes(conn, user_id)
        return await inbox_id(conn, user_id)
    return MailboxId(int(row.id))


def _mailbox(row: object, account: UnlockedAccount | None) -> Mailbox:
    role = row.role  # type: ignore[attr-defined]
    if role == HOLDING_ROLE:
        name = ""  # nobody's folder: never shown, never named
    elif role:
        name = DEFAULT_MAILBOXES[role][0]
    elif account is not None:
        name = _open_name(account, row)
    else:
        name = f"#{row.id}"  # type: ignore[attr-defined]
    return Mailbox(
        id=MailboxId(int(row.id)),  # type: ignore[attr-defined]
        name=name,
        role=role,
        uidvalidity=int(row.uidvalidity),  # type: ignore[attr-defined]
        uidnext=int(row.uidnext),  # type: ignore[attr-defined]
        highest_modseq=int(row.highest_modseq),  # type: ignore[attr-defined]
    )


async def list_mailboxes(
    conn: AsyncConnection, user_id: UserId, account: UnlockedAccount | None
) -> list[Mailbox]:
    """Every mailbox of the user but the hidden holding one; names of non-default
    folders need the account.

    A folder whose sealed name fails authentication is left out and logged (a wrong
    name is never shown, and the other folders stay listed); selecting it by any name
    fails with ObjectTampered."""
    mb = t.cm_mailboxes
    rows = await conn.execute(
        select(mb)
        .where(mb.c.user_id == user_id, mb.c.role.is_distinct_from(HOLDING_ROLE))
        .order_by("id")
    )
    boxes: list[Mailbox] = []
    for row in rows:
        try:
            boxes.append(_mailbox(row, account))
        except ObjectTampered as exc:
            log.warning("user id %d: left out of the folder list: %s", user_id, exc)
    return sorted(boxes, key=lambda b: (b.role != "inbox", b.name))


def normal_name(name: str) -> str:
    """A folder name as it is stored: Unicode NFC (RFC 9051 5.1: a server may take a
    denormalised UTF-8 name and store it normalised; then every command must accept the
    denormalised form too, so every lookup normalises first)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def name_lookups(account: UnlockedAccount, name: str) -> list[bytes]:
    """The keyed lookups a folder called `name` may be stored under: its NFC form, and
    for a name stored before names were normalised, the form given and NFD (names are
    sealed: equal forms can only be found by their lookups)."""
    context = _name_context(account.user.id)
    forms = dict.fromkeys(
        (normal_name(name), name, name if name.isascii() else unicodedata.normalize("NFD", name))
    )
    return [account.fields.lookup(form.encode("utf-8"), context) for form in forms]


# Built once: building the statement took a third of a SELECT command's own time.
_BY_ROLE = select(t.cm_mailboxes).where(
    t.cm_mailboxes.c.user_id == bindparam("user_id"), t.cm_mailboxes.c.role == bindparam("role")
)
_BY_LOOKUP = select(t.cm_mailboxes).where(
    t.cm_mailboxes.c.user_id == bindparam("user_id"),
    t.cm_mailboxes.c.name_lookup.in_(bindparam("lookups", expanding=True)),
)


def _mailbox_query(account: UnlockedAccount, name: str) -> tuple[Select[Any], dict[str, Any]]:
    role = _role_for(name)
    user_id = account.user.id
    if role is not None:
        return _BY_ROLE, {"user_id": user_id, "role": role}
    return _BY_LOOKUP, {"user_id": user_id, "lookups": name_lookups(account, name)}


def _named(account: UnlockedAccount, name: str, rows: Sequence[Any]) -> Any:
    """The row a name given names among those its forms found. Two only where a user
    made one name twice, once per normal form, before names were normalised: both stay
    listed (NFC, and the other as stored), so each must stay selectable by the form it
    is listed under; the exact form wins, else NFC (the first lookup)."""
    if not rows:
        raise MailboxNotFound("no such mailbox")
    if len(rows) > 1:
        exact = account.fields.lookup(name.encode("utf-8"), _name_context(account.user.id))
        for row in rows:
            if row.name_lookup is not None and hmac.compare_digest(bytes(row.name_lookup), exact):
                return row
        nfc = name_lookups(account, name)[0]
        for row in rows:
            if row.name_lookup is not None and hmac.compare_digest(bytes(row.name_lookup), nfc):
                return row
    return rows[0]


async def get_mailbox(conn: AsyncConnection, account: UnlockedAccount, name: str) -> Mailbox:
    rows = (await conn.execute(*_mailbox_query(account, name))).all()
    return _mailbox(_named(account, name, rows), account)


async def find_mailbox(engine: AsyncEngine, account: UnlockedAccount, name: str) -> Mailbox:
    """`get_mailbox` in a read transaction of its own: on SQLite one worker call instead
    of an async connection's several thread hops (SELECT's only query)."""
    query, params = _mailbox_query(account, name)
    rows = await run_transaction(
        engine, lambda conn: conn.execute(query, params).all(), writes=False
    )
    return _mailbox(_named(account, name, rows), account)


async def mailbox_by_id(
    conn: AsyncConnection, account: UnlockedAccount | None, mailbox_id: MailboxId
) -> Mailbox:
    row = (
        await conn.execute(select(t.cm_mailboxes).where(t.cm_mailboxes.c.id == mailbox_id))
    ).first()
    if row is None:
        raise MailboxNotFound(f"mailbox id {mailbox_id} does not exist")
    return _mailbox(row, account)


def check_name(name: str) -> str:
    if not name or len(name.encode("utf-8")) > 1000:
        raise StoreError("a mailbox name is 1 to 1000 bytes")
    parts = name.split(DELIMITER)
    if any(p == "" for p in parts) or any(ch in name for ch in "\r\n\x00*%"):
        raise StoreError("a mailbox name has no empty levels and no CR, LF, NUL, * or %")
    return normal_name(name)


def _refuse_control_characters(name: str) -> None:
    """A new name must be Net-Unicode (RFC 5198), which has no control characters: RFC
    9051 6.3.4 says the server MUST refuse one that is not (or convert it; NFC is what
    `normal_name` converts). Names stored before stay usable: only new ones are checked."""
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name):
        raise StoreError("a new mailbox name has no control characters (RFC 5198, Net-Unicode)")


async def create_mailbox(conn: AsyncConnection, account: UnlockedAccount, name: str) -> Mailbox:
    name = check_name(name)
    _refuse_control_characters(name)
    if _role_for(name) is not None:
        raise MailboxExists("that mailbox exists already")
    user_id = account.user.id
    if not name.isascii() and (await conn.execute(*_mailbox_query(account, name))).first():
        # The same name stored un-normalised, before names were: the unique lookup
        # cannot see it.
        raise MailboxExists("that mailbox exists already")
    try:
        result = await conn.execute(
            t.cm_mailboxes.insert().values(
                user_id=user_id,
                role=None,
                name_lookup=account.fields.lookup(name.encode("utf-8"), _name_context(user_id)),
                uidvalidity=await _new_uidvalidity(conn, user_id),
                uidnext=1,
                highest_modseq=1,
                created_at=utcnow(),
            )
        )
    except DatabaseConflict as exc:
        raise MailboxExists("that mailbox exists already") from exc
    new_id = MailboxId(int(result.inserted_primary_key[0]))  # type: ignore[index]
    # The name is bound to the row id, known only now: sealed in the same transaction,
    # so no other session ever sees the row without its name.
    await conn.execute(
        update(t.cm_mailboxes)
        .where(t.cm_mailboxes.c.id == new_id)
        .values(name_sealed=_seal_name(account, new_id, name))
    )
    await conn.run_sync(record_user_change, user_id, ChangeKind.MAILBOXES)
    return await mailbox_by_id(conn, account, new_id)


async def rename_mailbox(
    conn: AsyncConnection, account: UnlockedAccount, old: str, new: str
) -> list[tuple[str, str]]:
    """Rename `old` and its children; INBOX goes through `rename_inbox` instead.
    Returns each renamed folder's name as it was stored and its new (NFC) name, for
    the caller to carry what hangs on the name (the subscriptions)."""
    new = check_name(new)
    _refuse_control_characters(new)
    source = await get_mailbox(conn, account, old)
    if source.role is not None:
        raise StoreError("default folders cannot be renamed")
    if _role_for(new) is not None:
        raise MailboxExists("that mailbox exists already")
    boxes = await list_mailboxes(conn, account.user.id, account)
    names = {normal_name(b.name) for b in boxes}
    # Children compared in NFC: a parent stored in NFD before names were normalised has
    # children created since in NFC (and the other way round), all of them its own.
    old = normal_name(source.name)
    renames = [
        (b, normal_name(new + normal_name(b.name)[len(old) :]))
        for b in boxes
        if b.id == source.id or normal_name(b.name).startswith(old + DELIMITER)
    ]
    for _box, target in renames:
        if target in names and target not in {normal_name(b.name) for b, _ in renames}:
            raise MailboxExists("that mailbox exists already")
    lookup_context = _name_context(account.user.id)
    for box, target in renames:
        await conn.execute(
            update(t.cm_mailboxes)
            .where(t.cm_mailboxes.c.id == box.id)
            .values(
                name_sealed=_seal_name(account, box.id, target),
                name_lookup=account.fields.lookup(target.encode("utf-8"), lookup_context),
                # Clients cache by UIDVALIDITY: a renamed folder is a new folder to them.
                uidvalidity=await _new_uidvalidity(conn, account.user.id),
            )
        )
    await conn.run_sync(record_user_change, account.user.id, ChangeKind.MAILBOXES)
    return [(box.name, target) for box, target in renames]


async def rename_inbox(conn: AsyncConnection, account: UnlockedAccount, new: str) -> Mailbox:
    """RFC 3501 6.3.5: renaming INBOX creates `new`, moves every INBOX message there
    (UIDs 1..n in the new folder) and leaves INBOX empty but existing.

    Run it inside one transaction: the rows change folder in place (flags and caches
    are sealed to the row id, so nothing is resealed), and INBOX records the old UIDs
    as expunged for QRESYNC, so a crash leaves either the old state or the new one.
    Raises MailboxExists if `new` exists, StoreError for an invalid name.
    """
    user_id = account.user.id
    inbox = await inbox_id(conn, user_id)
    target = await create_mailbox(conn, account, new)
    msg = t.cm_messages
    rows = (
        await conn.execute(
            select(msg.c.id, msg.c.uid).where(msg.c.mailbox_id == inbox).order_by(msg.c.uid)
        )
    ).all()
    if not rows:
        return target
    mb = t.cm_mailboxes
    await conn.execute(
        update(mb).where(mb.c.id == inbox).values(highest_modseq=mb.c.highest_modseq + 1)
    )
    inbox_modseq = int(
        (await conn.execute(select(mb.c.highest_modseq).where(mb.c.id == inbox))).scalar_one()
    )
    for new_uid, row in enumerate(rows, 1):
        await conn.execute(
            update(msg)
            .where(msg.c.id == row.id)
            .values(mailbox_id=target.id, uid=new_uid, modseq=target.highest_modseq)
        )
    await conn.execute(
        t.cm_expunged.insert(),
        [{"mailbox_id": inbox, "uid": r.uid, "modseq": inbox_modseq} for r in rows],
    )
    # Every INBOX message moved, and with them all of INBOX's usage.
    # (Read first: MariaDB refuses a subquery on the table an UPDATE changes.)
    moved = (await conn.execute(select(mb.c.used_bytes).where(mb.c.id == inbox))).scalar_one()
    await conn.execute(
        update(mb)
        .where(mb.c.id == target.id)
        .values(uidnext=len(rows) + 1, used_bytes=moved, message_count=len(rows))
    )
    await conn.execute(update(mb).where(mb.c.id == inbox).values(used_bytes=0, message_count=0))
    await conn.run_sync(record_mailbox_change, inbox, ChangeKind.EXPUNGE)
    return await mailbox_by_id(conn, account, target.id)


async def delete_mailbox(
    conn: AsyncConnection, account: UnlockedAccount, name: str
) -> list[BlobId]:
    """Delete a folder and its messages; returns blob ids that may now be unreferenced."""
    box = await get_mailbox(conn, account, name)
    if box.role is not None:
        raise StoreError("default folders cannot be deleted")
    blob_rows = await conn.execute(
        select(t.cm_messages.c.blob_id).where(t.cm_messages.c.mailbox_id == box.id)
    )
    blobs = [BlobId(bytes(r.blob_id)) for r in blob_rows]
    await conn.execute(delete(t.cm_messages).where(t.cm_messages.c.mailbox_id == box.id))
    await conn.execute(delete(t.cm_expunged).where(t.cm_expunged.c.mailbox_id == box.id))
    await conn.execute(delete(t.cm_sort_chunks).where(t.cm_sort_chunks.c.mailbox_id == box.id))
    await conn.execute(delete(t.cm_mailboxes).where(t.cm_mailboxes.c.id == box.id))
    await conn.run_sync(record_user_change, account.user.id, ChangeKind.MAILBOXES)
    return blobs


def reseal_names(conn: Connection, account: UnlockedAccount, *, write: bool) -> int:
    """Bind the user's folder names sealed before field version 3 to their rows.

    With `write` False only counts them (a read-only look at login); with `write` True
    re-seals each one that still opens for its row and matches its lookup, unless
    another session changed it meanwhile. A name that fails is logged and left as it
    is: re-sealing it would make a moved name look genuine. Returns the count.
    """
    mb = t.cm_mailboxes
    rows = conn.execute(
        select(mb.c.id, mb.c.name_sealed, mb.c.name_lookup).where(
            mb.c.user_id == account.user.id, mb.c.role.is_(None)
        )
    ).all()
    old = [
        r
        for r in rows
        if r.name_sealed is not None and not FieldCipher.is_current(bytes(r.name_sealed))
    ]
    if not write:
        return len(old)
    done = 0
    for row in old:
        try:
            name = _open_name(account, row)
        except ObjectTampered as exc:
            log.warning("user id %d: not re-sealed: %s", account.user.id, exc)
            continue
        result = conn.execute(
            update(mb)
            .where(mb.c.id == row.id, mb.c.name_sealed == row.name_sealed)
            .values(name_sealed=_seal_name(account, int(row.id), name))
        )
        done += result.rowcount
    return done
