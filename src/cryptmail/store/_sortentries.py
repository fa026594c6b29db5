"""Sort entries from delivery: a message's sort fields, sealed by the process that
delivered it, so a session's first SORT needs no ECDH per message.

    epoch    = (id random 62 bits, user id, key id, wrapped, created_at)
    wrapped  = seal_box(K, user's public key, context("sort-epoch", user id, epoch id))
    entry    = (message row id, epoch id, sealed)
    sealed   = FieldCipher(K).seal(plain, context("sort-entry", user id, epoch id,
                                                   row id, blob id))
    plain    = u8(version) || u64(size) || u32(len(payload)) || payload || 0x00 * pad
    payload  = version 2: `sortkeys.encode_ready_keys` of the message's keys, made
               once per message from its header (what SORT and THREAD compare,
               ready: the first SORT only decodes them)
               version 1 (written before): `_sortfields.header_sort_fields` of the
               header, whose keys the session makes (`sortkeys.sort_keys`)

Delivery holds only the user's public key. A delivery process makes a random key K
for a user the first time it delivers to them (one ECDH: the wrap), inserts the epoch
row in the SAME transaction as that delivery, and keeps K in memory (only once that
transaction committed: a rolled-back epoch is never used again) for at most
EPOCH_LIFETIME_S and for the EPOCH_USERS users delivered to last; then a new one. Each
copy's entry is one AES-GCM seal under K, written in the message row's transaction, so
entry and message commit together or not at all. The keys are made once per message,
whatever the number of recipients.

A session holding the private key opens an epoch once (its ciphers are kept with the
unlocked account, gone with it) and each entry with one AEAD open (`take_sort_entries`,
which hands back a version 2 entry's keys as bytes in a `ReadyBlock`, decoded as far as
a SORT asks, and makes a version 1 entry's); a mailbox's entries are read in one query
when many are asked for. The keys go into the mailbox's sort chunks, and writing a
chunk deletes the entries of every row it holds (`drop_folded`). An entry that does
not open (changed, moved to another row, or its epoch gone or sealed to a key the
account no longer holds) is deleted, logged by row id, and its message done the slow
way.

The plaintext is padded to a power of two (at least 256 bytes): a database reader sees
one entry per delivered message (as the message rows show anyway), its size class, and
which messages came through one delivery process in one period (per-process, not
per-message, so little). Epochs without entries are deleted when older than
EPOCH_KEEP (far beyond EPOCH_LIFETIME_S, so never one a process still writes to; an
entry written to an epoch deleted anyway just fails to open: no foreign key, so a
delivery never fails for it).
"""

from __future__ import annotations

import logging
import secrets
import struct
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.crypto import FieldCipher, PublicKeyInfo, context, new_data_key, open_box, seal_box
from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import CryptmailError, DatabaseUnavailable
from cryptmail.keys import UnlockedAccount
from cryptmail.store._ids import BlobId, MessageId
from cryptmail.store.sortkeys import (
    ReadyBlock,
    SortKeys,
    SortMemo,
    encode_ready_keys,
    sort_keys,
)

if TYPE_CHECKING:  # for annotations only: _messages imports _append, which imports us
    from cryptmail.store._messages import MessageRow

log = logging.getLogger(__name__)

EPOCH_LIFETIME_S: Final = 600.0
"""Longest a delivery process keeps one epoch key (then it makes a new one)."""
EPOCH_USERS: Final = 1024
"""Users whose epoch keys a delivery process keeps at once (the last delivered to)."""
EPOCH_KEEP: Final = timedelta(hours=1)
"""An epoch with no entry left is deleted once this old (never one still in use)."""

# Built once: building and keying a statement costs more than SQLite takes to run it.
_INSERT_EPOCH: Final = t.cm_sort_epochs.insert()
_INSERT_ENTRY: Final = t.cm_sort_entries.insert()
RECORD_ENTRY: Final = 1
"""An entry holding the raw sort field record (written before keys were made here)."""
KEYS_ENTRY: Final = 2
"""An entry holding the message's keys ready (`sortkeys.encode_ready_keys`)."""
_VERSIONS: Final = frozenset({RECORD_ENTRY, KEYS_ENTRY})
_HEAD: Final = struct.Struct(">BQI")
_MIN_PADDED: Final = 256
_BATCH: Final = 500


def _padded_size(size: int) -> int:
    return max(_MIN_PADDED, 1 << (size - 1).bit_length())


def _epoch_context(user_id: int, epoch_id: int) -> bytes:
    return context("sort-epoch", user_id, epoch_id)


def _entry_context(user_id: int, epoch_id: int, row_id: int, blob_id: bytes) -> bytes:
    return context("sort-entry", user_id, epoch_id, row_id, blob_id)


def encode_entry(size: int, payload: bytes, version: int = KEYS_ENTRY) -> bytes:
    """The padded plaintext of an entry."""
    plain = _HEAD.pack(version, size, len(payload)) + payload
    return plain + bytes(_padded_size(len(plain)) - len(plain))


def decode_entry(plain: bytes) -> tuple[int, int, bytes]:
    """(version, size, payload); ValueError when it is not an entry of a version this
    code reads."""
    if len(plain) < _HEAD.size:
        raise ValueError("sort entry is truncated")
    version, size, length = _HEAD.unpack_from(plain)
    end = _HEAD.size + length
    if version not in _VERSIONS or end > len(plain) or plain.count(0, end) != len(plain) - end:
        raise ValueError("sort entry has a bad version, length or padding")
    return version, size, plain[_HEAD.size : end]


# -- delivery --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _Epoch:
    id: int
    user_id: UserId
    key_id: bytes
    cipher: FieldCipher
    made: float
    """time.monotonic() when it was made."""


@dataclass(frozen=True, repr=False)
class EpochUse:
    """An epoch one delivery writes its entry under; ``row`` is set when the epoch is
    new (the delivery's transaction inserts it)."""

    epochs: DeliveryEpochs
    epoch: _Epoch
    row: dict[str, object] | None

    def __repr__(self) -> str:
        return f"EpochUse(user={self.epoch.user_id}, new={self.row is not None})"


class DeliveryEpochs:
    """This delivery process's epoch keys: one per user delivered to lately, bounded in
    age and number."""

    def __init__(self, lifetime: float = EPOCH_LIFETIME_S, users: int = EPOCH_USERS) -> None:
        self._lifetime = lifetime
        self._users = users
        self._held: OrderedDict[UserId, _Epoch] = OrderedDict()

    def __repr__(self) -> str:
        return f"DeliveryEpochs(users={len(self._held)})"

    def __len__(self) -> int:
        return len(self._held)

    def use(self, user_id: UserId, recipient: PublicKeyInfo) -> EpochUse:
        """The epoch to seal this user's next entry under: the one held (if young
        enough and for the same public key), else a new one (one ECDH)."""
        held = self._held.get(user_id)
        now = time.monotonic()
        if held is not None:
            if now - held.made < self._lifetime and held.key_id == recipient.key_id:
                self._held.move_to_end(user_id)
                return EpochUse(self, held, None)
            del self._held[user_id]  # forgotten now, not only when replaced
        key = new_data_key()
        epoch_id = secrets.randbits(62) + 1
        epoch = _Epoch(epoch_id, user_id, recipient.key_id, FieldCipher(key), now)
        wrapped = seal_box(key, recipient, _epoch_context(user_id, epoch_id))
        row = {
            "id": epoch_id,
            "user_id": user_id,
            "key_id": recipient.key_id,
            "wrapped": wrapped,
            "created_at": utcnow(),
        }
        return EpochUse(self, epoch, row)

    def keep(self, use: EpochUse) -> None:
        """After the transaction that inserted ``use``'s new epoch committed: hold it."""
        if use.row is None:
            return
        epoch = use.epoch
        self._held[epoch.user_id] = epoch
        self._held.move_to_end(epoch.user_id)
        while len(self._held) > self._users:
            self._held.popitem(last=False)


@dataclass(frozen=True, repr=False)
class SortFields:
    """What delivery writes a sort entry from: the message's record and the process's
    epochs; the keys are made from the record once (on the first copy), whatever the
    number of copies."""

    epochs: DeliveryEpochs
    record: bytes = field(repr=False)

    @cached_property
    def ready(self) -> bytes:
        """`sortkeys.encode_ready_keys` of the message's keys."""
        return encode_ready_keys(sort_keys(self.record))


def write_sort_entry(
    conn: Connection, use: EpochUse, row_id: int, blob_id: BlobId, size: int, ready: bytes
) -> None:
    """Insert the entry of a message row just inserted (and the epoch, when new), in
    the caller's transaction."""
    epoch = use.epoch
    if use.row is not None:
        conn.execute(_INSERT_EPOCH, use.row)
    sealed = epoch.cipher.seal(
        encode_entry(size, ready), _entry_context(epoch.user_id, epoch.id, row_id, blob_id)
    )
    conn.execute(_INSERT_ENTRY, {"message_id": row_id, "epoch_id": epoch.id, "sealed": sealed})


# -- a session ----------------------------------------------------------------------------

_Opened = dict[int, FieldCipher | None]
_Found = tuple[MessageId, int, bytes]
"""(row id, epoch id, sealed) of one entry."""
_opened: dict[int, tuple[weakref.ref[UnlockedAccount], _Opened]] = {}
"""Opened epochs by id of the account object (not hashable), gone with it."""
_BY_MAILBOX: Final = 2 * _BATCH
"""From this many rows asked on, the mailbox's entries are read in one query (and
those not asked for left): 20 queries of 500 ids cost twice the reading."""


@dataclass(frozen=True)
class TakenEntries:
    """What a session took from delivery's sort entries: the keys of version 2 entries
    ready (decoded as a SORT asks), those of version 1 entries made."""

    ready: ReadyBlock
    made: list[tuple[int, SortKeys]]
    """(uid, keys) made from a version 1 entry's record."""

    def uids(self) -> set[int]:
        return {*self.ready.uids, *(uid for uid, _keys in self.made)}


def _nothing_taken() -> TakenEntries:
    return TakenEntries(ReadyBlock(()), [])  # a new one each time: its list is the caller's


def _opened_of(account: UnlockedAccount) -> _Opened:
    key = id(account)
    found = _opened.get(key)
    if found is not None and found[0]() is account:
        return found[1]

    def gone(ref: weakref.ref[UnlockedAccount]) -> None:
        held = _opened.get(key)
        if held is not None and held[0] is ref:
            del _opened[key]

    opened: _Opened = {}
    _opened[key] = (weakref.ref(account, gone), opened)
    return opened


def _open_epochs(account: UnlockedAccount, rows: Sequence[tuple[int, bytes, bytes]]) -> _Opened:
    out: _Opened = {}
    for epoch_id, key_id, wrapped in rows:
        try:
            private = account.private_key(key_id)
            key = open_box(wrapped, private, _epoch_context(account.user.id, epoch_id))
            out[epoch_id] = FieldCipher(key)
        except (CryptmailError, ValueError):
            out[epoch_id] = None
    return out


_PART_LENGTH: Final = struct.Struct(">H")


def _entry_contexts(
    user_id: int, found: Sequence[_Found], blobs: Mapping[MessageId, BlobId]
) -> list[bytes]:
    """:func:`_entry_context` of each entry, the constant parts encoded once per epoch
    (the whole encoding per entry was a sixth of a first SORT's opening of 10,000)."""
    heads: dict[int, bytes] = {}
    pack = _PART_LENGTH.pack
    out: list[bytes] = []
    for row_id, epoch_id, _sealed in found:
        head = heads.get(epoch_id)
        if head is None:
            head = heads[epoch_id] = context("sort-entry", user_id, epoch_id)
        digits = str(row_id).encode("ascii")
        blob_id = blobs[row_id]
        out.append(b"".join((head, pack(len(digits)), digits, pack(len(blob_id)), blob_id)))
    return out


def _open_entries(
    account: UnlockedAccount,
    found: Sequence[_Found],
    rows: Mapping[MessageId, MessageRow],
    ciphers: _Opened,
) -> tuple[TakenEntries, list[MessageId]]:
    """The entries opened (version 2 kept as bytes, version 1 made into keys), and the
    row ids of those that did not open."""
    ready: list[tuple[int, int, float, bytes]] = []
    made: list[tuple[int, SortKeys]] = []
    memo = SortMemo()  # this call's only: it holds plaintext values (version 1 entries)
    bad: list[MessageId] = []
    contexts = _entry_contexts(
        account.user.id, found, {row_id: rows[row_id].blob_id for row_id, _e, _s in found}
    )
    for (row_id, epoch_id, sealed), entry_context in zip(found, contexts, strict=True):
        cipher = ciphers.get(epoch_id)
        try:
            if cipher is None:
                raise ValueError("epoch missing or not opened")
            version, size, payload = decode_entry(cipher.open(sealed, entry_context))
            row = rows[row_id]
            arrival = row.internal_date.timestamp()
            if version == KEYS_ENTRY:
                ready.append((row.uid, size, arrival, payload))
            else:
                keys = sort_keys(payload, memo)._replace(size=size, arrival=arrival)
                made.append((row.uid, keys))
        except (CryptmailError, ValueError):
            bad.append(row_id)
    return TakenEntries(ReadyBlock(ready), made), bad


async def take_sort_entries(
    engine: AsyncEngine, account: UnlockedAccount, rows: Sequence[MessageRow]
) -> TakenEntries:
    """The keys in the delivery entries of ``rows`` (each taken only for the row, and
    mailbox, it names) that open; each key's ``arrival`` is its row's internal date.
    An entry that does not open is deleted (logged by row id): its message is done
    the slow way."""
    if not rows:
        return _nothing_taken()
    e, ep, m = t.cm_sort_entries, t.cm_sort_epochs, t.cm_messages
    asked = {row.id: row for row in rows}
    boxes = sorted({row.mailbox_id for row in rows})
    ids = sorted(asked)
    cache = _opened_of(account)
    columns = (e.c.message_id, e.c.epoch_id, e.c.sealed)
    in_boxes = m.c.mailbox_id.in_(boxes)

    def read(conn: Connection) -> tuple[list[_Found], list[tuple[int, bytes, bytes]]]:
        found: list[_Found] = []
        joined = select(*columns).join(m, m.c.id == e.c.message_id)
        if len(ids) >= _BY_MAILBOX:
            parts = [joined.where(in_boxes)]
        else:
            parts = [
                joined.where(in_boxes, e.c.message_id.in_(ids[start : start + _BATCH]))
                for start in range(0, len(ids), _BATCH)
            ]
        for query in parts:
            found += [
                (MessageId(row_id), int(epoch), bytes(sealed))
                for row_id, epoch, sealed in conn.execute(query)
                if row_id in asked
            ]
        wanted = sorted({epoch for _row, epoch, _sealed in found} - set(cache))
        epochs: list[tuple[int, bytes, bytes]] = []
        for start in range(0, len(wanted), _BATCH):
            query = select(ep.c.id, ep.c.key_id, ep.c.wrapped).where(
                ep.c.id.in_(wanted[start : start + _BATCH]), ep.c.user_id == account.user.id
            )
            epochs += [
                (int(epoch), bytes(key_id), bytes(wrapped))
                for epoch, key_id, wrapped in conn.execute(query)
            ]
        return found, epochs

    found, epochs = await run_transaction(engine, read, writes=False)
    if not found:
        return _nothing_taken()
    if epochs:
        cache.update(await run_blocking(_open_epochs, account, epochs))
    ciphers = {epoch: cache.get(epoch) for _row, epoch, _sealed in found}
    taken, bad = await run_blocking(_open_entries, account, found, asked, ciphers)
    if bad:
        log.warning(
            "user %d: %d sort entries from delivery did not open (rows %s); deleted, "
            "those messages are sorted the slow way",
            account.user.id, len(bad), ", ".join(str(row) for row in bad[:20]),
        )  # fmt: skip

        def drop(conn: Connection) -> None:
            for start in range(0, len(bad), _BATCH):
                conn.execute(delete(e).where(e.c.message_id.in_(bad[start : start + _BATCH])))

        try:
            await run_transaction(engine, drop)
        except CryptmailError as exc:  # deleted next time; the answer does not depend on it
            log.warning("user %d: sort entries not deleted (%s)", account.user.id, exc)
    return taken


def drop_folded(conn: Connection, rows: Collection[int]) -> None:
    """In the transaction writing sort chunks that hold ``rows``' keys, after it locked
    the mailbox row: delete their delivery entries (by key, in order)."""
    e = t.cm_sort_entries
    ids = sorted(rows)
    for start in range(0, len(ids), _BATCH):
        conn.execute(delete(e).where(e.c.message_id.in_(ids[start : start + _BATCH])))


async def drop_spent_epochs(engine: AsyncEngine, user_id: UserId) -> None:
    """Delete the user's epochs with no entry left once older than EPOCH_KEEP, in a
    transaction of its own: its scan of the entries' epoch index must not sit in one
    that holds a mailbox lock (a delivery inserting an epoch and then locking that
    mailbox would deadlock with it on MariaDB). Best effort: an epoch left is only a
    row, deleted next time."""
    e, ep = t.cm_sort_entries, t.cm_sort_epochs

    spent = ~exists().where(e.c.epoch_id == ep.c.id)

    def find(conn: Connection) -> list[int]:
        # A plain read first (no locks): most folds find none, and then nothing locks.
        old = ep.c.created_at < utcnow() - EPOCH_KEEP
        return [
            int(r.id)
            for r in conn.execute(select(ep.c.id).where(ep.c.user_id == user_id, old, spent))
        ]

    def work(conn: Connection) -> None:
        # By key: the rows locked are these epochs only, which no delivery writes to.
        conn.execute(delete(ep).where(ep.c.id.in_(ids), spent))

    try:
        ids = await run_transaction(engine, find, writes=False)
        if ids:
            await run_transaction(engine, work)
    except DatabaseUnavailable as exc:
        log.info("spent sort epochs of user %d left for next time: %s", user_id, exc)


async def sort_entry_count(engine: AsyncEngine, user_id: UserId) -> tuple[int, int]:
    """(entries, epochs) of the user (for tests and `store check`)."""
    e, ep, m, b = t.cm_sort_entries, t.cm_sort_epochs, t.cm_messages, t.cm_mailboxes

    def work(conn: Connection) -> tuple[int, int]:
        entries = conn.execute(
            select(e.c.message_id)
            .select_from(e.join(m, m.c.id == e.c.message_id).join(b, b.c.id == m.c.mailbox_id))
            .where(b.c.user_id == user_id)
        ).all()
        epochs = conn.execute(select(ep.c.id).where(ep.c.user_id == user_id)).all()
        return len(entries), len(epochs)

    return await run_transaction(engine, work, writes=False)
