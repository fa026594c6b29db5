"""Importing a Dovecot Maildir (plain or mail-crypt encrypted) into a user's store.

What a client sees afterwards is what Dovecot showed it: the same folders, UIDVALIDITY
and UIDs (so nothing is downloaded again), flags, keywords, internal dates (file mtimes)
and bytes. Dovecot keeps LF line ends on disk and serves CRLF; we store what it served:
every LF not preceded by CR becomes CRLF, a file that has CRLF already is kept as it is.
Messages in `new/` arrive with \\Recent (the first session that opens the folder claims
it), those in `cur/` without.

Each message is decrypted (every check before the first byte, see
`crypto.dovecot.read_dovecot_file`), stored per the user's `crypt` setting (sealed to
the public key, or plain) and indexed under the data key; a sealed copy's sort entry
goes in with its row (`_import_entries`), so the first SORT need not read it. UIDs
are kept when the target folder is empty or carries the Maildir's UIDVALIDITY (an
earlier run of this import, or the staging of a first-login import, set it): the
folder's UIDNEXT is then raised to the uidlist's at once, so mail delivered during
the import takes UIDs above every UID of the uidlist, and each listed UID no other
message holds is kept. Otherwise (the folder had other mail under another
UIDVALIDITY) the message gets a new UID (counted as renumbered), as do files the
uidlist does not name.

Resumable and idempotent: rows and journal entries commit in one transaction per batch.
The journal (`cm_jobs`, kind "import") holds, per batch, a keyed hash (under the data
key) of folder name and Maildir base name, sealed: it tells nothing about the mail. A
rerun skips what the journal has. A crash between blob and row leaves orphan blobs that
`store check --fix` removes.

Format v1 files (and v2 without integrity) have no authentication: they are imported
when `allow_unauthenticated` (the default: they were the user's mail all along, and
refusing them would lose it) and counted in `ImportProgress.unverified`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Update, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.crypto.dovecot import (
    DovecotKeyring,
    Uidlist,
    read_dovecot_file,
    read_dovecot_header,
)
from cryptmail.db import UserId, run_transaction, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import (
    CryptoError,
    DecryptionFailed,
    DovecotFormatError,
    MailboxNotFound,
    ObjectTampered,
    StoreError,
)
from cryptmail.keys import UnlockedAccount, checkpoint
from cryptmail.store._append import StoredBlob, insert_row, write_blob
from cryptmail.store._codec import MessageCache, encode_flags, flags_context, round_size
from cryptmail.store._ids import MailboxId, MessageId
from cryptmail.store._import_entries import prepare_entries, sort_fields_of, tap_header
from cryptmail.store._mailboxes import (
    Mailbox,
    create_mailbox,
    ensure_default_mailboxes,
    get_mailbox,
)
from cryptmail.store._maildir import MaildirMessage, flags_from_info, scan_maildir
from cryptmail.store._messages import RECENT_FLAG, MessageRow, _cache_context
from cryptmail.store._sortentries import DeliveryEpochs, SortFields
from cryptmail.store._sortfields import SortHeader
from cryptmail.store.blobs import BlobStore

log = logging.getLogger(__name__)

JOURNAL_KIND = "import"
_ENTRY_SIZE = 16
BATCH_MESSAGES = 32
BATCH_BYTES = 8 << 20


@dataclass(frozen=True)
class ImportProgress:
    """Totals so far. `done_*` counts skipped messages too, so it ends at `total_*`.

    `skipped`: already imported by an earlier run; `renumbered`: got a new UID;
    `unverified`: format without integrity (v1); `failed`: unreadable and left out
    (only with `skip_unreadable`); `missing`: in the uidlist but no file (Dovecot would
    drop them too).
    """

    done_messages: int = 0
    done_bytes: int = 0
    total_messages: int = 0
    total_bytes: int = 0
    folders: int = 0
    imported: int = 0
    skipped: int = 0
    renumbered: int = 0
    unverified: int = 0
    failed: int = 0
    missing: int = 0


@dataclass
class Pending:
    message: MaildirMessage
    blob: StoredBlob
    uid: int | None
    flags: frozenset[str]
    entry: bytes
    sort_fields: SortFields | None = field(default=None, repr=False)
    """The header's sort field record (plaintext: in memory only) when the blob is
    sealed: `commit_batch` writes the message's sort entry from it."""


@dataclass
class FolderState:
    """The target folder's state while its messages go in."""

    mailbox: Mailbox
    reserved_below: int
    """UIDs below this (the uidlist's next UID) are the Maildir's; 0: keep none."""
    taken: set[int]
    """UIDs of the folder's rows below `reserved_below`."""
    pending: list[Pending] = field(default_factory=list)

    @property
    def pending_bytes(self) -> int:
        return sum(p.blob.size for p in self.pending)


def _journal_context(user_id: UserId) -> bytes:
    return b"import-journal|%d" % user_id


def journal_entry(account: UnlockedAccount, folder: str, base: str) -> bytes:
    """The journal's name for one Maildir file of one folder: a keyed hash."""
    value = folder.encode("utf-8") + b"\x00" + base.encode("utf-8", "surrogateescape")
    context = b"import-entry|%d" % account.user.id
    return account.fields.lookup(value, context)[:_ENTRY_SIZE]


async def load_journal(conn: AsyncConnection, account: UnlockedAccount) -> set[bytes]:
    """Every entry the user's import journal holds."""
    rows = await conn.execute(
        select(t.cm_jobs.c.state_sealed).where(
            t.cm_jobs.c.user_id == account.user.id, t.cm_jobs.c.kind == JOURNAL_KIND
        )
    )
    entries: set[bytes] = set()
    context = _journal_context(account.user.id)
    for row in rows:
        if row.state_sealed is None:
            continue
        data = account.fields.open(bytes(row.state_sealed), context)
        entries.update(data[i : i + _ENTRY_SIZE] for i in range(0, len(data), _ENTRY_SIZE))
    return entries


def to_crlf(piece: bytes, after_cr: bool) -> bytes:
    """Bare LF to CRLF, as Dovecot serves a Maildir file; `after_cr`: the byte before
    `piece` was CR (so a leading LF is already part of a CRLF)."""
    head = b""
    if after_cr and piece.startswith(b"\n"):
        head, piece = b"\n", piece[1:]
    return head + piece.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def crlf_source(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    after_cr = False
    for piece in pieces:
        if not piece:
            continue
        yield to_crlf(piece, after_cr)
        after_cr = piece.endswith(b"\r")


@dataclass
class OpenedMail:
    fileobj: BinaryIO
    pieces: Iterator[bytes]
    unverified: bool


def open_mail(path: Path, keyring: DovecotKeyring, allow_unauthenticated: bool) -> OpenedMail:
    fileobj = open(path, "rb")  # closed by the caller, after streaming
    try:
        header = read_dovecot_header(fileobj)
        fileobj.seek(0)
        unverified = header is not None and not header.authenticated
        pieces = read_dovecot_file(fileobj, keyring, allow_unauthenticated=allow_unauthenticated)
    except BaseException:
        fileobj.close()
        raise
    return OpenedMail(fileobj, pieces, unverified)


def _internal_date(mtime: float) -> datetime:
    return datetime.fromtimestamp(int(mtime), UTC).replace(tzinfo=None)


async def _target(conn: AsyncConnection, account: UnlockedAccount, name: str) -> Mailbox:
    await ensure_default_mailboxes(conn, account.user.id)
    try:
        return await get_mailbox(conn, account, name)
    except MailboxNotFound:
        return await create_mailbox(conn, account, name)


async def reserve_uids(conn: AsyncConnection, mailbox: Mailbox, uidlist: Uidlist) -> int:
    """Give the folder the uidlist's UIDVALIDITY and raise its UIDNEXT to the uidlist's,
    if it is empty or has that UIDVALIDITY already; the UIDs reserved below (0: none).

    From then on a delivery takes a UID above every UID of the uidlist, so the import
    keeps Dovecot's UIDs however much mail arrives meanwhile."""
    mb, msg = t.cm_mailboxes, t.cm_messages
    # The folder row's lock first, as a delivery takes it (on SQLite this write begins
    # the transaction and takes the write lock): a delivery in flight commits before we
    # look, and later ones wait for our UIDNEXT. The look is a locking read, which on
    # MariaDB sees that delivery where the transaction's snapshot would not. Without
    # them a folder with a message just delivered took Dovecot's UIDVALIDITY and UIDs.
    await conn.execute(update(mb).where(mb.c.id == mailbox.id).values(uidnext=mb.c.uidnext))
    if mailbox.uidvalidity != uidlist.uid_validity:
        held = (
            await conn.execute(
                select(msg.c.id)
                .where(msg.c.mailbox_id == mailbox.id)
                .limit(1)
                .with_for_update(read=True)
            )
        ).first()
        if held is not None:
            return 0
    await conn.execute(
        update(mb).where(mb.c.id == mailbox.id).values(uidvalidity=uidlist.uid_validity)
    )
    await conn.execute(
        update(mb)
        .where(mb.c.id == mailbox.id, mb.c.uidnext < uidlist.next_uid)
        .values(uidnext=uidlist.next_uid)
    )
    return uidlist.next_uid


async def prepare_folder(
    engine: AsyncEngine, account: UnlockedAccount, name: str, uidlist: Uidlist | None
) -> FolderState:
    """The folder `name` (made if missing) with Dovecot's UIDs reserved in it."""
    async with engine.begin() as conn:
        mailbox = await _target(conn, account, name)
        reserved = 0
        if uidlist is not None:
            reserved = await reserve_uids(conn, mailbox, uidlist)
        msg = t.cm_messages
        taken = {
            int(uid)
            for uid in (
                await conn.execute(
                    select(msg.c.uid)
                    .where(msg.c.mailbox_id == mailbox.id, msg.c.uid < reserved)
                    .with_for_update(read=True)  # MariaDB: not the snapshot, see reserve_uids
                )
            ).scalars()
        }
    return FolderState(mailbox, reserved, taken)


async def commit_batch(engine: AsyncEngine, account: UnlockedAccount, state: FolderState) -> None:
    """Rows, flags, sort entries (`_import_entries`) and the journal entries of the
    pending batch: one transaction."""
    if not state.pending:
        return
    mailbox_id = MailboxId(state.mailbox.id)
    # Wrapped to the active key: the one `import_maildir` seals to, and one the
    # account opens whichever key a staged import's blobs were sealed to.
    entries = await prepare_entries(
        account.user.id, account.active_key, [(p.blob, p.sort_fields) for p in state.pending]
    )
    async with engine.begin() as conn:
        inserted: list[tuple[int, StoredBlob]] = []
        for item in state.pending:
            date = _internal_date(item.message.mtime)
            row_id, uid, modseq = await insert_row(conn, mailbox_id, item.blob, date, uid=item.uid)
            inserted.append((row_id, item.blob))
            row = MessageRow(
                id=MessageId(row_id),
                mailbox_id=mailbox_id,
                uid=uid,
                modseq=modseq,
                blob_id=item.blob.blob_id,
                sealed=item.blob.sealed,
                size_rounded=round_size(item.blob.size),
                internal_date=date,
                flags=item.flags,
                indexed=False,
                claimed=False,
            )
            # First flags only, no cache: a row without one is what the background
            # search pass looks for (`store.fulltext.user_messages`), and from its one
            # read of the blob it seals the whole cache (key, size and the analysis
            # FETCH, SORT and THREAD need) along with the words. A cache of size and
            # key alone, as imports wrote before, hid the row from the pass.
            recent = frozenset({RECENT_FLAG}) if item.message.in_new else frozenset()
            await conn.execute(_first_flags(account, row, recent))
        if entries is not None:
            await conn.run_sync(entries.write, inserted)
        await conn.execute(
            t.cm_jobs.insert().values(
                user_id=account.user.id,
                kind=JOURNAL_KIND,
                state_sealed=account.fields.seal(
                    b"".join(p.entry for p in state.pending), _journal_context(account.user.id)
                ),
                updated_at=utcnow(),
            )
        )
        checkpoint("import:before-commit")
    if entries is not None:
        entries.keep()
    checkpoint("import:after-commit")
    state.pending.clear()


def _first_flags(account: UnlockedAccount, row: MessageRow, recent: frozenset[str]) -> Update:
    msg = t.cm_messages
    sealed = account.fields.seal(encode_flags(row.flags | recent), flags_context(row.id))
    return (
        update(msg)
        .where(msg.c.id == row.id, msg.c.flags_sealed.is_(None))
        .values(flags_sealed=sealed)
    )


async def drop_bare_caches(engine: AsyncEngine, account: UnlockedAccount) -> int:
    """Forget the caches that imports before issue 16 wrote: exact size and message key,
    without the analysis; the count forgotten.

    The background pass seals a cache only where a row has none, so it never came to
    these rows, and SORT, THREAD and FETCH ENVELOPE read their blobs. Without the cache
    the pass does them as it does new mail, from the one read it makes for the words.
    Only short sealed caches are opened (one without an analysis is at most a message
    key long); each is cleared only if it is still the one read, so a cache a session
    wrote meanwhile stays. One that does not open is left for the readers to report.
    """
    user_id = account.user.id
    msg, mb = t.cm_messages, t.cm_mailboxes
    bare = MessageCache(0, bytes(32)).encode()
    longest = len(account.fields.seal(bare, _cache_context(0)))
    query = (
        select(msg.c.id, msg.c.cache_sealed)
        .select_from(msg.join(mb, msg.c.mailbox_id == mb.c.id))
        .where(mb.c.user_id == user_id, func.length(msg.c.cache_sealed) <= longest)
    )

    def work(conn: Connection) -> int:
        dropped = 0
        for row_id, sealed in conn.execute(query).all():
            try:
                cache = MessageCache.decode(
                    account.fields.open(bytes(sealed), _cache_context(int(row_id)))
                )
            except (DecryptionFailed, ObjectTampered):
                continue
            if cache.extra:
                continue
            cleared = conn.execute(
                update(msg)
                .where(msg.c.id == row_id, msg.c.cache_sealed == sealed)
                .values(cache_sealed=None)
            )
            dropped += cleared.rowcount
        return dropped

    dropped = await run_transaction(engine, work, retry=True)
    if dropped:
        log.info("user id %d: %d imported message caches left for the pass", user_id, dropped)
    return dropped


def unreadable(folder_number: int, message: MaildirMessage, exc: Exception) -> StoreError:
    where = f"{'new' if message.in_new else 'cur'}/{message.base}"
    return StoreError(
        f"the message file {where} of folder #{folder_number} could not be read ({exc}); "
        "check the key or password, or run again with --skip-unreadable to leave it out"
    )


async def import_maildir(
    engine: AsyncEngine,
    blobs: BlobStore,
    account: UnlockedAccount,
    root: Path,
    keyring: DovecotKeyring,
    *,
    allow_unauthenticated: bool = True,
    skip_unreadable: bool = False,
) -> AsyncIterator[ImportProgress]:
    """Import every folder of the Maildir at `root`; yields progress after each message
    (the first yield, before any work, carries the totals).

    Raises DovecotFormatError (a broken uidlist or folder name), StoreError (a file that
    does not decrypt: wrong key, tampered; unless `skip_unreadable`), OSError.
    """
    folders = await run_blocking(scan_maildir, root)
    # Imports before issue 16 left caches the pass skips: a rerun hands them to it.
    await drop_bare_caches(engine, account)
    recipient = account.active_key if account.user.crypt == 2 else None
    epochs = DeliveryEpochs() if recipient is not None else None  # sort entries: sealed only
    async with engine.connect() as conn:
        journal = await load_journal(conn, account)
    progress = ImportProgress(
        total_messages=sum(len(f.messages) for f in folders),
        total_bytes=sum(m.size for f in folders for m in f.messages),
        folders=len(folders),
    )
    yield progress
    for number, folder in enumerate(folders, start=1):
        state = await prepare_folder(engine, account, folder.name, folder.uidlist)
        uids = folder.uids()
        present = {m.base for m in folder.messages}
        progress = replace(
            progress, missing=progress.missing + sum(1 for b in uids if b not in present)
        )
        # Messages the uidlist names, in UID order, then the others in name order (the
        # order Dovecot would give them UIDs in).
        ordered = sorted(
            folder.messages, key=lambda m: (m.base not in uids, uids.get(m.base, 0), m.base)
        )
        for message in ordered:
            entry = journal_entry(account, folder.name, message.base)
            if entry in journal:
                progress = replace(
                    progress,
                    done_messages=progress.done_messages + 1,
                    done_bytes=progress.done_bytes + message.size,
                    skipped=progress.skipped + 1,
                )
                yield progress
                continue
            uid = uids.get(message.base)
            if uid is not None and (uid >= state.reserved_below or uid in state.taken):
                progress = replace(progress, renumbered=progress.renumbered + 1)
                uid = None
            try:
                opened = await run_blocking(open_mail, message.path, keyring, allow_unauthenticated)
            except (CryptoError, DovecotFormatError) as exc:
                if not skip_unreadable:
                    raise unreadable(number, message, exc) from exc
                log.warning("import: folder #%d file %s left out: %s", number, message.base, exc)
                progress = replace(
                    progress,
                    done_messages=progress.done_messages + 1,
                    done_bytes=progress.done_bytes + message.size,
                    failed=progress.failed + 1,
                )
                yield progress
                continue
            header = SortHeader()
            stream = crlf_source(opened.pieces)
            try:
                blob = await write_blob(
                    blobs, recipient, stream if epochs is None else tap_header(stream, header)
                )
            finally:
                opened.fileobj.close()
            if uid is not None:
                state.taken.add(uid)
            flags = flags_from_info(message.info, folder.keywords)
            fields = None if epochs is None else sort_fields_of(epochs, header)
            state.pending.append(Pending(message, blob, uid, flags, entry, fields))
            journal.add(entry)
            progress = replace(
                progress,
                done_messages=progress.done_messages + 1,
                done_bytes=progress.done_bytes + message.size,
                imported=progress.imported + 1,
                unverified=progress.unverified + int(opened.unverified),
            )
            if len(state.pending) >= BATCH_MESSAGES or state.pending_bytes >= BATCH_BYTES:
                await commit_batch(engine, account, state)
            yield progress
        await commit_batch(engine, account, state)
    log.info(
        "import for user id %d: %d imported, %d skipped, %d renumbered, %d unverified",
        account.user.id,
        progress.imported,
        progress.skipped,
        progress.renumbered,
        progress.unverified,
    )
