"""Encrypting a user's existing plain mail in place (`cryptmail mailbox encrypt`).

Needs only the public key. For each plain blob: write a sealed copy, read it back and
compare it with the plain bytes (opened with the message key the sealer chose, so no
private key is needed), then point every row that names the plain blob at the sealed
one in one transaction (compare-and-swap on the blob id), then overwrite and delete the
plain blob if no row names it any more. UIDs, flags and modseqs do not change, so
connected IMAP clients see nothing. Every step is restartable: a crash leaves the plain
blob in use (and maybe a sealed orphan for the sweep) or the sealed blob in use (and
maybe a plain orphan, which the next run or the sweep removes).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.crypto import MAX_HEADER_SIZE, BlobOpener, parse_blob_header
from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import KeyLocked, ObjectTampered
from cryptmail.keys import checkpoint, verified_public_key
from cryptmail.store._append import write_blob
from cryptmail.store._ids import BlobId
from cryptmail.store._messages import drop_unreferenced_blobs
from cryptmail.store._reader import OpenedBlob, stream_plaintext
from cryptmail.store.blobs import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncryptProgress:
    """Emitted after each blob: totals so far and the size of the whole job."""

    done_messages: int
    done_bytes: int
    total_messages: int
    total_bytes: int


async def _plain_blobs(engine: AsyncEngine, user_id: UserId) -> list[tuple[BlobId, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(t.cm_messages.c.blob_id, t.cm_messages.c.size_rounded)
            .select_from(t.cm_messages.join(t.cm_mailboxes))
            .where(t.cm_mailboxes.c.user_id == user_id, t.cm_messages.c.sealed.is_(False))
            .order_by(t.cm_messages.c.id)
        )
        seen: dict[bytes, int] = {}
        for row in rows:
            seen.setdefault(bytes(row.blob_id), int(row.size_rounded))
    return [(BlobId(b), size) for b, size in seen.items()]


async def _digest(source: AsyncIterator[bytes]) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    size = 0
    async for piece in source:
        digest.update(piece)
        size += len(piece)
    return digest.digest(), size


async def _sealed_digest(
    blobs: BlobStore, blob_id: BlobId, message_key: bytes
) -> tuple[bytes, int]:
    header = parse_blob_header(await blobs.read(blob_id, 0, MAX_HEADER_SIZE))
    opener = BlobOpener(header, message_key, blob_id)
    digest = hashlib.sha256()
    size = 0
    async for piece in blobs.stream(blob_id, header.size):
        out = opener.update(piece)
        digest.update(out)
        size += len(out)
    last = opener.finalize()
    digest.update(last)
    return digest.digest(), size + len(last)


async def encrypt_mailboxes(
    engine: AsyncEngine, blobs: BlobStore, user_id: UserId
) -> AsyncIterator[EncryptProgress]:
    """Seal every plain blob of the user; yields progress after each one.

    Raises KeyLocked if the user has no key pair, RecipientKeyUnverified if its public
    key is not the one cryptmail recorded (changed in SQL), ObjectTampered if a sealed
    copy does not read back equal (the plain blob is then kept).
    """
    async with engine.connect() as conn:
        recipient = await verified_public_key(conn, user_id)
    if recipient is None:
        raise KeyLocked(f"user id {user_id} has no key pair yet; it is made at the first login")
    work = await _plain_blobs(engine, user_id)
    total_bytes = sum(size for _, size in work)
    done_messages = done_bytes = 0
    for plain_id, size in work:
        head = await blobs.read(plain_id, 0, MAX_HEADER_SIZE)
        header = parse_blob_header(head)
        if header.sealed:
            continue  # a row says plain but the blob is sealed: leave it to store check
        opened = OpenedBlob(plain_id, header, await blobs.size(plain_id), None)
        plain_digest, plain_size = await _digest(stream_plaintext(blobs, opened))
        stored = await write_blob(blobs, recipient, stream_plaintext(blobs, opened))
        assert stored.message_key is not None  # noqa: S101 - sealed to a recipient
        sealed_digest, sealed_size = await _sealed_digest(blobs, stored.blob_id, stored.message_key)
        if (sealed_digest, sealed_size) != (plain_digest, plain_size):
            await blobs.delete(stored.blob_id)
            raise ObjectTampered(
                f"the sealed copy of blob {plain_id.hex()} did not read back equal; the plain "
                "blob is kept. Check the disk, then run the command again"
            )
        checkpoint("encrypt:before-swap")
        async with engine.begin() as conn:
            result = await conn.execute(
                update(t.cm_messages)
                .where(t.cm_messages.c.blob_id == plain_id, t.cm_messages.c.sealed.is_(False))
                .values(blob_id=stored.blob_id, sealed=True)
            )
        checkpoint("encrypt:after-swap")
        if result.rowcount == 0:
            # Expunged meanwhile: the sealed copy is unused.
            await blobs.delete(stored.blob_id)
        else:
            # A COPY that locked its source row before our swap may have committed a new
            # row naming the plain blob after our UPDATE chose its rows: keep it then.
            await drop_unreferenced_blobs(engine, blobs, [plain_id])
        done_messages += 1
        done_bytes += size
        yield EncryptProgress(done_messages, done_bytes, len(work), total_bytes)
    log.info("user id %d: %d plain blobs sealed", user_id, done_messages)
