"""Reading blobs: whole, streamed and by range; tampering detected before any byte."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from cryptmail import store
from cryptmail.errors import DecryptionFailed, ObjectTampered, PlainBlobRefused
from cryptmail.keys import UnlockedAccount, unlock_account
from cryptmail.store import OpenedBlob, StoredBlob

from .conftest import PASSWORD, StoreRig

CHUNK = 64 * 1024
SIZES = [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17, 1_000_003]


async def _source(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 50_000):
        yield data[start : start + 50_000]


async def _account(rig: StoreRig, crypt: int = 2) -> UnlockedAccount:
    user = await rig.user("alice@example.org", crypt=crypt)
    account, _ = await unlock_account(rig.engine, user.email, PASSWORD, rig.config.crypto)
    return account


async def _write(rig: StoreRig, account: UnlockedAccount, data: bytes, sealed: bool) -> StoredBlob:
    recipient = account.active_key if sealed else None
    return await store.write_blob(rig.blobs, recipient, _source(data))


async def _open(rig: StoreRig, account: UnlockedAccount, blob: StoredBlob) -> OpenedBlob:
    return await store.open_blob(rig.blobs, account, blob.blob_id)


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "plain"])
async def test_stream_equals_input_for_many_sizes(rig: StoreRig, sealed: bool) -> None:
    account = await _account(rig)
    for size in SIZES:
        data = os.urandom(size)
        blob = await _write(rig, account, data, sealed)
        opened = await _open(rig, account, blob)
        assert opened.size == size
        assert b"".join([p async for p in store.stream_plaintext(rig.blobs, opened)]) == data
        assert await store.read_plaintext(rig.blobs, opened) == data


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "plain"])
async def test_read_range_equals_slices(rig: StoreRig, sealed: bool) -> None:
    account = await _account(rig)
    data = os.urandom(4 * CHUNK + 999)
    opened = await _open(rig, account, await _write(rig, account, data, sealed))
    ranges = [
        (0, 10),
        (CHUNK - 5, 10),
        (CHUNK, CHUNK),
        (CHUNK - 1, 2 * CHUNK + 2),
        (3 * CHUNK + 500, 10_000),
        (0, len(data)),
        (len(data) - 1, 5),
        (len(data), 5),
        (10, 0),
    ]
    for offset, length in ranges:
        got = await store.read_range(rig.blobs, opened, offset, length)
        assert got == data[offset : offset + length], (offset, length)


async def test_flipped_bit_is_tampered_and_releases_nothing(rig: StoreRig) -> None:
    account = await _account(rig)
    data = os.urandom(3 * CHUNK + 10)
    blob = await _write(rig, account, data, True)
    opened = await _open(rig, account, blob)
    path = rig.blobs.path_of(blob.blob_id)
    raw = bytearray(path.read_bytes())
    raw[opened.header.size + 100] ^= 0x01  # in the first chunk
    path.write_bytes(bytes(raw))
    released: list[bytes] = []
    with pytest.raises(ObjectTampered):
        async for piece in store.stream_plaintext(rig.blobs, opened):
            released.append(piece)
    assert released == []
    with pytest.raises(ObjectTampered):
        await store.read_range(rig.blobs, opened, 0, 10)
    # The other chunks still verify on their own.
    assert await store.read_range(rig.blobs, opened, CHUNK, 10) == data[CHUNK : CHUNK + 10]


async def test_flipped_header_bit_is_tampered(rig: StoreRig) -> None:
    account = await _account(rig)
    blob = await _write(rig, account, os.urandom(1000), True)
    path = rig.blobs.path_of(blob.blob_id)
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0x80
    path.write_bytes(bytes(raw))
    with pytest.raises(ObjectTampered):
        opened = await _open(rig, account, blob)
        await store.read_plaintext(rig.blobs, opened)


async def test_swapped_blob_is_tampered(rig: StoreRig) -> None:
    account = await _account(rig)
    first = await _write(rig, account, b"first message " * 100, True)
    second = await _write(rig, account, b"second message " * 100, True)
    os.replace(rig.blobs.path_of(second.blob_id), rig.blobs.path_of(first.blob_id))
    with pytest.raises(ObjectTampered):
        opened = await _open(rig, account, first)
        await store.read_plaintext(rig.blobs, opened)
    # Even with the (right) cached message key of the blob that was swapped in.
    opened = await store.open_blob(rig.blobs, None, first.blob_id, message_key=second.message_key)
    with pytest.raises(ObjectTampered):
        await store.read_plaintext(rig.blobs, opened)


async def test_cut_short_blob_is_tampered(rig: StoreRig) -> None:
    account = await _account(rig)
    blob = await _write(rig, account, os.urandom(2 * CHUNK + 5), True)
    opened = await _open(rig, account, blob)
    path = rig.blobs.path_of(blob.blob_id)
    path.write_bytes(path.read_bytes()[: -(CHUNK // 2)])
    opened = await _open(rig, account, blob)
    with pytest.raises(ObjectTampered):
        await store.read_plaintext(rig.blobs, opened)


async def test_cached_message_key_needs_no_private_key(rig: StoreRig) -> None:
    account = await _account(rig)
    data = os.urandom(CHUNK + 3)
    blob = await _write(rig, account, data, True)
    with pytest.raises(DecryptionFailed):
        await store.open_blob(rig.blobs, None, blob.blob_id)
    opened = await store.open_blob(rig.blobs, None, blob.blob_id, message_key=blob.message_key)
    assert await store.read_plaintext(rig.blobs, opened) == data
    # The key the account unwraps is the one delivery chose.
    assert (await _open(rig, account, blob)).message_key == blob.message_key


async def test_plain_blob_needs_no_account(rig: StoreRig) -> None:
    account = await _account(rig, crypt=0)
    blob = await _write(rig, account, b"plain text", False)
    opened = await store.open_blob(rig.blobs, None, blob.blob_id)
    assert opened.message_key is None
    assert await store.read_plaintext(rig.blobs, opened) == b"plain text"


async def test_plain_blob_swapped_in_for_a_sealed_one_is_refused(rig: StoreRig) -> None:
    # Someone who can write to the blob store replaces a sealed blob with a plain one
    # under the same id: the row (or the cached message key) says sealed, so refuse.
    account = await _account(rig)
    sealed = await _write(rig, account, b"Subject: real\r\n\r\nreal", sealed=True)
    plain = await _write(rig, account, b"Subject: forged\r\n\r\nforged", sealed=False)
    forged = rig.blobs.path_of(plain.blob_id).read_bytes()
    rig.blobs.path_of(sealed.blob_id).write_bytes(forged)
    with pytest.raises(PlainBlobRefused):
        await store.open_blob(rig.blobs, account, sealed.blob_id, expect_sealed=True)
    assert sealed.message_key is not None
    with pytest.raises(PlainBlobRefused):
        await store.open_blob(rig.blobs, None, sealed.blob_id, message_key=sealed.message_key)
    # A row that says plain still reads its plain blob.
    opened = await store.open_blob(rig.blobs, account, plain.blob_id, expect_sealed=False)
    assert await store.read_plaintext(rig.blobs, opened) == b"Subject: forged\r\n\r\nforged"


async def test_cached_payload_key_opens_without_the_private_key(rig: StoreRig) -> None:
    account = await _account(rig)
    data = os.urandom(2 * CHUNK + 9)
    blob = await _write(rig, account, data, True)
    first = await _open(rig, account, blob)
    assert first.key.payload_key is not None and first.key.message_key is None
    opened = await store.open_blob(rig.blobs, None, blob.blob_id, payload_key=first.payload_key)
    assert opened.message_key is None
    assert await store.read_plaintext(rig.blobs, opened) == data
    assert await store.read_range(rig.blobs, opened, CHUNK - 4, 10) == data[CHUNK - 4 : CHUNK + 6]


async def test_cached_payload_key_refuses_an_edited_header_or_a_swapped_blob(
    rig: StoreRig,
) -> None:
    account = await _account(rig)
    blob = await _write(rig, account, b"the message " * 50, True)
    other = await _write(rig, account, b"another one " * 50, True)
    payload_key = (await _open(rig, account, blob)).payload_key
    path = rig.blobs.path_of(blob.blob_id)
    original = path.read_bytes()
    edited = bytearray(original)
    edited[10] ^= 1  # inside the key id: the body still decrypts, the header changed
    path.write_bytes(bytes(edited))
    with pytest.raises(ObjectTampered):
        await store.open_blob(rig.blobs, None, blob.blob_id, payload_key=payload_key)
    os.replace(rig.blobs.path_of(other.blob_id), path)
    with pytest.raises(ObjectTampered):
        await store.open_blob(rig.blobs, None, blob.blob_id, payload_key=payload_key)
    plain = await _write(rig, account, b"Subject: forged\r\n\r\nforged", sealed=False)
    path.write_bytes(rig.blobs.path_of(plain.blob_id).read_bytes())
    with pytest.raises(PlainBlobRefused):
        await store.open_blob(rig.blobs, None, blob.blob_id, payload_key=payload_key)


class _NoReads:
    """Stands where the blob store would: any round trip to it fails the test."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"a blob held whole asked the store for {name}")


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "plain"])
async def test_a_blob_given_whole_is_read_by_range_without_the_store(
    rig: StoreRig, sealed: bool
) -> None:
    account = await _account(rig)
    data = os.urandom(3 * CHUNK + 999)  # bigger than HEAD_SIZE: only `whole` says it is all
    blob = await _write(rig, account, data, sealed)
    raw = rig.blobs.path_of(blob.blob_id).read_bytes()
    assert len(raw) > store.HEAD_SIZE
    no_store = _NoReads()
    opened = await store.open_blob(
        no_store,  # type: ignore[arg-type]
        account,
        blob.blob_id,
        head=raw,
        whole=True,
        expect_sealed=sealed,
    )
    assert opened.size == len(data) and opened.contents == raw
    for offset, length in [(0, len(data)), (CHUNK - 3, CHUNK + 9), (len(data) - 5, 50)]:
        got = await store.read_range(no_store, opened, offset, length)  # type: ignore[arg-type]
        assert got == data[offset : offset + length]


async def test_a_whole_blob_cut_short_or_flipped_is_tampered(rig: StoreRig) -> None:
    account = await _account(rig)
    data = os.urandom(3 * CHUNK + 999)
    blob = await _write(rig, account, data, True)
    raw = rig.blobs.path_of(blob.blob_id).read_bytes()
    cut = raw[: -(CHUNK // 2)]
    opened = await store.open_blob(rig.blobs, account, blob.blob_id, head=cut, whole=True)
    with pytest.raises(ObjectTampered):
        await store.read_range(rig.blobs, opened, 0, len(data))
    flipped = bytearray(raw)
    flipped[-100] ^= 0x01  # in the last chunk
    opened = await store.open_blob(
        rig.blobs, account, blob.blob_id, head=bytes(flipped), whole=True
    )
    assert await store.read_range(rig.blobs, opened, 0, 10) == data[:10]
    with pytest.raises(ObjectTampered):
        await store.read_range(rig.blobs, opened, len(data) - 10, 10)


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "plain"])
async def test_held_range_pieces_join_to_the_range(rig: StoreRig, sealed: bool) -> None:
    account = await _account(rig)
    data = os.urandom(3 * CHUNK + 999)
    blob = await _write(rig, account, data, sealed)
    raw = rig.blobs.path_of(blob.blob_id).read_bytes()
    opened = await store.open_blob(rig.blobs, account, blob.blob_id, head=raw, whole=True)
    ranges = [
        (0, len(data)),
        (0, 10),
        (CHUNK - 3, CHUNK + 9),
        (CHUNK, CHUNK),
        (2 * CHUNK + 1, 5 * CHUNK),
        (len(data) - 5, 50),
        (len(data), 5),
        (10, 0),
    ]
    for offset, length in ranges:
        pieces = store.held_range_pieces(opened, offset, length)
        assert b"".join(pieces) == data[offset : offset + length], (offset, length)
        assert all(pieces), (offset, length)  # no empty piece for a writer to send
    if sealed:  # one piece per chunk it touches: never joined into one copy
        assert len(store.held_range_pieces(opened, 0, len(data))) == 4


async def test_held_range_pieces_refuse_a_flipped_chunk_and_a_blob_not_held(
    rig: StoreRig,
) -> None:
    account = await _account(rig)
    data = os.urandom(2 * CHUNK + 10)
    blob = await _write(rig, account, data, True)
    raw = bytearray(rig.blobs.path_of(blob.blob_id).read_bytes())
    raw[-100] ^= 0x01  # in the last chunk
    opened = await store.open_blob(rig.blobs, account, blob.blob_id, head=bytes(raw), whole=True)
    assert b"".join(store.held_range_pieces(opened, 0, 10)) == data[:10]
    with pytest.raises(ObjectTampered):
        store.held_range_pieces(opened, 0, len(data))
    streamed = await store.open_blob(rig.blobs, account, blob.blob_id)
    assert streamed.contents is None  # bigger than HEAD_SIZE: not held
    with pytest.raises(ValueError, match="held in memory"):
        store.held_range_pieces(streamed, 0, 10)
