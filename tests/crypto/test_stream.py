"""The blob format: header, STREAM chunks, round-trips and every way a blob can be wrong.

Every tampered blob must fail with the one opaque DecryptionFailed (or MalformedObject
when its header no longer parses); never with another exception, never with plaintext.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cryptmail.crypto._ecies as ecies_module
import cryptmail.crypto._stream as stream_module
from cryptmail.crypto import (
    MAX_HEADER_SIZE,
    BlobHeader,
    BlobOpener,
    BlobSealer,
    CurveName,
    PayloadKey,
    PrivateKey,
    chunk_span,
    context,
    curve_names,
    generate_private_key,
    parse_blob_header,
    plain_header,
    public_info,
    unwrap_blob_key,
    unwrap_key,
    wrap_key,
)
from cryptmail.crypto._labels import (
    BLOB_CHUNK_SIZE,
    BLOB_MAGIC,
    BLOB_MODE_PLAIN,
    BLOB_MODE_SEALED,
    BLOB_TAG_SIZE,
    BLOB_VERSION,
    CURVE_IDS,
)
from cryptmail.errors import CryptoError, DecryptionFailed, MalformedObject

CHUNK = 4096
STRIDE = CHUNK + BLOB_TAG_SIZE
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17, 5 * CHUNK - 1]
HEADER_SIZES = {"x25519": 124, "prime256v1": 125, "secp384r1": 141, "secp521r1": 159}
BLOB_ID = bytes(range(16))
MESSAGE_KEY = bytes(range(100, 132))
# Hypothesis tests cannot take function-scoped fixtures; they share this key.
_HYPOTHESIS_KEY = generate_private_key("x25519")


def plaintext_of(size: int) -> bytes:
    # Period 251 (prime), so no two chunks of a multi-chunk message are equal.
    return bytes(i % 251 for i in range(size))


def seal(
    private_key: PrivateKey,
    plaintext: bytes,
    *,
    blob_id: bytes = BLOB_ID,
    message_key: bytes = MESSAGE_KEY,
    chunk_size: int = CHUNK,
) -> bytes:
    sealer = BlobSealer._from_parts(message_key, public_info(private_key), blob_id, chunk_size)
    return sealer.header + sealer.update(plaintext) + sealer.finalize()


def open_with_key(blob: bytes, private_key: PrivateKey, blob_id: bytes = BLOB_ID) -> bytes:
    """The full read path: parse, ECIES unwrap, STREAM."""
    header = parse_blob_header(blob)
    message_key = unwrap_blob_key(header, private_key, blob_id)
    opener = BlobOpener(header, message_key, blob_id)
    return opener.update(blob[header.size :]) + opener.finalize()


def open_cached(blob: bytes, message_key: bytes = MESSAGE_KEY, blob_id: bytes = BLOB_ID) -> bytes:
    """The read path with a cached message key: no ECDH."""
    header = parse_blob_header(blob)
    opener = BlobOpener(header, message_key, blob_id)
    return opener.update(blob[header.size :]) + opener.finalize()


def chunks_of(blob: bytes) -> tuple[bytes, list[bytes]]:
    header = parse_blob_header(blob)
    body = blob[header.size :]
    return blob[: header.size], [body[i : i + STRIDE] for i in range(0, len(body), STRIDE)]


# --- round-trips -------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_on_every_curve(
    curve: CurveName, private_keys: dict[CurveName, PrivateKey], size: int
) -> None:
    key = private_keys[curve]
    plaintext = plaintext_of(size)
    blob = seal(key, plaintext)
    header = parse_blob_header(blob)
    assert header.sealed and header.curve == curve and header.chunk_size == CHUNK
    assert header.size == HEADER_SIZES[curve]
    assert header.key_id == public_info(key).key_id
    assert unwrap_blob_key(header, key, BLOB_ID) == MESSAGE_KEY
    assert open_with_key(blob, key) == plaintext
    assert open_cached(blob) == plaintext
    assert header.plaintext_size(len(blob)) == size
    assert header.chunk_count(len(blob)) == max(1, -(-size // CHUNK))
    assert len(blob) == header.size + size + BLOB_TAG_SIZE * header.chunk_count(len(blob))


@pytest.mark.parametrize(
    "size", [0, 1, BLOB_CHUNK_SIZE - 1, BLOB_CHUNK_SIZE, BLOB_CHUNK_SIZE + 1, 3 * BLOB_CHUNK_SIZE]
)
def test_public_sealer_uses_the_default_chunk_and_a_fresh_key(
    private_keys: dict[CurveName, PrivateKey], size: int
) -> None:
    key = private_keys["x25519"]
    plaintext = os.urandom(size)
    sealer = BlobSealer(public_info(key), BLOB_ID)
    blob = sealer.header + sealer.update(plaintext) + sealer.finalize()
    header = parse_blob_header(blob)
    assert header.chunk_size == BLOB_CHUNK_SIZE
    assert sealer.message_key != MESSAGE_KEY and len(sealer.message_key) == 32
    assert open_with_key(blob, key) == plaintext
    assert open_cached(blob, sealer.message_key) == plaintext
    assert BlobSealer(public_info(key), BLOB_ID).message_key != sealer.message_key


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plaintext=st.binary(max_size=3 * CHUNK + 100),
    write_cuts=st.lists(st.integers(0, 3 * CHUNK + 100), max_size=6),
    read_cuts=st.lists(st.integers(0, 4 * STRIDE), max_size=6),
)
def test_pieces_do_not_matter(
    plaintext: bytes, write_cuts: list[int], read_cuts: list[int]
) -> None:
    """Feeding the sealer or the opener in any pieces gives the documented chunks."""
    sealer = BlobSealer._from_parts(MESSAGE_KEY, public_info(_HYPOTHESIS_KEY), BLOB_ID, CHUNK)
    body = b"".join(sealer.update(piece) for piece in _split(plaintext, write_cuts))
    body += sealer.finalize()
    aead = AESGCM(_payload_key(sealer.header))
    pieces = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    expected = b"".join(
        aead.encrypt(index.to_bytes(11, "big") + bytes([index == len(pieces) - 1]), piece, None)
        for index, piece in enumerate(pieces)
    )
    assert body == expected
    opener = BlobOpener(parse_blob_header(sealer.header), MESSAGE_KEY, BLOB_ID)
    out = b"".join(opener.update(piece) for piece in _split(body, read_cuts))
    assert out + opener.finalize() == plaintext


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def test_opener_holds_back_what_might_be_the_last_chunk(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    plaintext = plaintext_of(2 * CHUNK + 5)
    blob = seal(private_keys["x25519"], plaintext)
    header = parse_blob_header(blob)
    body = blob[header.size :]
    opener = BlobOpener(header, MESSAGE_KEY, BLOB_ID)
    # A whole chunk could still be the last one, so nothing comes out yet.
    assert opener.update(body[:STRIDE]) == b""
    assert opener.update(body[STRIDE : STRIDE + 1]) == plaintext[:CHUNK]
    assert opener.update(body[STRIDE + 1 :]) == plaintext[CHUNK : 2 * CHUNK]
    assert opener.finalize() == plaintext[2 * CHUNK :]


def test_sealer_holds_back_the_last_chunk(private_keys: dict[CurveName, PrivateKey]) -> None:
    sealer = BlobSealer._from_parts(
        MESSAGE_KEY, public_info(private_keys["x25519"]), BLOB_ID, CHUNK
    )
    assert sealer.update(bytes(CHUNK)) == b""
    assert len(sealer.update(b"x")) == STRIDE
    assert len(sealer.finalize()) == 1 + BLOB_TAG_SIZE
    with pytest.raises(ValueError, match="finalized"):
        sealer.update(b"more")
    with pytest.raises(ValueError, match="finalized"):
        sealer.finalize()


def test_opener_refuses_use_after_finalize(private_keys: dict[CurveName, PrivateKey]) -> None:
    blob = seal(private_keys["x25519"], b"hello")
    header = parse_blob_header(blob)
    opener = BlobOpener(header, MESSAGE_KEY, BLOB_ID)
    assert opener.update(blob[header.size :]) == b""
    assert opener.finalize() == b"hello"
    with pytest.raises(ValueError, match="finalized"):
        opener.update(b"")
    with pytest.raises(ValueError, match="finalized"):
        opener.finalize()


@pytest.mark.parametrize("chunk_size", [0, 1, 2048, 4095, 4097, 3 * 4096, 1 << 25])
def test_sealer_refuses_bad_chunk_sizes(
    private_keys: dict[CurveName, PrivateKey], chunk_size: int
) -> None:
    with pytest.raises(ValueError, match="chunk size"):
        BlobSealer._from_parts(
            MESSAGE_KEY, public_info(private_keys["x25519"]), BLOB_ID, chunk_size
        )


@pytest.mark.parametrize("chunk_log2", [12, 13, 16, 24])
def test_every_allowed_chunk_size_round_trips(
    private_keys: dict[CurveName, PrivateKey], chunk_log2: int
) -> None:
    plaintext = plaintext_of(5000)
    blob = seal(private_keys["x25519"], plaintext, chunk_size=1 << chunk_log2)
    assert blob[parse_blob_header(blob).size - 1] == chunk_log2
    assert open_cached(blob) == plaintext


def test_header_layout(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    info = public_info(key)
    blob = seal(key, b"")
    magic, rest = blob[:6], blob[6:]
    assert magic == BLOB_MAGIC
    assert rest[:3] == bytes([BLOB_VERSION, BLOB_MODE_SEALED, CURVE_IDS[curve]])
    assert rest[3:35] == info.key_id
    eph_len = rest[35]
    assert eph_len == len(info.encoded)
    assert rest[36 + eph_len] == 48
    assert rest[36 + eph_len + 1 + 48] == 12
    assert len(blob) == HEADER_SIZES[curve] + BLOB_TAG_SIZE


def test_the_body_is_stream_under_the_documented_payload_key(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    """Recompute every chunk from docs/security.md's formulas."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    plaintext = plaintext_of(2 * CHUNK + 3)
    blob = seal(private_keys["prime256v1"], plaintext)
    head, chunks = chunks_of(blob)
    payload_key = HKDF(
        hashes.SHA256(),
        32,
        salt=BLOB_ID,
        info=b"cryptmail/v1/blob-payload" + hashlib.sha256(head).digest(),
    ).derive(MESSAGE_KEY)
    aead = AESGCM(payload_key)
    pieces = [plaintext[:CHUNK], plaintext[CHUNK : 2 * CHUNK], plaintext[2 * CHUNK :]]
    for index, (chunk, piece) in enumerate(zip(chunks, pieces, strict=True)):
        nonce = index.to_bytes(11, "big") + (b"\x01" if index == 2 else b"\x00")
        assert aead.encrypt(nonce, piece, None) == chunk


def test_payload_key_open_chunk_and_chunk_span(private_keys: dict[CurveName, PrivateKey]) -> None:
    plaintext = plaintext_of(3 * CHUNK + 17)
    blob = seal(private_keys["x25519"], plaintext)
    header = parse_blob_header(blob)
    count = header.chunk_count(len(blob))
    assert count == 4
    for index in range(count):
        start, length = chunk_span(header, index)
        assert (start, length) == (header.size + index * STRIDE, STRIDE)
        chunk = blob[start : start + length]
        got = PayloadKey.derive(header, MESSAGE_KEY, BLOB_ID).open_chunk(
            index, chunk, index == count - 1
        )
        assert got == plaintext[index * CHUNK : (index + 1) * CHUNK]


def test_payload_key_open_chunk_checks_position_and_last_flag(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    blob = seal(private_keys["x25519"], plaintext_of(2 * CHUNK + 1))
    header = parse_blob_header(blob)
    payload_key = PayloadKey.derive(header, MESSAGE_KEY, BLOB_ID)
    head, chunks = chunks_of(blob)
    cases = [
        (0, chunks[0], True),  # a middle chunk presented as the last one
        (2, chunks[2], False),  # the last chunk presented as a middle one
        (1, chunks[0], False),  # chunk 0 at position 1
        (0, chunks[0][:-1], False),  # cut inside the tag
        (0, b"", False),
    ]
    for index, chunk, last in cases:
        with pytest.raises(DecryptionFailed):
            payload_key.open_chunk(index, chunk, last)
    # An empty last chunk is only valid as chunk 0 (the empty message).
    empty_last = AESGCM(_payload_key(head)).encrypt(bytes(11) + b"\x01", b"", None)
    assert payload_key.open_chunk(0, empty_last, True) == b""
    forged = AESGCM(_payload_key(head)).encrypt((3).to_bytes(11, "big") + b"\x01", b"", None)
    with pytest.raises(DecryptionFailed):
        payload_key.open_chunk(3, forged, True)


def _payload_key(head: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        hashes.SHA256(),
        32,
        salt=BLOB_ID,
        info=b"cryptmail/v1/blob-payload" + hashlib.sha256(head).digest(),
    ).derive(MESSAGE_KEY)


def test_payload_key_is_the_documented_one_and_opens_like_the_message_key(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    plaintext = plaintext_of(2 * CHUNK + 5)
    blob = seal(private_keys["x25519"], plaintext)
    header = parse_blob_header(blob)
    payload_key = PayloadKey.derive(header, MESSAGE_KEY, BLOB_ID)
    assert payload_key.key == _payload_key(blob[: header.size])
    assert payload_key.header_digest == hashlib.sha256(blob[: header.size]).digest()
    assert PayloadKey.from_bytes(payload_key.to_bytes()) == payload_key
    assert "key" not in repr(payload_key).replace("PayloadKey(<key>)", "")
    opener = BlobOpener.with_payload_key(header, payload_key)
    assert opener.update(blob[header.size :]) + opener.finalize() == plaintext
    count = header.chunk_count(len(blob))
    for index in range(count):
        start, length = chunk_span(header, index)
        got = payload_key.open_chunk(index, blob[start : start + length], index == count - 1)
        assert got == plaintext[index * CHUNK : (index + 1) * CHUNK]
    with pytest.raises(MalformedObject):
        PayloadKey.from_bytes(payload_key.to_bytes()[:-1])


def test_payload_key_refuses_another_header(private_keys: dict[CurveName, PrivateKey]) -> None:
    key = private_keys["x25519"]
    first = seal(key, plaintext_of(100))
    header = parse_blob_header(first)
    payload_key = PayloadKey.derive(header, MESSAGE_KEY, BLOB_ID)
    # The same message key and id, but the header was re-made (fresh ephemeral key): the
    # body would decrypt under the payload key, so the digest is what must refuse it.
    other = parse_blob_header(seal(key, plaintext_of(100)))
    with pytest.raises(DecryptionFailed):
        payload_key.check(other)
    with pytest.raises(DecryptionFailed):
        BlobOpener.with_payload_key(other, payload_key)
    payload_key.check(header)


def test_plain_blobs() -> None:
    header_bytes = plain_header()
    assert header_bytes == BLOB_MAGIC + bytes([BLOB_VERSION, BLOB_MODE_PLAIN])
    blob = header_bytes + b"From: a@b\r\n\r\nhi\r\n"
    header = parse_blob_header(blob)
    assert not header.sealed and header.size == 8 and header.wrapped is None
    assert header.plaintext_size(len(blob)) == len(blob) - 8
    with pytest.raises(MalformedObject):
        BlobOpener(header, MESSAGE_KEY, BLOB_ID)
    with pytest.raises(MalformedObject):
        unwrap_blob_key(header, _HYPOTHESIS_KEY, BLOB_ID)


# --- tampering: every case is the one opaque DecryptionFailed -----------------------


def _tampered_bodies(blob: bytes) -> dict[str, bytes]:
    head, c = chunks_of(blob)
    assert len(c) == 4 and len(c[3]) < STRIDE
    whole = b"".join(c)
    cases = {
        "swap chunks 0 and 1": head + c[1] + c[0] + c[2] + c[3],
        "swap chunks 1 and 2": head + c[0] + c[2] + c[1] + c[3],
        "duplicate chunk 1": head + c[0] + c[1] + c[1] + c[2] + c[3],
        "drop chunk 1": head + c[0] + c[2] + c[3],
        "drop the last chunk (no final flag)": head + c[0] + c[1] + c[2],
        "append a copy of chunk 0": blob + c[0],
        "append the last chunk again": blob + c[3],
        "append one byte": blob + b"\x00",
        "append an empty tag-sized chunk": blob + bytes(BLOB_TAG_SIZE),
        "last chunk moved to the front": head + c[3] + c[0] + c[1] + c[2],
        "header only": head,
        "one byte of body": head + whole[:1],
        "body shorter than a tag": head + whole[:15],
        "cut one byte short": blob[:-1],
        "cut inside the last tag": blob[:-8],
        "cut inside the last chunk's data": head + whole[: 3 * STRIDE + 5],
    }
    for k in (1, 2, 3):
        cases[f"cut at chunk boundary {k}"] = head + whole[: k * STRIDE]
        cases[f"cut mid-chunk {k}"] = head + whole[: k * STRIDE - STRIDE // 2]
        cases[f"cut {k} into a tag"] = head + whole[: k * STRIDE - BLOB_TAG_SIZE + k]
    return cases


def test_every_tampered_body_fails_opaquely(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    key = private_keys[curve]
    blob = seal(key, plaintext_of(3 * CHUNK + 100))
    for name, bad in _tampered_bodies(blob).items():
        with pytest.raises(DecryptionFailed):
            open_cached(bad)
            pytest.fail(name)
        with pytest.raises(DecryptionFailed):
            open_with_key(bad, key)
            pytest.fail(name)


def test_every_flipped_body_bit_fails(private_keys: dict[CurveName, PrivateKey]) -> None:
    blob = seal(private_keys["x25519"], plaintext_of(2 * CHUNK + 100))
    size = parse_blob_header(blob).size
    # Data and tag of every chunk, including the first and last byte of each.
    positions = set(range(size, len(blob), 37))
    for start in (size, size + STRIDE, size + 2 * STRIDE):
        positions |= {start, start + 1, start + CHUNK - 1, start + CHUNK, start + STRIDE - 1}
    positions |= {len(blob) - 1, len(blob) - BLOB_TAG_SIZE, len(blob) - BLOB_TAG_SIZE - 1}
    for position in sorted(p for p in positions if p < len(blob)):
        for bit in (0, 7):
            with pytest.raises(DecryptionFailed):
                open_cached(_flip(blob, position, bit))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_flipped_bit_anywhere_fails(data: st.DataObject) -> None:
    blob = _FLIP_BLOB
    position = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    with pytest.raises((DecryptionFailed, MalformedObject)):
        open_with_key(_flip(blob, position, bit), _HYPOTHESIS_KEY)


_FLIP_BLOB = seal(_HYPOTHESIS_KEY, plaintext_of(CHUNK + 10))

# Header bytes whose change leaves a parseable header: these must be DecryptionFailed.
# The others (magic, version, mode, curve id, the length bytes, chunk_log2) may instead
# make the header unparseable, which is MalformedObject.
_STRUCTURAL = {"magic", "version", "mode", "curve", "eph_len", "wrapped_len", "chunk_log2"}


def _header_fields(eph_len: int) -> list[tuple[int, str]]:
    names = ["magic"] * 6 + ["version", "mode", "curve"] + ["key_id"] * 32 + ["eph_len"]
    names += ["ephemeral"] * eph_len + ["wrapped_len"] + ["wrapped"] * 48 + ["chunk_log2"]
    return list(enumerate(names))


def test_every_flipped_header_bit_fails(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    key = private_keys[curve]
    blob = seal(key, plaintext_of(CHUNK + 10))
    header = parse_blob_header(blob)
    fields = _header_fields(len(public_info(key).encoded))
    assert len(fields) == header.size
    for position, name in fields:
        for bit in range(8):
            bad = _flip(blob, position, bit)
            expected: type[Exception] | tuple[type[Exception], ...] = (
                (DecryptionFailed, MalformedObject) if name in _STRUCTURAL else DecryptionFailed
            )
            try:
                open_with_key(bad, key)
            except expected:
                continue
            except Exception as exc:  # report which byte broke the rule
                pytest.fail(f"{name} byte {position} bit {bit}: {type(exc).__name__}: {exc}")
            pytest.fail(f"{name} byte {position} bit {bit} was accepted")


def _flip(blob: bytes, position: int, bit: int) -> bytes:
    out = bytearray(blob)
    out[position] ^= 1 << bit
    return bytes(out)


def test_swapped_blob_id_fails(private_keys: dict[CurveName, PrivateKey], curve: CurveName) -> None:
    key = private_keys[curve]
    blob = seal(key, plaintext_of(CHUNK + 1))
    other_id = bytes(16)
    with pytest.raises(DecryptionFailed):
        open_with_key(blob, key, other_id)
    # Even with the right message key from a cache, the payload key binds the id.
    with pytest.raises(DecryptionFailed):
        open_cached(blob, MESSAGE_KEY, other_id)


def test_header_of_another_blob_fails(private_keys: dict[CurveName, PrivateKey]) -> None:
    key = private_keys["x25519"]
    first = seal(key, plaintext_of(100))
    second = seal(key, plaintext_of(100), message_key=os.urandom(32))
    size = parse_blob_header(first).size
    with pytest.raises(DecryptionFailed):
        open_with_key(second[:size] + first[size:], key)
    # The same message key and id, but the header was re-made (fresh ephemeral key).
    third = seal(key, plaintext_of(100))
    assert third[:size] != first[:size]
    with pytest.raises(DecryptionFailed):
        open_cached(third[:size] + first[size:])


def test_wrong_private_key_fails(
    private_keys: dict[CurveName, PrivateKey],
    other_private_keys: dict[CurveName, PrivateKey],
    curve: CurveName,
) -> None:
    blob = seal(private_keys[curve], plaintext_of(10))
    with pytest.raises(DecryptionFailed):
        open_with_key(blob, other_private_keys[curve])
    for other_curve in curve_names():
        if other_curve != curve:
            with pytest.raises(DecryptionFailed):
                open_with_key(blob, private_keys[other_curve])


def test_wrong_message_key_fails(private_keys: dict[CurveName, PrivateKey]) -> None:
    blob = seal(private_keys["x25519"], plaintext_of(10))
    with pytest.raises(DecryptionFailed):
        open_cached(blob, bytes(32))


def _rebuild_header(
    blob: bytes, *, wrapped: bytes | None = None, ephemeral: bytes | None = None
) -> bytes:
    header = parse_blob_header(blob)
    assert header.wrapped is not None
    eph = header.wrapped.ephemeral if ephemeral is None else ephemeral
    wrap = header.wrapped.wrapped if wrapped is None else wrapped
    raw = header.raw
    return b"".join(
        [
            raw[:41],
            bytes([len(eph)]),
            eph,
            bytes([len(wrap)]),
            wrap,
            raw[-1:],
            blob[header.size :],
        ]
    )


@pytest.mark.parametrize("length", [0, 1, 32, 47, 49, 64, 255])
def test_wrong_length_wrapped_key_fails_before_any_ecdh(
    private_keys: dict[CurveName, PrivateKey],
    curve: CurveName,
    length: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = private_keys[curve]
    blob = seal(key, b"hello")
    wrapped = (parse_blob_header(blob).wrapped.wrapped * 6)[:length]  # type: ignore[union-attr]
    bad = _rebuild_header(blob, wrapped=wrapped)
    assert parse_blob_header(bad).wrapped.wrapped == wrapped  # type: ignore[union-attr]

    def no_ecdh(*args: object) -> bytes:
        raise AssertionError("ECDH ran on a wrapped key of the wrong length")

    monkeypatch.setattr(ecies_module, "ecdh", no_ecdh)
    with pytest.raises(DecryptionFailed):
        open_with_key(bad, key)


# Points of small order on Curve25519 (and their non-canonical encodings): ECDH with
# them gives an all-zero secret, which must fail like any other bad header.
LOW_ORDER_X25519 = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("point", LOW_ORDER_X25519)
def test_low_order_ephemeral_key_fails_opaquely(
    private_keys: dict[CurveName, PrivateKey], point: str
) -> None:
    key = private_keys["x25519"]
    bad = _rebuild_header(seal(key, b"hi"), ephemeral=bytes.fromhex(point))
    with pytest.raises(DecryptionFailed):
        open_with_key(bad, key)


@pytest.mark.parametrize(
    "ephemeral",
    [
        b"",
        b"\x00",
        b"\x02" + (1).to_bytes(32, "big"),
        b"\x02" + bytes(32),
        b"\x04" + bytes(64),
        b"\x05" + bytes(32),
        bytes(33),
    ],
    ids=["empty", "infinity", "off-curve", "valid-x0", "uncompressed-zero", "bad-prefix", "zeros"],
)
def test_invalid_nist_ephemeral_key_fails_opaquely(
    private_keys: dict[CurveName, PrivateKey], ephemeral: bytes
) -> None:
    key = private_keys["prime256v1"]
    bad = _rebuild_header(seal(key, b"hi"), ephemeral=ephemeral)
    with pytest.raises(DecryptionFailed):
        open_with_key(bad, key)


def test_uncompressed_encoding_of_the_same_ephemeral_point_fails(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    from cryptography.hazmat.primitives import serialization

    from cryptmail.crypto import load_public_key

    key = private_keys["prime256v1"]
    blob = seal(key, b"hi")
    compressed = parse_blob_header(blob).wrapped.ephemeral  # type: ignore[union-attr]
    point = load_public_key("prime256v1", compressed)
    uncompressed = point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    with pytest.raises(DecryptionFailed):
        open_with_key(_rebuild_header(blob, ephemeral=uncompressed), key)


# --- sizes of truncated blobs -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "chunks"),
    [
        (16, 1),
        (17, 1),
        (STRIDE, 1),
        (STRIDE + 17, 2),
        (2 * STRIDE, 2),
        (2 * STRIDE + 1 + 16, 3),
    ],
)
def test_chunk_count_of_valid_sizes(body: int, chunks: int) -> None:
    header = BlobHeader(mode=BLOB_MODE_SEALED, raw=bytes(100), chunk_size=CHUNK)
    assert header.chunk_count(100 + body) == chunks
    assert header.plaintext_size(100 + body) == body - 16 * chunks


@pytest.mark.parametrize("body", [0, 1, 15, STRIDE + 1, STRIDE + 15, STRIDE + 16, 2 * STRIDE + 16])
def test_impossible_sizes_are_a_decryption_failure(body: int) -> None:
    header = BlobHeader(mode=BLOB_MODE_SEALED, raw=bytes(100), chunk_size=CHUNK)
    with pytest.raises(DecryptionFailed):
        header.plaintext_size(100 + body)
    with pytest.raises(DecryptionFailed):
        header.chunk_count(100 + body)


# --- header garbage: MalformedObject ------------------------------------------------


def _valid_header(private_keys: dict[CurveName, PrivateKey]) -> bytes:
    blob = seal(private_keys["x25519"], b"")
    return blob[: parse_blob_header(blob).size]


def _garbage(head: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "magic only": BLOB_MAGIC,
        "wrong magic": b"CMBLOC" + head[6:],
        "lower-case magic": b"cmblob" + head[6:],
        "version 0": head[:6] + b"\x00" + head[7:],
        "version 2": head[:6] + b"\x02" + head[7:],
        "mode 2": head[:7] + b"\x02" + head[8:],
        "mode 255": head[:7] + b"\xff" + head[8:],
        "curve 0": head[:8] + b"\x00" + head[9:],
        "curve 5": head[:8] + b"\x05" + head[9:],
        "chunk_log2 11": head[:-1] + b"\x0b",
        "chunk_log2 25": head[:-1] + b"\x19",
        "chunk_log2 0": head[:-1] + b"\x00",
        "a Dovecot file": b"CRYPTED\x03\x07" + bytes(40),
    }


def test_header_garbage_is_malformed(private_keys: dict[CurveName, PrivateKey]) -> None:
    head = _valid_header(private_keys)
    for name, data in _garbage(head).items():
        with pytest.raises(MalformedObject):
            parse_blob_header(data)
            pytest.fail(name)


def test_every_truncated_header_is_malformed(private_keys: dict[CurveName, PrivateKey]) -> None:
    head = _valid_header(private_keys)
    parse_blob_header(head)
    for length in range(len(head)):
        with pytest.raises(MalformedObject):
            parse_blob_header(head[:length])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_HEADER_SIZE + 10))
def test_random_bytes_parse_or_are_malformed(data: bytes) -> None:
    try:
        parse_blob_header(data)
    except MalformedObject:
        pass


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=300))
def test_random_headers_after_the_prefix_never_raise_anything_else(tail: bytes) -> None:
    data = BLOB_MAGIC + bytes([BLOB_VERSION, BLOB_MODE_SEALED]) + tail
    try:
        open_with_key(data, _HYPOTHESIS_KEY)
    except CryptoError:
        pass


def test_max_header_size_covers_the_largest_header() -> None:
    largest = BLOB_MAGIC + bytes([1, 1, 4]) + bytes(32) + b"\xff" + bytes(255)
    largest += b"\xff" + bytes(255) + b"\x10"
    assert len(largest) == MAX_HEADER_SIZE
    header = parse_blob_header(largest + b"body")
    assert header.size == MAX_HEADER_SIZE


# --- the blob wrap's own label (issue 14, finding 6) ---------------------------------


def _version_1_blob(private_key: PrivateKey, plaintext: bytes) -> bytes:
    """A blob as written before version 3: the message key wrapped with the shared
    label and the bare blob id; everything else as now."""
    info = public_info(private_key)
    wrapped = wrap_key(MESSAGE_KEY, info, BLOB_ID)
    header = b"".join(
        [
            BLOB_MAGIC,
            bytes([1, BLOB_MODE_SEALED, CURVE_IDS[info.curve]]),
            info.key_id,
            bytes([len(wrapped.ephemeral)]),
            wrapped.ephemeral,
            bytes([48]),
            wrapped.wrapped,
            bytes([CHUNK.bit_length() - 1]),
        ]
    )
    cipher = stream_module._payload_cipher(MESSAGE_KEY, BLOB_ID, header)
    assert len(plaintext) <= CHUNK
    return header + cipher.encrypt(stream_module._nonce(0, True), plaintext, None)


def test_version_1_blobs_still_open(
    private_keys: dict[CurveName, PrivateKey], curve: CurveName
) -> None:
    blob = _version_1_blob(private_keys[curve], b"an old message")
    assert parse_blob_header(blob).version == 1
    assert open_with_key(blob, private_keys[curve]) == b"an old message"


def test_the_blob_wrap_has_its_own_label_and_a_length_prefixed_context(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    key = private_keys["x25519"]
    header = parse_blob_header(seal(key, b"new"))
    assert header.version == BLOB_VERSION == 3
    assert header.wrapped is not None
    got = unwrap_key(header.wrapped, key, context(BLOB_ID), label=b"cryptmail/v3/blob-key-wrap")
    assert got == MESSAGE_KEY
    with pytest.raises(DecryptionFailed):
        unwrap_key(header.wrapped, key, BLOB_ID)  # the version-1 label and context


def test_a_version_3_blob_relabelled_version_1_fails(
    private_keys: dict[CurveName, PrivateKey],
) -> None:
    key = private_keys["prime256v1"]
    blob = seal(key, b"new mail")
    downgraded = blob[:6] + b"\x01" + blob[7:]
    with pytest.raises(DecryptionFailed):
        open_with_key(downgraded, key)
    with pytest.raises(DecryptionFailed):
        open_cached(downgraded)
    # And back: an old blob set to version 3 fails too.
    old = _version_1_blob(key, b"old mail")
    with pytest.raises(DecryptionFailed):
        open_with_key(old[:6] + b"\x03" + old[7:], key)
