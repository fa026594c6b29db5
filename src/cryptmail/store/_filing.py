"""Sieve filing notes: `fileinto` a folder of the user's own, and imap4flags, at delivery.

Delivery holds only the user's public key, so it can neither find a folder by its
sealed name (the lookup is keyed under the data key) nor seal flags. For a copy whose
Sieve result names such a folder or flags, delivery stores the message in the hidden
holding mailbox (role "filing", never listed) and attaches a note sealed to the user's
public key (`seal_box`, the same ECIES as the blobs) holding {folder, :create, flags},
bound to the message's blob id. Nothing in it is readable at rest: a database reader
sees that a message waits to be filed, and its rounded size.

A session holding the private key (IMAP, POP3 and web login; an IDLE session that
hears a delivery into the holding mailbox) applies the user's notes: for each one,
ONE transaction locks the holding mailbox row (as delivery does: one lock order),
deletes the note (rowcount 0: another session, here or on another node, filed it
first) and moves the row in place to its folder with a new UID and modseq, its flags
sealed, the usage counters moved and a change-log entry for the target. A crash
anywhere leaves the note and the row together or both done: nothing is lost or filed
twice. The folder is found by name; a missing one is created under :create (if IMAP
CREATE would take the name: no control characters), else the message goes to INBOX
without the note's flags, as Pigeonhole's implicit keep after a
failed fileinto does (Pigeonhole then also drops the result's other copies; here each
copy is filed on its own, so those stay: one copy more, never one less). A
note that does not open (changed in the database, or its key is gone) also goes to
INBOX, without flags: a note is never a reason to lose mail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import PublicKeyInfo, context, open_box, seal_box
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
    CryptmailError,
    DatabaseConflict,
    DecryptionFailed,
    ObjectTampered,
    StoreError,
    TransactionAborted,
)
from cryptmail.keys import UnlockedAccount, checkpoint
from cryptmail.store._codec import RECENT_FLAG, encode_flags, flags_context
from cryptmail.store._ids import BlobId, MailboxId, MessageId
from cryptmail.store._mailboxes import (
    HOLDING_ROLE,
    _allocate_uidvalidities,
    _name_context,
    _named,
    _refuse_control_characters,
    _role_for,
    _seal_name,
    check_name,
    name_lookups,
)
from cryptmail.store._notify import ChangePublisher

log = logging.getLogger(__name__)

_NOTE_COLUMN: Final = "cm_filing_notes.note_sealed"
_NOTE_VERSION: Final = 1
_PAD: Final = 256
"""Notes are padded to a multiple of this, so their size does not tell the folder."""
_MAX_NOTE: Final = 4096
_KEY_ID: Final = 32
_ATTEMPTS: Final = 5
_SYSTEM_FLAGS: Final = {
    f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}


def _clean_flags(flags: Iterable[str]) -> frozenset[str]:
    """IMAP flags as the store keeps them: system flags in their canonical case, others
    as atoms; \\Recent and unknown system flags dropped (RFC 5232 3: not settable)."""
    out: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            known = _SYSTEM_FLAGS.get(flag.lower())
            if known is not None:
                out.add(known)
        elif flag and all(c.isprintable() and c not in ' (){%*"\\]' for c in flag):
            out.add(flag)
    return frozenset(out)


@dataclass(frozen=True)
class FilingRequest:
    """Where Sieve asked a copy to go: a folder name as the script wrote it (INBOX, a
    default folder or one of the user's own), :create, and its imap4flags."""

    mailbox: str
    create: bool = False
    flags: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, mailbox: str, create: bool, flags: Iterable[str]) -> FilingRequest:
        """A request with its flags cleaned (`_clean_flags`)."""
        return cls(mailbox, create, _clean_flags(flags))

    def encode(self) -> bytes:
        """The note's plaintext, padded; StoreError past _MAX_NOTE bytes."""
        raw = json.dumps(
            {"v": _NOTE_VERSION, "m": self.mailbox, "c": self.create, "f": sorted(self.flags)},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        if len(raw) > _MAX_NOTE:
            raise StoreError("a Sieve filing note is over 4096 bytes (folder name and flags)")
        return raw + b" " * (-len(raw) % _PAD)

    @classmethod
    def decode(cls, data: bytes) -> FilingRequest:
        """ObjectTampered for anything `encode` did not write."""
        try:
            value = json.loads(data.rstrip(b" ").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ObjectTampered("a filing note does not decode") from exc
        if (
            not isinstance(value, dict)
            or value.get("v") != _NOTE_VERSION
            or not isinstance(value.get("m"), str)
            or not isinstance(value.get("c"), bool)
            or not isinstance(value.get("f"), list)
            or not all(isinstance(f, str) for f in value["f"])
        ):
            raise ObjectTampered("a filing note is not one this version wrote")
        return cls(value["m"], value["c"], frozenset(value["f"]))


def _note_context(blob_id: bytes) -> bytes:
    return context(_NOTE_COLUMN, blob_id)


def seal_note(request: FilingRequest, recipient: PublicKeyInfo, blob_id: BlobId) -> bytes:
    """The note as stored: the recipient key's id, then the box sealed to it and bound
    to the message's blob id (a note moved to another row does not open)."""
    return recipient.key_id + seal_box(request.encode(), recipient, _note_context(blob_id))


def open_note(account: UnlockedAccount, sealed: bytes, blob_id: BlobId) -> FilingRequest:
    """The request in a stored note; ObjectTampered if it does not open for this row."""
    try:
        private = account.private_key(sealed[:_KEY_ID])
        return FilingRequest.decode(open_box(sealed[_KEY_ID:], private, _note_context(blob_id)))
    except DecryptionFailed as exc:
        raise ObjectTampered(
            "a filing note failed authentication: it was changed or moved in the database, "
            "or its key pair is gone"
        ) from exc


# -- the holding mailbox ---------------------------------------------------------------


def _holding_id(conn: Connection, user_id: UserId) -> MailboxId | None:
    mb = t.cm_mailboxes
    row = conn.execute(
        select(mb.c.id).where(mb.c.user_id == user_id, mb.c.role == HOLDING_ROLE)
    ).first()
    return None if row is None else MailboxId(int(row.id))


def _make_holding(conn: Connection, user_id: UserId) -> MailboxId:
    found = _holding_id(conn, user_id)
    if found is not None:
        return found
    (uidvalidity,) = _allocate_uidvalidities(conn, user_id, 1)
    # Read again under the counter's lock: a parallel first delivery may have made it.
    found = _holding_id(conn, user_id)
    if found is not None:
        return found
    result = conn.execute(
        t.cm_mailboxes.insert().values(
            user_id=user_id,
            role=HOLDING_ROLE,
            uidvalidity=uidvalidity,
            uidnext=1,
            highest_modseq=1,
            created_at=utcnow(),
        )
    )
    return MailboxId(int(result.inserted_primary_key[0]))  # type: ignore[index]


async def holding_mailbox(engine: AsyncEngine, user_id: UserId) -> MailboxId:
    """The user's holding mailbox, made on first use (no key needed). A parallel
    first delivery that makes it too loses on the unique (user, role) and looks again."""
    found = await run_transaction(engine, lambda conn: _holding_id(conn, user_id), writes=False)
    if found is not None:
        return found
    for attempt in range(_ATTEMPTS):
        try:
            return await run_transaction(engine, lambda conn: _make_holding(conn, user_id))
        except (TransactionAborted, DatabaseConflict):
            if attempt == _ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def insert_note(conn: Connection, user_id: UserId, row_id: int, sealed: bytes) -> None:
    """The note of a row delivery just inserted, in the delivery's transaction."""
    conn.execute(
        t.cm_filing_notes.insert().values(message_id=row_id, user_id=user_id, note_sealed=sealed)
    )


async def pending_notes(engine: AsyncEngine, user_id: UserId) -> int:
    """How many of the user's messages wait in the holding mailbox (no key needed)."""
    notes = t.cm_filing_notes
    query = select(func.count()).select_from(notes).where(notes.c.user_id == user_id)
    return int(await run_transaction(engine, lambda c: c.execute(query).scalar_one(), writes=False))


async def filing_backlog(engine: AsyncEngine) -> tuple[int, int]:
    """(messages, users) waiting for a session to file them, over every user (for
    `cryptmail doctor`; no key needed, and nothing shown but the counts)."""
    notes = t.cm_filing_notes
    query = select(func.count(), func.count(func.distinct(notes.c.user_id))).select_from(notes)
    row = await run_transaction(engine, lambda c: c.execute(query).one(), writes=False)
    return int(row[0]), int(row[1])


# -- applying notes --------------------------------------------------------------------


class _Pending(NamedTuple):
    row_id: MessageId
    request: FilingRequest | None
    """None: the note did not open; the message goes to INBOX without flags."""


def _read_pending(conn: Connection, user_id: UserId) -> list[tuple[int, bytes, bytes]]:
    notes, msg = t.cm_filing_notes, t.cm_messages
    rows = conn.execute(
        select(notes.c.message_id, notes.c.note_sealed, msg.c.blob_id)
        .select_from(notes.join(msg, msg.c.id == notes.c.message_id))
        .where(notes.c.user_id == user_id)
        .order_by(notes.c.message_id)
    )
    return [(int(r.message_id), bytes(r.note_sealed), bytes(r.blob_id)) for r in rows]


def _mailbox_row(conn: Connection, account: UnlockedAccount, name: str) -> MailboxId | None:
    mb = t.cm_mailboxes
    user_id = account.user.id
    role = _role_for(name)
    if role is not None:
        where = mb.c.role == role
    else:
        where = mb.c.name_lookup.in_(name_lookups(account, name))
    rows = conn.execute(
        select(mb.c.id, mb.c.name_lookup).where(mb.c.user_id == user_id, where)
    ).all()
    if not rows:
        return None
    # Two rows only where one name was made twice (once per normal form) before names
    # were normalised: file into the one IMAP would select by this name.
    return MailboxId(int(_named(account, name, rows).id))


def _create_folder(conn: Connection, account: UnlockedAccount, name: str) -> MailboxId:
    """`create_mailbox` in the apply's own (synchronous) transaction."""
    user_id = account.user.id
    (uidvalidity,) = _allocate_uidvalidities(conn, user_id, 1)
    result = conn.execute(
        t.cm_mailboxes.insert().values(
            user_id=user_id,
            role=None,
            name_lookup=account.fields.lookup(name.encode("utf-8"), _name_context(user_id)),
            uidvalidity=uidvalidity,
            uidnext=1,
            highest_modseq=1,
            created_at=utcnow(),
        )
    )
    new_id = MailboxId(int(result.inserted_primary_key[0]))  # type: ignore[index]
    conn.execute(
        update(t.cm_mailboxes)
        .where(t.cm_mailboxes.c.id == new_id)
        .values(name_sealed=_seal_name(account, new_id, name))
    )
    record_user_change(conn, user_id, ChangeKind.MAILBOXES)
    return new_id


def _target(
    conn: Connection, account: UnlockedAccount, item: _Pending
) -> tuple[MailboxId, frozenset[str]]:
    """The folder a note names (found, or made under :create) with the note's flags;
    else INBOX without them, as Pigeonhole's implicit keep after a failed fileinto."""
    inbox = _mailbox_row(conn, account, "INBOX")
    if inbox is None:
        raise StoreError(f"user id {account.user.id} has no INBOX")
    request = item.request
    if request is None:
        return inbox, frozenset()
    try:
        name = check_name(request.mailbox)
    except StoreError:
        return inbox, frozenset()  # a name no folder can have: Pigeonhole fails it too
    # The name as the script gave it: of two folders stored as its two normal forms, the
    # one IMAP selects by that form (`_named`).
    found = _mailbox_row(conn, account, request.mailbox)
    if found is None and request.create and _role_for(name) is None:
        try:
            # The check IMAP CREATE makes: :create makes no name CREATE would refuse.
            _refuse_control_characters(name)
        except StoreError as exc:
            # The reason only: the name is the user's (plaintext of mail, never logged).
            log.warning(
                "user id %d: message id %d goes to INBOX: %s",
                account.user.id,
                item.row_id,
                exc,
            )
            return inbox, frozenset()
        found = _create_folder(conn, account, name)
    if found is None:
        return inbox, frozenset()  # a default folder's row is always there
    return found, request.flags


def _apply_one(
    conn: Connection, account: UnlockedAccount, holding: MailboxId, item: _Pending
) -> MailboxId | None:
    """File one message; its target, or None when another session filed it first."""
    mb, msg, notes = t.cm_mailboxes, t.cm_messages, t.cm_filing_notes
    # The holding mailbox's row first, as delivery into it takes it: every applier of
    # the user queues here (SQLite: the write lock), one lock order with delivery.
    conn.execute(update(mb).where(mb.c.id == holding).values(uidnext=mb.c.uidnext))
    claimed = conn.execute(delete(notes).where(notes.c.message_id == item.row_id))
    if claimed.rowcount == 0:
        return None  # filed meanwhile by another session, here or on another node
    row = conn.execute(
        select(msg.c.mailbox_id, msg.c.size_rounded).where(msg.c.id == item.row_id)
    ).first()
    if row is None or int(row.mailbox_id) != holding:
        return None  # not in the holding mailbox: nothing to move (the note is gone now)
    size = int(row.size_rounded)
    target, flags = _target(conn, account, item)
    bumped = conn.execute(
        update(mb)
        .where(mb.c.id == target)
        .values(
            uidnext=mb.c.uidnext + 1,
            highest_modseq=mb.c.highest_modseq + 1,
            used_bytes=mb.c.used_bytes + size,
            message_count=mb.c.message_count + 1,
        )
    )
    if bumped.rowcount == 0:
        # Deleted (IMAP DELETE) after `_target` found it: on PostgreSQL the update sees
        # the delete its read did not. Roll back; the next attempt looks for it again.
        raise DatabaseConflict("the folder to file into was deleted meanwhile")
    counters = conn.execute(
        select(mb.c.uidnext, mb.c.highest_modseq).where(mb.c.id == target)
    ).one()
    # With flags the row is claimed here, as COPY claims its copies (\Recent: no session
    # has seen it yet); without, it stays unclaimed for the first SELECT as delivered.
    sealed_flags = (
        account.fields.seal(encode_flags(flags | {RECENT_FLAG}), flags_context(item.row_id))
        if flags
        else None
    )
    conn.execute(
        update(msg)
        .where(msg.c.id == item.row_id, msg.c.mailbox_id == holding)
        .values(
            mailbox_id=target,
            uid=int(counters.uidnext) - 1,
            modseq=int(counters.highest_modseq),
            flags_sealed=sealed_flags,
            saved_at=utcnow(),
        )
    )
    conn.execute(
        update(mb)
        .where(mb.c.id == holding)
        .values(used_bytes=mb.c.used_bytes - size, message_count=mb.c.message_count - 1)
    )
    record_mailbox_change(conn, target, ChangeKind.NEW)  # IDLE in the target hears it
    checkpoint("filing:before-commit")
    return target


async def _apply_with_retry(
    engine: AsyncEngine, account: UnlockedAccount, holding: MailboxId, item: _Pending
) -> MailboxId | None:
    for attempt in range(_ATTEMPTS):
        try:
            return await run_transaction(
                engine, lambda conn: _apply_one(conn, account, holding, item)
            )
        except (TransactionAborted, DatabaseConflict):
            # A deadlock victim (MariaDB, PostgreSQL) or a folder made or deleted
            # meanwhile by another session: the next attempt sees the other's commit.
            if attempt == _ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


async def apply_filing_notes(
    engine: AsyncEngine, account: UnlockedAccount, publisher: ChangePublisher | None = None
) -> int:
    """File the user's waiting messages into their folders; how many this call filed.
    One indexed read when none wait (nearly every login)."""
    user_id = account.user.id
    found = await run_transaction(engine, lambda conn: _read_pending(conn, user_id), writes=False)
    if not found:
        return 0
    holding = await run_transaction(engine, lambda conn: _holding_id(conn, user_id), writes=False)
    if holding is None:
        return 0  # notes without a holding mailbox cannot be: their rows live there
    filed = 0
    for row_id, sealed, blob_id in found:
        try:
            request: FilingRequest | None = open_note(account, sealed, BlobId(blob_id))
        except ObjectTampered as exc:
            log.warning("user id %d: message id %d goes to INBOX: %s", user_id, row_id, exc)
            request = None
        target = await _apply_with_retry(
            engine, account, holding, _Pending(MessageId(row_id), request)
        )
        if target is None:
            continue
        filed += 1
        if publisher is not None:
            publisher.publish(user_id, target)
    if filed:
        log.info("user id %d: %d messages filed by Sieve", user_id, filed)
    return filed


class FilingNotes:
    """This process's appliers of filing notes: one at a time per user (sessions of
    one user in one process do not queue at the database for the same notes)."""

    def __init__(self, engine: AsyncEngine, publisher: ChangePublisher | None = None) -> None:
        self._engine = engine
        self._publisher = publisher
        self._locks: dict[UserId, asyncio.Lock] = {}
        self._holding: dict[UserId, MailboxId] = {}
        self._other: dict[UserId, set[int]] = {}
        """Mailbox ids known not to be the user's holding mailbox (made before it)."""

    async def apply(self, account: UnlockedAccount) -> int:
        """`apply_filing_notes` for the user. Never raises for a database or store
        failure (a login must not fail because of a note): logs it; the next one
        retries."""
        user_id = account.user.id
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        try:
            async with lock:
                return await apply_filing_notes(self._engine, account, self._publisher)
        except (CryptmailError, OSError):
            log.exception("user id %d: Sieve filing notes not applied", user_id)
            return 0

    async def heard(self, account: UnlockedAccount, mailbox_ids: Iterable[int]) -> int:
        """Apply the notes if one of `mailbox_ids` (a session's change wake-ups) is the
        user's holding mailbox, or 0 (a rescan after missed changes). Never raises for a
        database or store failure, as `apply`."""
        wanted = set(mailbox_ids)
        if not wanted:
            return 0
        user_id = account.user.id
        holding = self._holding.get(user_id)
        if holding is None:
            others = self._other.setdefault(user_id, set())
            if wanted <= others:
                return 0  # a user who never had mail filed: no query per wake-up
            try:
                holding = await run_transaction(
                    self._engine, lambda conn: _holding_id(conn, user_id), writes=False
                )
            except (CryptmailError, OSError):
                # IDLE goes on; the next wake-up or login files the message.
                log.exception("user id %d: the holding mailbox was not looked up", user_id)
                return 0
            if holding is None:
                others |= wanted - {0}
                return 0
            self._holding[user_id] = holding
            self._other.pop(user_id, None)
        if holding in wanted or 0 in wanted:
            return await self.apply(account)
        return 0
