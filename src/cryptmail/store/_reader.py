"""Reading message bytes: verified, streamed, or by byte range.

A sealed blob's payload key (or, in older caches, its message key) comes from the sealed
cache when a session cached it, so re-reading costs no EC operation; otherwise one ECIES
unwrap (off the event loop).
No byte is returned before its chunk's tag verified.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

from cryptmail.concurrency import run_blocking
from cryptmail.crypto import (
    BlobHeader,
    BlobOpener,
    PayloadKey,
    chunk_span,
    parse_blob_header,
    unwrap_blob_key,
)
from cryptmail.errors import (
    DecryptionFailed,
    MalformedObject,
    ObjectTampered,
    PlainBlobRefused,
)
from cryptmail.keys import UnlockedAccount
from cryptmail.store._codec import CachedKey
from cryptmail.store._ids import BlobId
from cryptmail.store.blobs import BlobStore

_STREAM_PIECE = 256 * 1024
HEAD_SIZE = 64 * 1024
"""What `open_blob` reads first: a blob shorter than this is read whole and kept open."""


class OpenedBlob(NamedTuple):
    """A blob ready to read: its header, size and (sealed) payload key; the message key
    too when it was unwrapped or given rather than a cached payload key."""

    blob_id: BlobId
    header: BlobHeader
    blob_size: int
    message_key: bytes | None
    contents: bytes | None = None  # the whole blob, when it is small
    payload_key: PayloadKey | None = None

    def __repr__(self) -> str:
        return f"OpenedBlob({self.blob_id.hex()[:8]}, sealed={self.header.sealed})"

    @property
    def key(self) -> CachedKey:
        """What a cache keeps to open this blob again: the payload key when there is one."""
        if self.payload_key is not None:
            return CachedKey(None, self.payload_key)
        return CachedKey(self.message_key, None)

    @property
    def size(self) -> int:
        """Plaintext size."""
        return self.header.plaintext_size(self.blob_size)


def _tampered(blob_id: BlobId) -> ObjectTampered:
    return ObjectTampered(
        f"blob {blob_id.hex()} failed authentication: it was changed or swapped on disk; "
        "restore it from backup, then run `cryptmail store check`"
    )


async def open_blob(
    blobs: BlobStore,
    account: UnlockedAccount | None,
    blob_id: BlobId,
    *,
    message_key: bytes | None = None,
    payload_key: PayloadKey | None = None,
    expect_sealed: bool = False,
    head: bytes | None = None,
    whole: bool = False,
) -> OpenedBlob:
    """Read the header and find the payload key. Plain blobs need no account.

    A cached `payload_key` is used as it is (checked against the header); a cached
    `message_key` saves the unwrap; with neither, the account's private key unwraps.
    `expect_sealed` comes from the message row: a plain blob is then refused with
    PlainBlobRefused, as it is when a cached key says the message was sealed,
    since anyone who can write to the blob store could otherwise substitute plaintext.
    `head`, when given, is the blob's first HEAD_SIZE bytes (or more) as
    `BlobStore.read_heads` returned them (blobs are never rewritten, so reading them
    earlier is the same); `whole` says it is the entire blob even if it is not shorter
    than HEAD_SIZE (the caller asked for more and got less). A blob held whole is read by
    range from memory: no further store round trip, not even for its size.
    """
    # One read serves a small blob whole: a FETCH of many small messages then costs one
    # blob store round trip per message instead of three.
    if head is None:
        head = await blobs.read(blob_id, 0, HEAD_SIZE)
    whole = whole or len(head) < HEAD_SIZE
    blob_size = len(head) if whole else await blobs.size(blob_id)
    header = _parse_header(head, blob_id)
    known = CachedKey(message_key, payload_key)
    contents = head if whole else None
    if header.sealed and known.empty:  # an EC operation: off the event loop
        return await run_blocking(
            _opened, header, contents, blob_size, account, blob_id, known, expect_sealed
        )
    return _opened(header, contents, blob_size, account, blob_id, known, expect_sealed)


def open_small_blob(
    contents: bytes, account: UnlockedAccount | None, blob_id: BlobId, *, expect_sealed: bool
) -> OpenedBlob:
    """`open_blob` for a whole blob already read (shorter than HEAD_SIZE), without the
    event loop: it may unwrap the message key, so call it from a worker thread."""
    if len(contents) >= HEAD_SIZE:
        raise ValueError("open_small_blob takes a whole blob shorter than HEAD_SIZE")
    header = _parse_header(contents, blob_id)
    return _opened(
        header, contents, len(contents), account, blob_id, CachedKey(None, None), expect_sealed
    )


def small_blob_plaintext(opened: OpenedBlob) -> bytes:
    """The whole message of a blob held in memory (`opened.contents`), verified."""
    if opened.contents is None:
        raise ValueError("small_blob_plaintext needs a blob held in memory")
    body = opened.contents[opened.header.size :]
    if not opened.header.sealed:
        return body
    assert opened.payload_key is not None  # noqa: S101 - _opened set it
    try:
        opener = BlobOpener.with_payload_key(opened.header, opened.payload_key)
        return opener.update(body) + opener.finalize()
    except DecryptionFailed as exc:
        raise _tampered(opened.blob_id) from exc


def _parse_header(head: bytes, blob_id: BlobId) -> BlobHeader:
    try:
        return parse_blob_header(head)
    except MalformedObject as exc:
        raise _tampered(blob_id) from exc


def _opened(
    header: BlobHeader,
    contents: bytes | None,
    blob_size: int,
    account: UnlockedAccount | None,
    blob_id: BlobId,
    known: CachedKey,
    expect_sealed: bool,
) -> OpenedBlob:
    message_key, payload_key = known
    if not header.sealed:
        if expect_sealed or not known.empty:
            raise PlainBlobRefused(
                f"blob {blob_id.hex()} is plain but its message is sealed: it was swapped on "
                "disk; restore it from backup, then run `cryptmail store check`"
            )
        return OpenedBlob(blob_id, header, blob_size, None, contents)
    if payload_key is not None:
        try:
            payload_key.check(header)
        except DecryptionFailed as exc:
            raise _tampered(blob_id) from exc
        return OpenedBlob(blob_id, header, blob_size, None, contents, payload_key)
    if message_key is None:
        if account is None:
            raise DecryptionFailed("sealed blob (no key)")
        try:
            private_key = account.private_key(header.key_id)
            message_key = unwrap_blob_key(header, private_key, blob_id)
        except DecryptionFailed as exc:
            raise _tampered(blob_id) from exc
    payload_key = PayloadKey.derive(header, message_key, blob_id)
    return OpenedBlob(blob_id, header, blob_size, message_key, contents, payload_key)


async def stream_plaintext(blobs: BlobStore, opened: OpenedBlob) -> AsyncIterator[bytes]:
    """The whole message, verified chunk by chunk, in constant memory."""
    source = blobs.stream(opened.blob_id, opened.header.size, _STREAM_PIECE)
    if not opened.header.sealed:
        async for piece in source:
            yield piece
        return
    assert opened.payload_key is not None  # noqa: S101 - open_blob set it
    opener = BlobOpener.with_payload_key(opened.header, opened.payload_key)
    try:
        async for piece in source:
            out = opener.update(piece)
            if out:
                yield out
        last = opener.finalize()
    except DecryptionFailed as exc:
        raise _tampered(opened.blob_id) from exc
    if last:
        yield last


async def read_plaintext(blobs: BlobStore, opened: OpenedBlob) -> bytes:
    return b"".join([piece async for piece in stream_plaintext(blobs, opened)])


def held_range_pieces(opened: OpenedBlob, offset: int, length: int) -> list[bytes]:
    """Plaintext bytes [offset, offset+length) of a blob held whole (`opened.contents`),
    as the pieces its chunks decrypt to, not joined: a big FETCH literal goes to the
    socket piece by piece, so joining would only copy every byte once more. Each chunk is
    decrypted from a view of the blob, not from a copy of its slice. Decrypting here, on
    the caller's thread, is what pays: a 64 KiB chunk takes about 10 us, a hop to a
    worker thread and back far longer."""
    contents = opened.contents
    if contents is None:
        raise ValueError("held_range_pieces needs a blob held in memory")
    try:
        total = opened.size
    except DecryptionFailed as exc:
        raise _tampered(opened.blob_id) from exc
    if offset >= total or length <= 0:
        return []
    end = min(total, offset + length)
    header = opened.header
    if not header.sealed:
        return [contents[header.size + offset : header.size + end]]
    payload_key = opened.payload_key
    assert payload_key is not None  # noqa: S101 - open_blob set it
    size = header.chunk_size
    count = header.chunk_count(opened.blob_size)
    first, last = offset // size, (end - 1) // size
    base, stride = chunk_span(header, first)
    view = memoryview(contents)
    pieces: list[bytes] = []
    for index in range(first, last + 1):
        start = base + (index - first) * stride
        try:
            plain = payload_key.open_chunk(index, view[start : start + stride], index == count - 1)
        except DecryptionFailed as exc:
            raise _tampered(opened.blob_id) from exc
        low = offset - index * size if index == first else 0
        high = end - index * size if index == last else len(plain)
        pieces.append(plain if low == 0 and high == len(plain) else plain[low:high])
    return pieces


async def read_range(blobs: BlobStore, opened: OpenedBlob, offset: int, length: int) -> bytes:
    """Plaintext bytes [offset, offset+length), decrypting only the chunks that hold them."""
    if opened.contents is not None:
        return b"".join(held_range_pieces(opened, offset, length))
    try:
        total = opened.size
    except DecryptionFailed as exc:  # a blob cut short: not a valid STREAM length
        raise _tampered(opened.blob_id) from exc
    if offset >= total or length <= 0:
        return b""
    end = min(total, offset + length)
    header = opened.header
    if not header.sealed:
        return await blobs.read(opened.blob_id, header.size + offset, end - offset)
    payload_key = opened.payload_key
    assert payload_key is not None  # noqa: S101 - open_blob set it
    size = header.chunk_size
    count = header.chunk_count(opened.blob_size)
    first, last = offset // size, (end - 1) // size
    base, stride = chunk_span(header, first)
    # The chunks lie end to end: one read for all of them.
    stored = await blobs.read(opened.blob_id, base, (last - first + 1) * stride)
    base = 0
    out: list[bytes] = []
    for index in range(first, last + 1):
        start = base + (index - first) * stride
        chunk = stored[start : start + stride]
        try:
            out.append(payload_key.open_chunk(index, chunk, index == count - 1))
        except DecryptionFailed as exc:
            raise _tampered(opened.blob_id) from exc
    data = b"".join(out)
    skip = offset - first * size
    return data[skip : skip + (end - offset)]
