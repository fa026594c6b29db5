"""Our message blob format: a small header, then the body in STREAM chunks.

Layout (docs/security.md has the normative version):

    magic "CMBLOB" | version u8 = 3 (1 is still read) | mode u8
    mode 0 (plain):  body = the message bytes as delivered
    mode 1 (sealed): curve u8 | key_id 32 | eph_len u8 | ephemeral | wrapped_len u8 |
                     wrapped | chunk_log2 u8 ; body = chunks

    payload_key = HKDF-SHA256(ikm=message_key, salt=blob_id,
                              info=LABEL_BLOB_PAYLOAD || SHA-256(header))
    chunk i     = AES-256-GCM(payload_key, nonce = u88(i) || last_flag, aad="")
                  .encrypt(plaintext[i*C : (i+1)*C])

Every chunk but the last holds exactly C plaintext bytes; the last holds 1..C bytes, or
0 only when the whole body is empty. The last-chunk flag in the nonce makes truncation
at a chunk boundary fail, the counter makes reordering fail, the header hash and the
blob id in the payload key make header edits and swapped blobs fail. No byte of a chunk
is released before its tag verifies.

Version 3 wraps the message key with label LABEL_BLOB_KEY_WRAP and context
lp(blob_id) (crypto._context); version 1 used the shared LABEL_ECIES_WRAP with the bare
blob id. Nothing else differs; a version byte changed from 3 to 1 changes the wrap
label and the header digest, so the blob fails to open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._context import context
from cryptmail.crypto._ecies import WrappedKey, unwrap_key, wrap_key
from cryptmail.crypto._keypair import CurveName, PrivateKey, PublicKeyInfo
from cryptmail.crypto._labels import (
    BLOB_CHUNK_SIZE,
    BLOB_MAGIC,
    BLOB_MODE_PLAIN,
    BLOB_MODE_SEALED,
    BLOB_TAG_SIZE,
    BLOB_VERSION,
    BLOB_VERSION_1,
    CURVE_IDS,
    LABEL_BLOB_KEY_WRAP,
    LABEL_BLOB_PAYLOAD,
    LABEL_ECIES_WRAP,
    MESSAGE_KEY_SIZE,
)
from cryptmail.errors import DecryptionFailed, MalformedObject

# CURVE_IDS's keys are exactly the CurveName literals, which mypy cannot see.
_CURVES_BY_ID: dict[int, CurveName] = {v: k for k, v in CURVE_IDS.items()}  # type: ignore[misc]
_PREFIX = BLOB_MAGIC + bytes([BLOB_VERSION])
_VERSIONS = (BLOB_VERSION_1, BLOB_VERSION)
MAX_HEADER_SIZE = len(_PREFIX) + 1 + 1 + 32 + 1 + 255 + 1 + 255 + 1
_MIN_CHUNK_LOG2, _MAX_CHUNK_LOG2 = 12, 24


class BlobHeader(NamedTuple):
    """A parsed blob header. `raw` is its exact bytes, `size` their count."""

    mode: int
    raw: bytes  # holds the wrapped message key: kept out of repr
    curve: CurveName | None = None
    key_id: bytes = b""
    wrapped: WrappedKey | None = None  # kept out of repr too
    chunk_size: int = BLOB_CHUNK_SIZE
    version: int = BLOB_VERSION

    def __repr__(self) -> str:
        return (
            f"BlobHeader(mode={self.mode}, curve={self.curve!r}, key_id={self.key_id!r}, "
            f"chunk_size={self.chunk_size})"
        )

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def sealed(self) -> bool:
        return self.mode == BLOB_MODE_SEALED

    def plaintext_size(self, blob_size: int) -> int:
        """Plaintext length of a blob of `blob_size` bytes with this header.

        Raises DecryptionFailed for a sealed blob whose body length no valid blob has
        (cut inside a tag, or ending in an empty chunk after full ones): it was truncated.
        """
        body = blob_size - self.size
        if not self.sealed:
            return body
        return body - self.chunk_count(blob_size) * BLOB_TAG_SIZE

    def chunk_count(self, blob_size: int) -> int:
        """Number of chunks of a sealed blob of `blob_size` bytes; DecryptionFailed if no
        valid blob has that size (see `plaintext_size`)."""
        body = blob_size - self.size
        full, rest = divmod(body, self.chunk_size + BLOB_TAG_SIZE)
        if rest == 0 and full > 0:
            return full
        # The last chunk holds 1..C bytes, or 0 only when it is the only chunk.
        if body < BLOB_TAG_SIZE or 0 < rest < BLOB_TAG_SIZE or (rest == BLOB_TAG_SIZE and full):
            raise DecryptionFailed("blob")
        return full + 1


def plain_header() -> bytes:
    """The header of a plain (unencrypted) blob."""
    return _PREFIX + bytes([BLOB_MODE_PLAIN])


def parse_blob_header(data: bytes) -> BlobHeader:
    """Parse the header at the start of `data` (pass at least MAX_HEADER_SIZE bytes or the
    whole blob). Raises MalformedObject if it is not one of ours."""
    pos = len(_PREFIX)
    if (
        not data.startswith(BLOB_MAGIC)
        or len(data) < pos + 1
        or data[len(BLOB_MAGIC)] not in _VERSIONS
    ):
        raise MalformedObject("not a cryptmail blob (bad magic or version)")
    version = data[len(BLOB_MAGIC)]
    mode = data[pos]
    pos += 1
    if mode == BLOB_MODE_PLAIN:
        return BlobHeader(mode=mode, raw=data[:pos], version=version)
    if mode != BLOB_MODE_SEALED:
        raise MalformedObject(f"unknown blob mode {mode}")
    try:
        curve = _CURVES_BY_ID[data[pos]]
        pos += 1
        key_id = data[pos : pos + 32]
        pos += 32
        eph_len = data[pos]
        ephemeral = data[pos + 1 : pos + 1 + eph_len]
        pos += 1 + eph_len
        wrapped_len = data[pos]
        wrapped = data[pos + 1 : pos + 1 + wrapped_len]
        pos += 1 + wrapped_len
        chunk_log2 = data[pos]
        pos += 1
    except (IndexError, KeyError) as exc:
        raise MalformedObject("blob header is truncated or names an unknown curve") from exc
    if len(key_id) != 32 or len(ephemeral) != eph_len or len(wrapped) != wrapped_len:
        raise MalformedObject("blob header is truncated")
    if not _MIN_CHUNK_LOG2 <= chunk_log2 <= _MAX_CHUNK_LOG2:
        raise MalformedObject(f"blob chunk size 2^{chunk_log2} is out of range")
    return BlobHeader(
        mode=mode,
        raw=data[:pos],
        curve=curve,
        key_id=key_id,
        wrapped=WrappedKey(ephemeral, wrapped),
        chunk_size=1 << chunk_log2,
        version=version,
    )


def _payload_cipher(message_key: bytes, blob_id: bytes, header: bytes) -> AESGCM:
    return AESGCM(_derive_payload(message_key, blob_id, hashlib.sha256(header).digest()))


def _derive_payload(message_key: bytes, blob_id: bytes, header_digest: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=blob_id,
        info=LABEL_BLOB_PAYLOAD + header_digest,
    ).derive(message_key)


class PayloadKey:
    """The key one sealed blob's chunks are encrypted under, with the SHA-256 of the
    header it was derived for.

    Cached (sealed) after the first read, it saves later reads the EC unwrap and the
    HKDF. `check` compares the digest, so an edited header still fails as it does when
    the key is derived from the message key.
    """

    __slots__ = ("_aead", "header_digest", "key")

    SIZE = 64
    """Bytes of `to_bytes`: the key, then the header digest."""

    def __init__(self, key: bytes, header_digest: bytes) -> None:
        if len(key) != 32 or len(header_digest) != 32:
            raise MalformedObject("a payload key is 32 bytes and its header digest 32")
        self.key = key
        self.header_digest = header_digest
        self._aead = AESGCM(key)

    @classmethod
    def derive(cls, header: BlobHeader, message_key: bytes, blob_id: bytes) -> PayloadKey:
        digest = hashlib.sha256(header.raw).digest()
        return cls(_derive_payload(message_key, blob_id, digest), digest)

    @classmethod
    def from_bytes(cls, data: bytes) -> PayloadKey:
        if len(data) != cls.SIZE:
            raise MalformedObject("a cached payload key has the wrong length")
        return cls(data[:32], data[32:])

    def to_bytes(self) -> bytes:
        return self.key + self.header_digest

    def __repr__(self) -> str:
        return "PayloadKey(<key>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PayloadKey) and hmac.compare_digest(
            self.to_bytes(), other.to_bytes()
        )

    __hash__ = None  # type: ignore[assignment]  # holds a key: never a dict key

    def check(self, header: BlobHeader) -> None:
        """DecryptionFailed unless `header` is the one this key was derived for."""
        if not hmac.compare_digest(hashlib.sha256(header.raw).digest(), self.header_digest):
            raise DecryptionFailed("blob header")

    def open_chunk(self, index: int, chunk: bytes | memoryview, last: bool) -> bytes:
        """Decrypt the single chunk `index` (for reads at an offset)."""
        try:
            plaintext = self._aead.decrypt(_nonce(index, last), chunk, None)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionFailed("blob") from exc
        if last and not plaintext and index > 0:
            raise DecryptionFailed("blob")
        return plaintext


def _nonce(index: int, last: bool) -> bytes:
    if index >= 1 << 88:
        raise MalformedObject("blob has too many chunks")
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class BlobSealer:
    """Encrypts one message body into a sealed blob, chunk by chunk, in constant memory.

    `header` is ready at construction; feed the body to `update` and write what it
    returns; `finalize` returns the last chunk. `message_key` may be cached (sealed under
    the user's data key) so later reads need no EC operation.
    """

    def __init__(self, recipient: PublicKeyInfo, blob_id: bytes) -> None:
        self._init(os.urandom(MESSAGE_KEY_SIZE), recipient, blob_id, BLOB_CHUNK_SIZE)

    @classmethod
    def _from_parts(
        cls, message_key: bytes, recipient: PublicKeyInfo, blob_id: bytes, chunk_size: int
    ) -> BlobSealer:
        # For vectors and tests only: a fixed message key and chunk size.
        sealer = cls.__new__(cls)
        sealer._init(message_key, recipient, blob_id, chunk_size)
        return sealer

    def _init(
        self, message_key: bytes, recipient: PublicKeyInfo, blob_id: bytes, chunk_size: int
    ) -> None:
        if chunk_size & (chunk_size - 1) or not (
            1 << _MIN_CHUNK_LOG2 <= chunk_size <= 1 << _MAX_CHUNK_LOG2
        ):
            raise ValueError("chunk size must be a power of two between 4 KiB and 16 MiB")
        self.message_key = message_key
        wrapped = wrap_key(message_key, recipient, context(blob_id), label=LABEL_BLOB_KEY_WRAP)
        self.header = b"".join(
            [
                _PREFIX,
                bytes([BLOB_MODE_SEALED, CURVE_IDS[recipient.curve]]),
                recipient.key_id,
                bytes([len(wrapped.ephemeral)]),
                wrapped.ephemeral,
                bytes([len(wrapped.wrapped)]),
                wrapped.wrapped,
                bytes([chunk_size.bit_length() - 1]),
            ]
        )
        self._cipher = _payload_cipher(message_key, blob_id, self.header)
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._done = False

    def update(self, data: bytes) -> bytes:
        """Accept plaintext; return the ciphertext of every chunk now known not to be last."""
        if self._done:
            raise ValueError("sealer already finalized")
        buffer = self._buffer
        size = self._chunk_size
        out: list[bytes] = []
        # Whole chunks are encrypted straight from `data`; only a chunk's start or end
        # waits in the buffer. Keep at least one byte back: a full chunk is the last one
        # if nothing follows.
        with memoryview(data) as view:
            start = 0
            if buffer:
                start = min(len(view), size - len(buffer))
                buffer += view[:start]
                if start == len(view):
                    return b""
                out.append(self._seal_chunk(buffer))
                buffer.clear()
            while len(view) - start > size:
                out.append(self._seal_chunk(view[start : start + size]))
                start += size
            buffer += view[start:]
        return b"".join(out)

    def _seal_chunk(self, chunk: bytes | bytearray | memoryview) -> bytes:
        sealed = self._cipher.encrypt(_nonce(self._index, False), chunk, None)
        self._index += 1
        return sealed

    def finalize(self) -> bytes:
        """The last chunk."""
        if self._done:
            raise ValueError("sealer already finalized")
        self._done = True
        chunk = bytes(self._buffer)
        self._buffer.clear()
        return self._cipher.encrypt(_nonce(self._index, True), chunk, None)


def unwrap_blob_key(header: BlobHeader, private_key: PrivateKey, blob_id: bytes) -> bytes:
    """The message key of a sealed blob; DecryptionFailed if it is not ours."""
    if header.wrapped is None:
        raise MalformedObject("a plain blob has no message key")
    if header.version == BLOB_VERSION_1:
        return unwrap_key(header.wrapped, private_key, blob_id, label=LABEL_ECIES_WRAP)
    return unwrap_key(header.wrapped, private_key, context(blob_id), label=LABEL_BLOB_KEY_WRAP)


class BlobOpener:
    """Decrypts a sealed blob body chunk by chunk; never returns an unverified byte.

    Feed the bytes after the header to `update`; it returns verified plaintext. Call
    `finalize` at the end: it verifies the last chunk and raises DecryptionFailed if the
    blob was truncated.
    """

    def __init__(self, header: BlobHeader, message_key: bytes, blob_id: bytes) -> None:
        if not header.sealed:
            raise MalformedObject("BlobOpener is for sealed blobs")
        self._start(header, _payload_cipher(message_key, blob_id, header.raw))

    @classmethod
    def with_payload_key(cls, header: BlobHeader, payload_key: PayloadKey) -> BlobOpener:
        """An opener from a cached payload key (checked against `header`)."""
        if not header.sealed:
            raise MalformedObject("BlobOpener is for sealed blobs")
        payload_key.check(header)
        opener = cls.__new__(cls)
        opener._start(header, payload_key._aead)
        return opener

    def _start(self, header: BlobHeader, cipher: AESGCM) -> None:
        self._cipher = cipher
        self._stride = header.chunk_size + BLOB_TAG_SIZE
        self._buffer = bytearray()
        self._index = 0
        self._done = False

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise ValueError("opener already finalized")
        self._buffer += data
        out: list[bytes] = []
        stride = self._stride
        while len(self._buffer) > stride:
            chunk = bytes(self._buffer[:stride])
            del self._buffer[:stride]
            out.append(self._open(chunk, last=False))
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("opener already finalized")
        self._done = True
        chunk = bytes(self._buffer)
        self._buffer.clear()
        plaintext = self._open(chunk, last=True)
        if not plaintext and self._index > 1:
            # Only an empty body may end in an empty chunk.
            raise DecryptionFailed("blob")
        return plaintext

    def _open(self, chunk: bytes, last: bool) -> bytes:
        try:
            plaintext = self._cipher.decrypt(_nonce(self._index, last), chunk, None)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionFailed("blob") from exc
        self._index += 1
        return plaintext


def chunk_span(header: BlobHeader, index: int) -> tuple[int, int]:
    """Byte offset and length of chunk `index` inside the blob (the last may be shorter)."""
    stride = header.chunk_size + BLOB_TAG_SIZE
    return header.size + index * stride, stride
