"""Dovecot mail-crypt message files: read v1 and v2, write v2 (spec §3).

Reading never releases a byte that has not been authenticated. Dovecot's own reader
returns plaintext before it checks the GCM tag at the end of the file (§3.5); ours makes
two passes over a seekable file instead: the first decrypts into nothing and checks the
tag (or the HMAC), the second decrypts for the caller. Nothing is buffered, so memory
stays constant, and no plaintext touches a temporary file. If the file changes between
the passes, the second pass fails at its end, having released bytes that are not the
verified ones; files being imported are at rest, so this is a corner we accept.

v1 files and v2 files flagged "no integrity" have nothing to verify; they are refused
unless the caller asks for them with `allow_unauthenticated=True`.
"""

from __future__ import annotations

import hmac
import io
import os
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    algorithms,
    modes,
)

from cryptmail.crypto.dovecot._constants import (
    DEFAULT_CIPHER,
    DEFAULT_HASH,
    FLAG_AEAD,
    FLAG_HMAC,
    KEY_DATA_EXTRA_SIZE,
    STREAM_CIPHERS,
    STREAM_HASHES,
    STREAM_MAGIC,
    STREAM_PBKDF2_ROUNDS,
    STREAM_VERSION_1,
    STREAM_VERSION_2,
)
from cryptmail.crypto.dovecot._der import encode_oid
from cryptmail.crypto.dovecot._header import V2_FIXED_SIZE, DovecotHeader, read_dovecot_header
from cryptmail.crypto.dovecot._keyring import DovecotKeyring
from cryptmail.crypto.dovecot._keys import (
    DovecotPublicKey,
    key_id,
)
from cryptmail.crypto.dovecot._mailkey import key_data_hash, unwrap_v1, unwrap_v2, wrap_key_material
from cryptmail.errors import DecryptionFailed, DovecotFormatError

CHUNK_SIZE = 1 << 16
_WHAT = "Dovecot mail file"


# --- reading ------------------------------------------------------------------------


def _ranges(fileobj: BinaryIO, start: int, end: int, chunk_size: int) -> Iterator[bytes]:
    fileobj.seek(start)
    remaining = end - start
    while remaining > 0:
        piece = fileobj.read(min(chunk_size, remaining))
        if not piece:
            raise DecryptionFailed(f"{_WHAT} (it became shorter while being read)")
        remaining -= len(piece)
        yield piece


def _read_exact(fileobj: BinaryIO, start: int, size: int) -> bytes:
    return b"".join(_ranges(fileobj, start, start + size, size or 1))


class _Body:
    """Where the body and trailer of an opened file lie, and the key to decrypt them."""

    def __init__(
        self,
        fileobj: BinaryIO,
        header: DovecotHeader,
        key_material: bytes,
        start: int,
        end: int,
        chunk_size: int,
    ) -> None:
        self.fileobj = fileobj
        self.header = header
        self.start = start
        self.end = end
        self.chunk_size = chunk_size
        if header.version == STREAM_VERSION_1:
            # v1: the whole 32-byte seed is the AES-256-CTR key, the IV is zero.
            self.key, self.iv, self.extra = key_material, bytes(16), b""
        else:
            _, key_size, iv_size, _ = STREAM_CIPHERS[header.cipher]
            self.key = key_material[:key_size]
            self.iv = key_material[key_size : key_size + iv_size]
            self.extra = key_material[key_size + iv_size :]

    def chunks(self) -> Iterator[bytes]:
        return _ranges(self.fileobj, self.start, self.end, self.chunk_size)

    def trailer(self) -> bytes:
        return _read_exact(self.fileobj, self.end, self.header.trailer_size)

    def gcm(self, tag: bytes) -> AEADDecryptionContext:
        context = Cipher(algorithms.AES(self.key), modes.GCM(self.iv, tag)).decryptor()
        context.authenticate_additional_data(self.extra)
        return context

    def verify(self) -> None:
        """First pass: check the tag or the HMAC without keeping any plaintext."""
        if self.header.flags & FLAG_AEAD:
            context = self.gcm(self.trailer())
            for piece in self.chunks():
                context.update(piece)
            try:
                context.finalize()
            except InvalidTag:
                raise DecryptionFailed(_WHAT) from None
        elif self.header.flags & FLAG_HMAC:
            mac = hmac.new(self.extra, digestmod=self.header.digest)
            for piece in self.chunks():
                mac.update(piece)
            if not hmac.compare_digest(mac.digest(), self.trailer()):
                raise DecryptionFailed(_WHAT)

    def plaintext(self) -> Iterator[bytes]:
        """Second pass: decrypt for the caller."""
        if self.header.version == STREAM_VERSION_1:
            ctr = Cipher(algorithms.AES(self.key), modes.CTR(self.iv)).decryptor()
            yield from (ctr.update(piece) for piece in self.chunks())
            return
        if self.header.flags & FLAG_AEAD:
            context = self.gcm(self.trailer())
            yield from (context.update(piece) for piece in self.chunks())
            try:
                context.finalize()
            except InvalidTag:
                raise DecryptionFailed(f"{_WHAT} (it changed while being read)") from None
            return
        if (self.end - self.start) % 16 or self.end == self.start:
            raise DecryptionFailed(_WHAT)
        cbc = Cipher(algorithms.AES(self.key), modes.CBC(self.iv)).decryptor()
        unpadder = symmetric_padding.PKCS7(128).unpadder()
        for piece in self.chunks():
            yield unpadder.update(cbc.update(piece))
        try:
            yield unpadder.update(cbc.finalize()) + unpadder.finalize()
        except ValueError:
            raise DecryptionFailed(_WHAT) from None


def read_dovecot_file(
    fileobj: BinaryIO,
    keyring: DovecotKeyring,
    *,
    allow_plaintext: bool = True,
    allow_unauthenticated: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Open the mail file in the seekable binary `fileobj` (from its current position to
    its end) and return an iterator over its plaintext, in pieces of at most `chunk_size`.

    Every check (key id, key unwrap, key-data hash, GCM tag or HMAC over the whole body)
    is done before this returns, so a caller that gets the iterator gets only verified
    bytes. An empty file is an empty message; a file without the magic is returned as it
    is, as Dovecot does, unless `allow_plaintext` is False. v1 files and v2 files without
    integrity are refused unless `allow_unauthenticated` is True.

    Raises DovecotFormatError (malformed header, refused kind of file),
    DovecotKeyNotFound (no key in `keyring` for the recipient), DecryptionFailed (wrong
    key, tampered or truncated file; one type for all).
    """
    if not fileobj.seekable():
        raise DovecotFormatError(f"reading a {_WHAT} needs a seekable file (two passes)")
    base = fileobj.tell()
    end = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(base)
    header = read_dovecot_header(fileobj)
    if header is None:
        if end > base and not allow_plaintext:
            raise DovecotFormatError(f"{_WHAT} is not encrypted (no mail-crypt magic)")
        return _ranges(fileobj, base, end, chunk_size)
    if not header.authenticated and not allow_unauthenticated:
        raise DovecotFormatError(
            f"{_WHAT} (format v{header.version}, flags {header.flags:#x}) has no integrity "
            "protection; read it only if you accept unauthenticated plaintext"
        )
    body_start = base + header.size
    body_end = end - header.trailer_size
    if body_end < body_start:
        raise DecryptionFailed(_WHAT)
    if header.version == STREAM_VERSION_1:
        key_material = unwrap_v1(header, keyring)
    else:
        key_material = unwrap_v2(header, keyring)
    body = _Body(fileobj, header, key_material, body_start, body_end, chunk_size)
    body.verify()
    return body.plaintext()


def decrypt_dovecot_bytes(
    data: bytes,
    keyring: DovecotKeyring,
    *,
    allow_plaintext: bool = True,
    allow_unauthenticated: bool = False,
) -> bytes:
    """`read_dovecot_file` for a whole file held in memory; returns the plaintext.

    Raises as `read_dovecot_file`.
    """
    return b"".join(
        read_dovecot_file(
            io.BytesIO(data),
            keyring,
            allow_plaintext=allow_plaintext,
            allow_unauthenticated=allow_unauthenticated,
        )
    )


# --- writing ------------------------------------------------------------------------


def encrypt_dovecot_stream(chunks: Iterable[bytes], recipient: DovecotPublicKey) -> Iterator[bytes]:
    """Encrypt plaintext pieces into a v2 mail file as Dovecot 2.3 mail-crypt writes it
    (§3.6: AES-256-GCM, SHA-256, one recipient, EC or RSA). Yields the file in pieces.

    As in Dovecot, an empty plaintext gives an empty file (no header at all).
    """
    key_size, iv_size = STREAM_CIPHERS[DEFAULT_CIPHER][1:3]
    return _encrypt_dovecot_stream(
        chunks,
        recipient,
        key_material=os.urandom(key_size + iv_size + KEY_DATA_EXTRA_SIZE),
        ephemeral_key=None,
    )


def write_dovecot_file(plaintext: bytes, recipient: DovecotPublicKey) -> bytes:
    """The v2 mail file of `plaintext` for `recipient` (see `encrypt_dovecot_stream`)."""
    return b"".join(encrypt_dovecot_stream([plaintext], recipient))


def _encrypt_dovecot_stream(
    chunks: Iterable[bytes],
    recipient: DovecotPublicKey,
    *,
    key_material: bytes,
    ephemeral_key: ec.EllipticCurvePrivateKey | None,
) -> Iterator[bytes]:
    """`encrypt_dovecot_stream` with the per-mail key and ephemeral key fixed, for tests."""
    key_size, iv_size = STREAM_CIPHERS[DEFAULT_CIPHER][1:3]
    if len(key_material) != key_size + iv_size + KEY_DATA_EXTRA_SIZE:
        raise ValueError("per-mail key material must be 60 bytes for AES-256-GCM")
    context: AEADEncryptionContext | None = None
    for piece in chunks:
        if not piece:
            continue
        if context is None:
            yield _v2_header(recipient, key_material, ephemeral_key)
            context = Cipher(
                algorithms.AES(key_material[:key_size]),
                modes.GCM(key_material[key_size : key_size + iv_size]),
            ).encryptor()
            context.authenticate_additional_data(key_material[key_size + iv_size :])
        yield context.update(piece)
    if context is not None:
        tail = context.finalize()
        yield tail + context.tag


def _v2_header(
    recipient: DovecotPublicKey,
    key_material: bytes,
    ephemeral_key: ec.EllipticCurvePrivateKey | None,
) -> bytes:
    key_type, point, wrapped = wrap_key_material(recipient, key_material, ephemeral_key)
    key_hash = key_data_hash(DEFAULT_HASH, key_material)
    key_data = b"".join(
        [
            b"\x01",
            bytes([key_type]),
            bytes.fromhex(key_id(recipient)),
            len(point).to_bytes(4, "big"),
            point,
            len(wrapped).to_bytes(4, "big"),
            wrapped,
            len(key_hash).to_bytes(4, "big"),
            key_hash,
        ]
    )
    algorithms_part = encode_oid(STREAM_CIPHERS[DEFAULT_CIPHER][0]) + encode_oid(
        STREAM_HASHES[DEFAULT_HASH]
    )
    size = V2_FIXED_SIZE + len(algorithms_part) + 4 + 4 + len(key_data)
    return b"".join(
        [
            STREAM_MAGIC,
            bytes([STREAM_VERSION_2]),
            FLAG_AEAD.to_bytes(4, "big"),
            size.to_bytes(4, "big"),
            algorithms_part,
            STREAM_PBKDF2_ROUNDS.to_bytes(4, "big"),
            len(key_data).to_bytes(4, "big"),
            key_data,
        ]
    )
