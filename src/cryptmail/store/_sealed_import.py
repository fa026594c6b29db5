"""Importing plain and global-key Maildirs without the user's password.

Plain mail and mail encrypted to Dovecot's global key need no user secret to read, and
sealing needs only the user's public key, as delivery does. What does need the user's
key is where the mail goes: folder names, flags, keywords and the import journal are
sealed under the data key, which only a login opens. So the work is split:

1. now (`seal_maildir`, the admin's command): every message is read (decrypted with
   the global key; every check before the first byte, as `import_maildir` does) and
   written as a blob sealed to the user's verified public key (plain for crypt = 0);
   the list of what goes where (folder names, UIDs, flags, dates, blob ids and
   message keys, and each sealed message's sort field record, taken from its header
   as it passed to the blob) is itself written as one blob sealed to the public key,
   the "manifest". The INBOX's UIDs are reserved as for `--at-first-login`.
   Afterwards the Dovecot tree is no longer needed.
2. at the user's next login (`place_sealed`, from `FirstLoginImports`): the manifest
   opens with the account's private key and the rows go into their folders with
   Dovecot's UIDs, resumable through the same journal as `import_maildir`, each
   sealed message's sort entry with its row (`_import_entries`). No message is
   decrypted again.

Until then the blobs are named in `cm_staged_blobs`, so the sweep of unreferenced blobs
keeps them; nothing about the mail is readable from them without the user's key.
A run that dies while sealing leaves a row in state `sealing`; the next run of the
command drops it (its blobs become unreferenced and are swept) and starts over.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.crypto import PublicKeyInfo
from cryptmail.crypto.dovecot import DovecotKeyring, Uidlist
from cryptmail.db import UserId, utcnow
from cryptmail.db import tables as t
from cryptmail.errors import CryptoError, DovecotFormatError, KeyLocked, StoreError
from cryptmail.keys import UnlockedAccount, check_delivery
from cryptmail.store._append import StoredBlob, resolve_target, write_blob
from cryptmail.store._ids import BlobId
from cryptmail.store._import import (
    BATCH_BYTES,
    BATCH_MESSAGES,
    ImportProgress,
    Pending,
    commit_batch,
    crlf_source,
    journal_entry,
    load_journal,
    open_mail,
    prepare_folder,
    reserve_uids,
    unreadable,
)
from cryptmail.store._import_entries import tap_header
from cryptmail.store._mailboxes import create_default_mailboxes, mailbox_by_id
from cryptmail.store._maildir import MaildirMessage, flags_from_info, scan_maildir
from cryptmail.store._reader import open_blob, read_plaintext
from cryptmail.store._sortentries import DeliveryEpochs, SortFields
from cryptmail.store._sortfields import SortHeader
from cryptmail.store._staged import (
    SEALING,
    STAGED,
    StagedSource,
    refuse_second,
    seal_source,
)
from cryptmail.store.blobs import BlobStore

log = logging.getLogger(__name__)

_MANIFEST_VERSION: Final = 2
"""Version 2 adds each message's "sort" (its sort field record, or null); version 1
manifests (staged before) are placed without sort entries."""
_MANIFEST_VERSIONS: Final = frozenset({1, _MANIFEST_VERSION})
_staged, _blobs = t.cm_staged_imports, t.cm_staged_blobs


@dataclass(frozen=True)
class _Entry:
    folder: str
    base: str
    in_new: bool
    mtime: float
    uid: int | None
    flags: tuple[str, ...]
    blob: StoredBlob
    sort: bytes | None = field(default=None, repr=False)
    """The header's sort field record (sealed messages only; plaintext: it is written
    only inside the manifest, which is sealed)."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _encode(folders: list[tuple[str, Uidlist | None]], entries: list[_Entry]) -> bytes:
    value = {
        "version": _MANIFEST_VERSION,
        "folders": [
            {
                "name": name,
                "uidvalidity": None if u is None else u.uid_validity,
                "next_uid": None if u is None else u.next_uid,
            }
            for name, u in folders
        ],
        "messages": [
            {
                "folder": e.folder,
                "base": e.base,
                "new": e.in_new,
                "mtime": e.mtime,
                "uid": e.uid,
                "flags": list(e.flags),
                "blob": e.blob.blob_id.hex(),
                "size": e.blob.size,
                "sealed": e.blob.sealed,
                "key": _b64(e.blob.message_key),
                "sort": _b64(e.sort),
            }
            for e in entries
        ],
    }
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> tuple[list[tuple[str, Uidlist | None]], list[_Entry]]:
    value: dict[str, Any] = json.loads(data.decode("utf-8", "surrogateescape"))
    if value.get("version") not in _MANIFEST_VERSIONS:
        raise StoreError(f"a staged import's list is in version {value.get('version')!r}")
    folders: list[tuple[str, Uidlist | None]] = []
    for f in value["folders"]:
        uidlist = None
        if f["uidvalidity"] is not None:
            uidlist = Uidlist(3, int(f["uidvalidity"]), int(f["next_uid"]), None, ())
        folders.append((str(f["name"]), uidlist))
    entries = [
        _Entry(
            m["folder"],
            m["base"],
            bool(m["new"]),
            float(m["mtime"]),
            m["uid"],
            tuple(m["flags"]),
            StoredBlob(
                BlobId(bytes.fromhex(m["blob"])),
                int(m["size"]),
                bool(m["sealed"]),
                _unb64(m["key"]),
            ),
            _unb64(m.get("sort")),
        )
        for m in value["messages"]
    ]
    return folders, entries


async def _keys(engine: AsyncEngine, user_id: UserId) -> tuple[PublicKeyInfo | None, PublicKeyInfo]:
    """The key messages are sealed to (None: crypt = 0, stored plain) and the one the
    manifest is sealed to, both as delivery verifies them. Raises KeyLocked,
    RecipientKeyUnverified."""
    target = await resolve_target(engine, user_id)
    check = check_delivery(user_id, target.user.crypt, target.recipient, target.delivery_mac)
    if not check.verified or target.recipient is None:
        raise KeyLocked(
            f"user id {user_id} has no verified public key yet (keys are made at the first "
            "login or by `cryptmail user add`); import with the user's password, or after "
            "that login"
        )
    return (target.recipient if check.crypt == 2 else None), target.recipient


async def _start(engine: AsyncEngine, user_id: UserId, total: int) -> int:
    now = utcnow()
    async with engine.begin() as conn:
        # A run that died while sealing: start over (its blobs are swept).
        await conn.execute(
            delete(_staged).where(_staged.c.user_id == user_id, _staged.c.state == SEALING)
        )
        await refuse_second(conn, user_id)
        result = await conn.execute(
            _staged.insert().values(
                user_id=user_id,
                state=SEALING,
                source_sealed=b"",
                done_messages=0,
                total_messages=total,
                created_at=now,
                heartbeat_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def _note_blobs(engine: AsyncEngine, job_id: int, blob_ids: list[BlobId]) -> None:
    if blob_ids:
        async with engine.begin() as conn:
            await conn.execute(
                _blobs.insert(), [{"staged_id": job_id, "blob_id": b} for b in blob_ids]
            )
        blob_ids.clear()


async def seal_maildir(
    engine: AsyncEngine,
    blobs: BlobStore,
    user_id: UserId,
    root: Path,
    keyring: DovecotKeyring,
    *,
    allow_unauthenticated: bool = True,
    skip_unreadable: bool = False,
) -> AsyncIterator[ImportProgress]:
    """Seal every message of the Maildir at `root` to the user's public key now, for
    the user's next login to place (see the module docstring); yields progress as
    `import_maildir` does, the last one when the import is staged.

    Raises KeyLocked or RecipientKeyUnverified (no verified public key), StoreError (a
    file that does not decrypt, unless `skip_unreadable`; an import of this user staged
    already), DovecotFormatError, OSError.
    """
    recipient, manifest_key = await _keys(engine, user_id)
    folders = await run_blocking(scan_maildir, root)
    progress = ImportProgress(
        total_messages=sum(len(f.messages) for f in folders),
        total_bytes=sum(m.size for f in folders for m in f.messages),
        folders=len(folders),
    )
    job_id = await _start(engine, user_id, progress.total_messages)
    yield progress
    entries: list[_Entry] = []
    written: list[BlobId] = []
    for number, folder in enumerate(folders, start=1):
        uids = folder.uids()
        ordered = sorted(
            folder.messages, key=lambda m: (m.base not in uids, uids.get(m.base, 0), m.base)
        )
        for message in ordered:
            step = replace(
                progress,
                done_messages=progress.done_messages + 1,
                done_bytes=progress.done_bytes + message.size,
            )
            try:
                opened = await run_blocking(open_mail, message.path, keyring, allow_unauthenticated)
            except (CryptoError, DovecotFormatError) as exc:
                if not skip_unreadable:
                    raise unreadable(number, message, exc) from exc
                log.warning("import: folder #%d file %s left out: %s", number, message.base, exc)
                progress = replace(step, failed=progress.failed + 1)
                yield progress
                continue
            header = SortHeader()
            stream = crlf_source(opened.pieces)
            try:
                blob = await write_blob(
                    blobs, recipient, stream if recipient is None else tap_header(stream, header)
                )
            finally:
                opened.fileobj.close()
            written.append(blob.blob_id)
            flags = tuple(sorted(flags_from_info(message.info, folder.keywords)))
            entry = _Entry(
                folder.name,
                message.base,
                message.in_new,
                message.mtime,
                uids.get(message.base),
                flags,
                blob,
                None if recipient is None else header.record(),  # sealed copies only
            )
            entries.append(entry)
            progress = replace(
                step,
                imported=progress.imported + 1,
                unverified=progress.unverified + int(opened.unverified),
            )
            if len(written) >= BATCH_MESSAGES:
                await _note_blobs(engine, job_id, written)
            yield progress
    await _note_blobs(engine, job_id, written)
    listed = [(f.name, f.uidlist) for f in folders]
    manifest = await write_blob(blobs, manifest_key, _once(_encode(listed, entries)))
    await _note_blobs(engine, job_id, [manifest.blob_id])
    source = StagedSource(Path(), None, manifest=manifest.blob_id.hex())
    inbox = next((f for f in folders if f.name == "INBOX"), None)
    inbox_id = await create_default_mailboxes(engine, user_id)
    async with engine.begin() as conn:
        if inbox is not None and inbox.uidlist is not None:
            await reserve_uids(conn, await mailbox_by_id(conn, None, inbox_id), inbox.uidlist)
        await conn.execute(
            update(_staged)
            .where(_staged.c.id == job_id)
            .values(
                state=STAGED,
                source_sealed=seal_source(user_id, source),
                total_messages=len(entries),
                heartbeat_at=utcnow(),
            )
        )
    log.info("import #%d of user id %d sealed: %d messages", job_id, user_id, len(entries))
    yield progress


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def place_sealed(
    engine: AsyncEngine,
    blobs: BlobStore,
    account: UnlockedAccount,
    job_id: int,
    manifest_id: BlobId,
) -> AsyncIterator[ImportProgress]:
    """Put the messages a `seal_maildir` sealed into the account's folders, with
    Dovecot's UIDs; yields progress (the first with the totals). Resumable: what the
    journal has is skipped. Raises StoreError (the manifest does not open), BlobMissing.
    """
    opened = await open_blob(blobs, account, manifest_id)
    folders, entries = _decode(await read_plaintext(blobs, opened))
    async with engine.connect() as conn:
        journal = await load_journal(conn, account)
    epochs = DeliveryEpochs()  # this placing's sort entries, one epoch for its batches
    progress = ImportProgress(
        total_messages=len(entries),
        total_bytes=sum(e.blob.size for e in entries),
        folders=len(folders),
    )
    yield progress
    for name, uidlist in folders:
        state = await prepare_folder(engine, account, name, uidlist)
        for entry in (e for e in entries if e.folder == name):
            step = replace(
                progress,
                done_messages=progress.done_messages + 1,
                done_bytes=progress.done_bytes + entry.blob.size,
            )
            key = journal_entry(account, name, entry.base)
            if key in journal:
                progress = replace(step, skipped=progress.skipped + 1)
                yield progress
                continue
            uid = entry.uid
            if uid is not None and (uid >= state.reserved_below or uid in state.taken):
                progress = replace(step, renumbered=progress.renumbered + 1)
                uid = None
            if uid is not None:
                state.taken.add(uid)
            message = MaildirMessage(
                Path(), entry.base, "", entry.in_new, entry.blob.size, entry.mtime
            )
            fields = None if entry.sort is None else SortFields(epochs, entry.sort)
            state.pending.append(
                Pending(message, entry.blob, uid, frozenset(entry.flags), key, fields)
            )
            journal.add(key)
            progress = replace(step, imported=progress.imported + 1)
            if len(state.pending) >= BATCH_MESSAGES or state.pending_bytes >= BATCH_BYTES:
                await commit_batch(engine, account, state)
            yield progress
        await commit_batch(engine, account, state)
    async with engine.begin() as conn:
        # Rows name the message blobs now; the manifest goes with the next sweep.
        await conn.execute(delete(_blobs).where(_blobs.c.staged_id == job_id))
    log.info(
        "import #%d of user id %d placed: %d messages", job_id, account.user.id, progress.imported
    )
