"""Adding a message: the blob first (durable), then its row (one transaction).

Delivery holds only the user's public key: it seals the blob and writes a row with no
flags and no cache. A crash between blob and row leaves an orphan blob that
`store check --fix` removes; never a row without its blob.

The public key and `crypt` delivery reads are checked against their MAC under the
server key (keys/_integrity.py) before any byte is written: a key that does not verify
is a temporary failure (the MTA retries), never mail sealed to someone else's key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    ScalarSelect,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.crypto import BlobSealer, PublicKeyInfo, plain_header
from cryptmail.db import ChangeKind, UserId, record_mailbox_change, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import (
    KeyLocked,
    QuotaExceeded,
    RecipientChanged,
    RecipientKeyUnverified,
    StoreError,
)
from cryptmail.keys import (
    DeliveryCheck,
    check_delivery,
    checkpoint,
    delivery_retry_tag,
    note_crypt_changed_at_delivery,
    note_key_unverified,
)
from cryptmail.store._codec import round_size
from cryptmail.store._filing import FilingRequest, holding_mailbox, insert_note, seal_note
from cryptmail.store._ids import BlobId, MailboxId, new_blob_id
from cryptmail.store._mailboxes import create_default_mailboxes
from cryptmail.store._notify import ChangePublisher
from cryptmail.store._sortentries import EpochUse, SortFields, write_sort_entry
from cryptmail.store.blobs import BlobStore
from cryptmail.users import User, get_user_by_id, resolve_recipient_sync

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredBlob:
    blob_id: BlobId
    size: int
    sealed: bool
    message_key: bytes | None = field(repr=False)


@dataclass(frozen=True)
class Appended:
    mailbox_id: MailboxId
    uid: int
    modseq: int
    row_id: int
    blob: StoredBlob | None
    duplicate: bool = False
    used_before: int | None = None
    """The user's usage (as the quota counts it) just before this message, read in the
    transaction that added it; None for a user without a quota."""


DELIVERY_TAG_WINDOW = timedelta(hours=1)

# The statements every delivery runs, built once: building and keying a SQLAlchemy
# statement costs 50-200 us each time, several times what SQLite takes to run it.
_msg, _mb, _kp, _acc = t.cm_messages, t.cm_mailboxes, t.cm_key_pairs, t.cm_accounts
_USER_ID: BindParameter[int] = bindparam("user_id")
_USERS_MAILBOXES = select(_mb.c.id).where(_mb.c.user_id == _USER_ID)


def _active_key_column(
    column: ColumnElement[Any], user_id: ColumnElement[Any] = _USER_ID
) -> ScalarSelect[Any]:
    """`column` of the active key pair (the oldest active one) of the user `user_id`
    (the bound user id, or a column of the enclosing query), as a subquery."""
    return (
        select(column)
        .where(_kp.c.user_id == user_id, _kp.c.active.is_(True))
        .order_by(_kp.c.id)
        .limit(1)
        .scalar_subquery()
    )


_TARGET = select(
    select(_mb.c.id)
    .where(_mb.c.user_id == _USER_ID, _mb.c.role == "inbox")
    .limit(1)
    .scalar_subquery()
    .label("inbox"),
    _active_key_column(_kp.c.curve).label("curve"),
    _active_key_column(_kp.c.public_key).label("public_key"),
    select(_acc.c.delivery_mac)
    .where(_acc.c.user_id == _USER_ID)
    .scalar_subquery()
    .label("delivery_mac"),
)
_SEALING_NOW = select(
    select(t.virtual_users.c.crypt)
    .where(t.virtual_users.c.id == _USER_ID)
    .scalar_subquery()
    .label("crypt"),
    _active_key_column(_kp.c.public_key).label("public_key"),
)
# The same for every user of a message's copies, in one statement (`deliver_many`).
_SEALING_NOW_OF_USERS = select(
    t.virtual_users.c.id,
    t.virtual_users.c.crypt,
    _active_key_column(_kp.c.public_key, t.virtual_users.c.id).label("public_key"),
).where(t.virtual_users.c.id.in_(bindparam("user_ids", expanding=True)))
_EARLIER = (
    select(_msg.c.id, _msg.c.mailbox_id, _msg.c.uid, _msg.c.modseq)
    .where(
        _msg.c.delivery_tag == bindparam("tag"),
        _msg.c.mailbox_id.in_(_USERS_MAILBOXES),
        _msg.c.internal_date >= bindparam("cutoff"),
    )
    .limit(1)
)
_USED_BYTES = select(func.coalesce(func.sum(_mb.c.used_bytes), 0)).where(_mb.c.user_id == _USER_ID)
_MESSAGE_COUNT = select(func.coalesce(func.sum(_mb.c.message_count), 0)).where(
    _mb.c.user_id == _USER_ID
)
_BUMP = (
    update(_mb)
    .where(_mb.c.id == bindparam("mailbox_id"))
    .values(
        uidnext=_mb.c.uidnext + 1,
        highest_modseq=_mb.c.highest_modseq + 1,
        used_bytes=_mb.c.used_bytes + bindparam("size"),
        message_count=_mb.c.message_count + 1,
    )
)
_BUMP_RETURNING = _BUMP.returning(_mb.c.uidnext, _mb.c.highest_modseq)
_COUNTERS = select(_mb.c.uidnext, _mb.c.highest_modseq).where(_mb.c.id == bindparam("mailbox_id"))
_INSERT = _msg.insert()


def delivery_tag(user_id: UserId, message_digest: bytes) -> bytes:
    """Tag of one delivery: a retry of the same bytes to the same user has the same tag.

    An HMAC under a subkey of the server key, so that a database reader holding the
    same bytes (a co-recipient) cannot confirm that this user got them; it is cleared
    after an hour anyway. Tags from before it was keyed simply expire.
    """
    return delivery_retry_tag(user_id, message_digest)


async def expire_delivery_tags(engine: AsyncEngine) -> int:
    """Clear the retry tags older than DELIVERY_TAG_WINDOW, for every user; returns how
    many. `cryptmail serve` runs it every few minutes. Delivery ignores expired tags
    itself, so this only keeps a database reader from linking old identical messages;
    doing it here and not in each delivery keeps a delivery's cost independent of how
    much mail arrived in the last hour."""

    def work(conn: Connection) -> int:
        result = conn.execute(
            update(t.cm_messages)
            .where(
                t.cm_messages.c.delivery_tag.is_not(None),
                t.cm_messages.c.internal_date < utcnow() - DELIVERY_TAG_WINDOW,
            )
            .values(delivery_tag=None)
        )
        return int(result.rowcount)

    return await run_transaction(engine, work)


def _earlier_delivery(conn: Connection, user_id: UserId, tag: bytes) -> Appended | None:
    """The row a delivery of the same bytes committed within the retry window, if any.

    Only reads, so the transaction before the blob is written stays read-only."""
    cutoff = utcnow() - DELIVERY_TAG_WINDOW
    row = conn.execute(_EARLIER, {"tag": tag, "user_id": user_id, "cutoff": cutoff}).first()
    if row is None:
        return None
    return Appended(
        MailboxId(int(row.mailbox_id)),
        int(row.uid),
        int(row.modseq),
        int(row.id),
        None,
        duplicate=True,
    )


def _role_mailbox(conn: Connection, user_id: UserId, role: str) -> MailboxId | None:
    row = conn.execute(
        select(t.cm_mailboxes.c.id).where(
            t.cm_mailboxes.c.user_id == user_id, t.cm_mailboxes.c.role == role
        )
    ).first()
    return None if row is None else MailboxId(int(row.id))


def _delivery_target(
    conn: Connection, user_id: UserId
) -> tuple[PublicKeyInfo | None, MailboxId | None, bytes | None]:
    """The active public key, the INBOX id (None if not made yet) and the delivery MAC,
    in one statement.

    The same key query as `keys.active_public_key`, joined here so that the delivery
    path costs one round trip instead of two.
    """
    row = conn.execute(_TARGET, {"user_id": user_id}).one()
    recipient = PublicKeyInfo(row.curve, bytes(row.public_key)) if row.curve is not None else None
    mac = bytes(row.delivery_mac) if row.delivery_mac is not None else None
    return recipient, (MailboxId(int(row.inbox)) if row.inbox is not None else None), mac


async def write_blob(
    blobs: BlobStore, recipient: PublicKeyInfo | None, source: AsyncIterable[bytes]
) -> StoredBlob:
    """Write `source` as a new blob, sealed to `recipient` (or plain if None)."""
    blob_id = new_blob_id()
    writer = await blobs.create(blob_id)
    size = 0
    try:
        # Inside the try: a recipient key the sealer refuses must not leave a temp file.
        sealer = BlobSealer(recipient, blob_id) if recipient is not None else None
        await writer.write(sealer.header if sealer else plain_header())
        async for data in source:
            size += len(data)
            await writer.write(sealer.update(data) if sealer else data)
        if sealer is not None:
            await writer.write(sealer.finalize())
        checkpoint("append:before-blob-commit")
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    checkpoint("append:after-blob-commit")
    return StoredBlob(blob_id, size, sealer is not None, sealer.message_key if sealer else None)


@dataclass(frozen=True)
class SealingNow:
    """A user's `crypt` and active public key as the row's transaction reads them
    (None for both: the user was deleted)."""

    crypt: int | None
    public_key: bytes | None


def _check_sealing(conn: Connection, user: User, recipient: PublicKeyInfo | None) -> None:
    """RecipientChanged unless the user's `crypt` is still the one the copy was made for
    and, for a sealed copy, `recipient` is still the active public key. In the row's
    transaction: a re-key or key rotation committed since the lookup (which LMTP makes
    at RCPT, or reuses for a moment, `lmtp.recipient_cache_s`) must not get a copy
    sealed to the key it retired, and a user switched to crypt 2 no plain one."""
    row = conn.execute(_SEALING_NOW, {"user_id": user.id}).one()
    _check_sealed_as(user, recipient, SealingNow(row.crypt, row.public_key))


def _sealing_now_of(conn: Connection, user_ids: list[UserId]) -> dict[int, SealingNow]:
    """Each user's `crypt` and active public key now, as `_check_sealing` reads them,
    in one statement; a user missing from the result was deleted."""
    rows = conn.execute(_SEALING_NOW_OF_USERS, {"user_ids": user_ids})
    return {row.id: SealingNow(row.crypt, row.public_key) for row in rows}


def _check_sealed_as(user: User, recipient: PublicKeyInfo | None, now: SealingNow) -> None:
    """`_check_sealing`'s test, on what the transaction read (`now`)."""
    if now.crypt != user.crypt or (
        recipient is not None
        and (now.public_key is None or bytes(now.public_key) != recipient.encoded)
    ):
        raise RecipientChanged(
            f"user id {user.id}: encryption or key pair changed during the delivery; "
            "delivering again with the new one"
        )


def _used_bytes(conn: Connection, user_id: UserId) -> int:
    return int(conn.execute(_USED_BYTES, {"user_id": user_id}).scalar_one())


def _message_count(conn: Connection, user_id: UserId) -> int:
    return int(conn.execute(_MESSAGE_COUNT, {"user_id": user_id}).scalar_one())


def _check_quota(
    conn: Connection, user: User, size: int, *, messages: int = 1, message_limit: int = 0
) -> int | None:
    """The usage before `size` more bytes (None: no quota); QuotaExceeded past the
    user's quota, or past `message_limit` messages in all (0: none) with `messages` more."""
    if message_limit > 0 and _message_count(conn, user.id) + messages > message_limit:
        raise QuotaExceeded(f"user id {user.id} is at the message limit ({message_limit})")
    if user.quota <= 0:
        return None
    used = _used_bytes(conn, user.id)
    if used + round_size(size) > user.quota:
        raise QuotaExceeded(f"user id {user.id} is over quota")
    return used


async def used_bytes(conn: AsyncConnection, user_id: UserId) -> int:
    return await conn.run_sync(_used_bytes, user_id)


async def message_count(conn: AsyncConnection, user_id: UserId) -> int:
    """The user's messages in all mailboxes (the MESSAGE quota resource)."""
    return await conn.run_sync(_message_count, user_id)


async def check_quota(
    conn: AsyncConnection, user: User, size: int, *, messages: int = 1, message_limit: int = 0
) -> None:
    """QuotaExceeded if `size` more bytes would pass the user's quota (0 = none), or
    `messages` more would pass `message_limit` (0 = none)."""
    await conn.run_sync(
        lambda sync: _check_quota(sync, user, size, messages=messages, message_limit=message_limit)
    )


def _insert_row(
    conn: Connection,
    mailbox_id: MailboxId,
    blob: StoredBlob,
    internal_date: datetime,
    *,
    uid: int | None = None,
    tag: bytes | None = None,
) -> tuple[int, int, int]:
    """Allocate a UID and a modseq and insert the row. Returns (row id, uid, modseq).

    The UPDATE comes first so that it takes the row lock (or SQLite's write lock) before
    anything is read: concurrent deliveries to one mailbox queue instead of colliding.
    `uid` keeps a given UID (import keeps Dovecot's), which must be >= UIDNEXT.
    """
    mb = t.cm_mailboxes
    size = round_size(blob.size)
    if uid is None:
        params = {"mailbox_id": mailbox_id, "size": size}
        if conn.dialect.update_returning:  # SQLite, PostgreSQL: one round trip
            row = conn.execute(_BUMP_RETURNING, params).one()
        else:  # MariaDB has no UPDATE ... RETURNING
            conn.execute(_BUMP, params)
            row = conn.execute(_COUNTERS, params).one()
        uid, modseq = int(row.uidnext) - 1, int(row.highest_modseq)
    else:
        conn.execute(
            update(mb)
            .where(mb.c.id == mailbox_id)
            .values(
                uidnext=func.max(mb.c.uidnext, uid + 1)
                if conn.dialect.name == "sqlite"
                else func.greatest(mb.c.uidnext, uid + 1),
                highest_modseq=mb.c.highest_modseq + 1,
                used_bytes=mb.c.used_bytes + size,
                message_count=mb.c.message_count + 1,
            )
        )
        row = conn.execute(select(mb.c.highest_modseq).where(mb.c.id == mailbox_id)).one()
        modseq = int(row.highest_modseq)
    result = conn.execute(
        _INSERT,
        {
            "mailbox_id": mailbox_id,
            "uid": uid,
            "modseq": modseq,
            "blob_id": blob.blob_id,
            "sealed": blob.sealed,
            "size_rounded": size,
            "internal_date": internal_date,
            "delivery_tag": tag,
            "saved_at": utcnow(),
        },
    )
    record_mailbox_change(conn, mailbox_id, ChangeKind.NEW)  # tells every node, at commit
    return int(result.inserted_primary_key[0]), uid, modseq  # type: ignore[index]


async def insert_row(
    conn: AsyncConnection,
    mailbox_id: MailboxId,
    blob: StoredBlob,
    internal_date: datetime,
    *,
    uid: int | None = None,
    tag: bytes | None = None,
) -> tuple[int, int, int]:
    """Allocate a UID and a modseq and insert the row. Returns (row id, uid, modseq).

    `uid` keeps a given UID (import keeps Dovecot's), which must be >= UIDNEXT.
    """
    return await conn.run_sync(
        lambda sync: _insert_row(sync, mailbox_id, blob, internal_date, uid=uid, tag=tag)
    )


@dataclass(frozen=True, repr=False)
class DeliveryTarget:
    """A user and where their new mail goes, looked up when LMTP accepts the recipient,
    so that the delivery itself reads nothing before it writes the blob."""

    user: User
    recipient: PublicKeyInfo | None
    """The active public key; None when the user has none yet."""
    inbox: MailboxId | None
    """The INBOX's id; None before the first delivery makes the default mailboxes."""
    delivery_mac: bytes | None = None
    """The MAC over the user id, `crypt` and `recipient` under the server key; None for
    a user without keys, or keys from before it existed."""

    def __repr__(self) -> str:
        return f"DeliveryTarget(user={self.user.id}, inbox={self.inbox})"


async def resolve_target(engine: AsyncEngine, user_id: UserId) -> DeliveryTarget:
    """The user's delivery target, by id. Raises UnknownUser."""
    async with engine.connect() as conn:
        user = await get_user_by_id(conn, user_id)
    return await run_transaction(
        engine,
        lambda conn: DeliveryTarget(user, *_delivery_target(conn, user_id)),
        writes=False,
    )


async def resolve_delivery(
    engine: AsyncEngine, address: str, delimiters: str = ""
) -> list[DeliveryTarget]:
    """The users `address` reaches (as `users.resolve_recipient`, `user+tag@` as
    `user@` for each of `delimiters`) with their delivery targets, in one transaction:
    LMTP asks this for each RCPT."""

    return await run_transaction(
        engine, lambda conn: resolve_delivery_sync(conn, address, delimiters), writes=False
    )


def resolve_delivery_sync(
    conn: Connection, address: str, delimiters: str = ""
) -> list[DeliveryTarget]:
    """`resolve_delivery` in the caller's transaction (LMTP reads the recipients'
    active Sieve scripts in the same one)."""
    return [
        DeliveryTarget(user, *_delivery_target(conn, user.id))
        for user in resolve_recipient_sync(conn, address, delimiters)
    ]


def _check_target(target: DeliveryTarget) -> DeliveryCheck:
    """The delivery MAC's verdict on `target`, logged."""
    user = target.user
    check = check_delivery(user.id, user.crypt, target.recipient, target.delivery_mac)
    if not check.verified:
        log.error(
            "delivery to user id %d deferred: the public key or crypt in the database is "
            "not the one cryptmail recorded (its MAC under the server key does not match); "
            "someone changed cm_key_pairs or virtual_users.crypt outside cryptmail, or "
            "server_key_file is not the key this database was sealed with. Nothing was "
            "sealed to that key (docs/security.md, 'Authenticated key rows')",
            user.id,
        )
    elif check.unsealed:
        log.warning(
            "delivery to user id %d: its public key has no MAC yet (keys from before the "
            "server key; written at the user's next sign-in), so it is not verified",
            user.id,
        )
    return check


def _sealing_key(target: DeliveryTarget, check: DeliveryCheck) -> PublicKeyInfo | None:
    user = target.user
    if not check.verified:
        raise RecipientKeyUnverified(
            f"user id {user.id}: the public key in the database does not verify; delivery "
            "is deferred until an administrator restores it"
        )
    if check.crypt != 2:
        return None
    if target.recipient is None:
        raise KeyLocked(
            f"user id {user.id} has encryption on but no key pair yet; it is made at the "
            "first login, or with `cryptmail user add`"
        )
    return target.recipient


async def _prepare_target(
    engine: AsyncEngine, target: DeliveryTarget
) -> tuple[PublicKeyInfo | None, MailboxId]:
    """The key to seal to (None: plain) and the INBOX, made on the first delivery.
    Raises KeyLocked or RecipientKeyUnverified before any byte is written."""
    user = target.user
    check = _check_target(target)
    if not check.verified:
        await note_key_unverified(engine, user.id)
    elif check.crypt_changed and check.vouched is not None:
        await note_crypt_changed_at_delivery(engine, user.id, user.crypt, check.vouched)
    recipient = _sealing_key(target, check)  # KeyLocked before any bytes are written
    inbox = target.inbox
    if inbox is None:  # first delivery: make the default mailboxes (others may too)
        inbox = await create_default_mailboxes(engine, user.id)
    return recipient, inbox


def _epoch_use(
    sort_fields: SortFields | None, user: User, recipient: PublicKeyInfo | None
) -> EpochUse | None:
    """The epoch a sealed copy's sort entry goes under (`_sortentries`); None for a
    plain copy, without a record, or when the epoch cannot be made (logged: the entry
    only saves work later, so its failure never fails the delivery)."""
    if sort_fields is None or recipient is None:
        return None
    try:
        if not sort_fields.ready:  # the keys made here, once, not in the row's transaction
            return None
        return sort_fields.epochs.use(user.id, recipient)
    except Exception as exc:  # the message is sorted the slow way
        log.warning("user id %d: no sort entry (%s)", user.id, type(exc).__name__)
        return None


@dataclass(frozen=True, repr=False)
class DeliveryJob:
    """One user's copy in `deliver_many`: where it goes and its bytes (read once)."""

    target: DeliveryTarget
    source: AsyncIterable[bytes]
    message_digest: bytes | None = None
    sort_fields: SortFields | None = None

    def __repr__(self) -> str:
        return f"DeliveryJob(user={self.target.user.id})"


async def deliver_many(
    engine: AsyncEngine,
    blobs: BlobStore,
    jobs: list[DeliveryJob],
    *,
    bus: ChangePublisher | None = None,
    message_limit: int = 0,
) -> list[Appended | Exception]:
    """`deliver_message` into the INBOX of several users at once, one result per job in
    order: its Appended, or the exception that user's delivery raised.

    Each blob is written (and made durable) as `deliver_message` writes it; then every
    row goes in ONE transaction instead of one each. With SQLite's synchronous=FULL a
    commit is an fsync taken under the writers' lock, so a message to 40 users cost 40
    of them in turn, the ceiling of delivery at 8 connections. Within the transaction
    each user's retry tag and quota are checked as alone: an over-quota user fails
    (its blob removed), the others commit. If the transaction itself fails, every job
    gets that error and the blobs stay for the sweep, as in `deliver_message`.
    Each job's user must differ (a user reached twice gets one copy: the caller's job).
    """
    if len({job.target.user.id for job in jobs}) != len(jobs):
        raise ValueError("deliver_many: one job per user")
    results: list[Appended | Exception | None] = [None] * len(jobs)
    written: list[tuple[int, StoredBlob, MailboxId, bytes | None]] = []
    uses: dict[int, EpochUse] = {}
    recipients: dict[int, PublicKeyInfo | None] = {}
    for index, job in enumerate(jobs):
        user = job.target.user
        digest = job.message_digest
        tag = delivery_tag(user.id, digest) if digest is not None else None
        try:
            recipient, inbox = await _prepare_target(engine, job.target)
            blob = await write_blob(blobs, recipient, job.source)
        except Exception as exc:  # this user's failure, reported as its reply
            results[index] = exc
            continue
        written.append((index, blob, inbox, tag))
        recipients[index] = recipient
        use = _epoch_use(job.sort_fields, user, recipient)
        if use is not None:
            uses[index] = use
    when = utcnow()

    def commit_rows(conn: Connection) -> dict[int, Appended | StoreError]:
        done: dict[int, Appended | StoreError] = {}
        # Read once for every copy's user at the first copy that needs it: one
        # statement, not one per user (a message to 40 users made 40).
        sealing: dict[int, SealingNow] | None = None
        for index, blob, inbox, tag in written:
            user = jobs[index].target.user
            if tag is not None:
                earlier = _earlier_delivery(conn, user.id, tag)
                if earlier is not None:
                    done[index] = earlier
                    continue
            if sealing is None:
                sealing = _sealing_now_of(conn, [jobs[i].target.user.id for i, *_ in written])
            now = sealing.get(user.id, SealingNow(None, None))  # None: deleted meanwhile
            try:  # reads only: nothing of this user's is written when it raises
                _check_sealed_as(user, recipients[index], now)
                used = _check_quota(conn, user, blob.size, message_limit=message_limit)
            except (QuotaExceeded, RecipientChanged) as exc:
                done[index] = exc
                continue
            row_id, uid, modseq = _insert_row(conn, inbox, blob, when, tag=tag)
            use = uses.get(index)
            sort_fields = jobs[index].sort_fields
            if use is not None and sort_fields is not None:
                write_sort_entry(conn, use, row_id, blob.blob_id, blob.size, sort_fields.ready)
            done[index] = Appended(inbox, uid, modseq, row_id, blob, used_before=used)
        checkpoint("append:before-row-commit")
        return done

    if written:
        try:
            committed = await run_transaction(engine, commit_rows, retry=True)
        except Exception as exc:  # the commit's fate is unknown: the blobs stay
            for index, _blob, _inbox, _tag in written:
                results[index] = exc
            committed = {}
        for index, blob, _inbox, _tag in written:
            outcome = committed.get(index)
            if outcome is None:
                continue
            results[index] = outcome
            if isinstance(outcome, StoreError) or outcome.duplicate:
                await blobs.delete(blob.blob_id)  # certainly not committed under a row
                continue
            if index in uses:
                uses[index].epochs.keep(uses[index])
            if bus is not None:
                bus.publish(jobs[index].target.user.id, outcome.mailbox_id)
    return [r if r is not None else RuntimeError("deliver_many: no result") for r in results]


async def deliver_message(
    engine: AsyncEngine,
    blobs: BlobStore,
    user: User,
    source: AsyncIterable[bytes],
    *,
    size_hint: int = 0,
    internal_date: datetime | None = None,
    bus: ChangePublisher | None = None,
    message_digest: bytes | None = None,
    target: DeliveryTarget | None = None,
    message_limit: int = 0,
    role: str = "inbox",
    filing: FilingRequest | None = None,
    sort_fields: SortFields | None = None,
) -> Appended:
    """Deliver to the user's INBOX with only the public key (no password needed).

    crypt = 2 seals the blob; crypt = 0 stores it plain (marked plain). Raises
    QuotaExceeded (past the user's quota, or `message_limit` messages: 0 = none),
    KeyLocked (crypt = 2 but no key pair yet: the user must log in once; the sender
    should retry later), StoreUnavailable.

    With `message_digest` (SHA-256 of the bytes), a retry of a delivery that committed
    within the last hour is recognised and not stored again (`duplicate=True`): the MTA
    retries when we die between the commit and our "250".

    `target` (from `resolve_delivery`, for this user) saves the read before the blob:
    the retry tag is then checked in the row's own transaction, and a retry's blob is
    written and removed again; without it, one read-only transaction comes first.

    `role` names a default folder by its role (Sieve's fileinto "Junk" at delivery,
    which holds no key to look up a sealed name); a missing one means INBOX.

    `filing` (Sieve's fileinto a folder of the user's own, or imap4flags) stores the
    message in the hidden holding mailbox with a note sealed to the user's public key,
    in the row's transaction; the next session with the key files it (store/_filing.py).

    `sort_fields` (the header's sort field record, made once per message) adds the
    copy's sort entry, sealed under the process's epoch key for the user, in the row's
    transaction (store/_sortentries.py); only for a sealed copy.
    """
    if target is not None and target.user.id != user.id:
        raise ValueError("deliver_message: the target is another user's")
    tag = delivery_tag(user.id, message_digest) if message_digest is not None else None

    def prepare(conn: Connection) -> tuple[Appended | None, DeliveryTarget | None]:
        if tag is not None:
            earlier = _earlier_delivery(conn, user.id, tag)
            if earlier is not None:
                return earlier, None
        found = DeliveryTarget(user, *_delivery_target(conn, user.id))
        if check_delivery(user.id, user.crypt, found.recipient, found.delivery_mac).verified:
            _check_quota(conn, user, size_hint, message_limit=message_limit)
        return None, found

    if target is None:
        earlier, target = await run_transaction(engine, prepare, retry=True)
        if earlier is not None:
            return earlier
        assert target is not None  # noqa: S101 - prepare returns one or the other
    recipient, inbox = await _prepare_target(engine, target)
    if filing is not None and target.recipient is None:
        # crypt = 0 and no key pair yet: nothing to seal the note to; the copy is kept.
        log.warning("user id %d: sieve filing kept in INBOX: the user has no key pair", user.id)
        filing = None
    holding = await holding_mailbox(engine, user.id) if filing is not None else None
    mailbox = inbox
    blob = await write_blob(blobs, recipient, source)
    when = internal_date or utcnow()
    use = _epoch_use(sort_fields, user, recipient)
    note = (
        seal_note(filing, target.recipient, blob.blob_id)
        if filing is not None and target.recipient is not None
        else None
    )

    def commit_row(conn: Connection) -> Appended:
        if tag is not None:
            earlier = _earlier_delivery(conn, user.id, tag)
            if earlier is not None:
                return earlier
        _check_sealing(conn, user, recipient)
        used = _check_quota(conn, user, blob.size, message_limit=message_limit)
        if holding is not None:
            into = holding
        elif role == "inbox":
            into = mailbox
        else:
            into = _role_mailbox(conn, user.id, role) or mailbox
        row_id, uid, modseq = _insert_row(conn, into, blob, when, tag=tag)
        if note is not None:
            insert_note(conn, user.id, row_id, note)
        if use is not None and sort_fields is not None:
            write_sort_entry(conn, use, row_id, blob.blob_id, blob.size, sort_fields.ready)
        checkpoint("append:before-row-commit")
        return Appended(into, uid, modseq, row_id, blob, used_before=used)

    try:
        appended = await run_transaction(engine, commit_row, retry=True)
    except (QuotaExceeded, RecipientChanged):
        # Certainly not committed: remove the orphan now. For any other failure the
        # commit's fate is unknown, so the blob stays and the sweep decides later.
        await blobs.delete(blob.blob_id)
        raise
    if appended.duplicate:  # an earlier delivery of the same bytes committed meanwhile
        await blobs.delete(blob.blob_id)
        return appended
    if use is not None:
        use.epochs.keep(use)
    if bus is not None:
        bus.publish(user.id, appended.mailbox_id)
    return appended
