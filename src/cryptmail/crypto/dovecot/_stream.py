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

import hashlib
import hmac
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    algorithms,
    modes,
)

from cryptmail.crypto.dovecot._constants import (
    AEAD_TAG_SIZE,
    DEFAULT_CIPHER,
    DEFAULT_HASH,
    FLAG_AEAD,
    FLAG_HMAC,
    FLAG_NO_INTEGRITY,
    KEY_DATA_EXTRA_SIZE,
    KEY_DATA_HASH_ROUNDS,
    KEY_TYPE_EC,
    KEY_TYPE_RSA,
    MAX_HEADER_SIZE,
    MAX_PBKDF2_ROUNDS,
    STREAM_CIPHERS,
    STREAM_HASHES,
    STREAM_MAGIC,
    STREAM_PBKDF2_ROUNDS,
    STREAM_VERSION_1,
    STREAM_VERSION_2,
    STREAM_WRAP_IV_SIZE,
    STREAM_WRAP_KEY_SIZE,
)
from cryptmail.crypto.dovecot._der import decode_oid, encode_oid
from cryptmail.crypto.dovecot._keyring import DovecotKeyring
from cryptmail.crypto.dovecot._keys import (
    RSA_OAEP,
    DovecotPrivateKey,
    DovecotPublicKey,
    ecdh_secret,
    key_id,
)
from cryptmail.errors import DecryptionFailed, DovecotFormatError, DovecotKeyNotFound

CHUNK_SIZE = 1 << 16
_WHAT = "Dovecot mail file"
_CIPHER_BY_OID = {oid: name for name, (oid, _, _, _) in STREAM_CIPHERS.items()}
_HASH_BY_OID = {oid: name for name, oid in STREAM_HASHES.items()}
_V1_CIPHER = "aes-256-ctr"
_V2_FIXED_SIZE = len(STREAM_MAGIC) + 1 + 4 + 4


@dataclass(frozen=True)
class DovecotRecipient:
    """One recipient of a file's per-mail key: key type, recipient key id (lowercase hex;
    old-style in v1 files), the ephemeral public point (EC) and the wrapped key."""

    key_type: int
    key_id: str
    ephemeral_key: bytes
    wrapped_key: bytes


@dataclass(frozen=True)
class DovecotHeader:
    """A parsed file header. `size` is the offset where the body starts.

    v2: `cipher` and `digest` are names ("aes-256-gcm", "sha256"), `key_hash` the key-data
    hash chain. v1: cipher "aes-256-ctr", digest "sha256", rounds 0, flags 0, and
    `key_hash` is SHA-256 of the seed (the recipient's `wrapped_key` is the locked seed).
    """

    version: int
    flags: int
    size: int
    cipher: str
    digest: str
    rounds: int
    recipients: tuple[DovecotRecipient, ...]
    key_hash: bytes

    @property
    def trailer_size(self) -> int:
        """Bytes after the body: the GCM tag, the HMAC, or nothing."""
        if self.flags & FLAG_AEAD:
            return AEAD_TAG_SIZE
        if self.flags & FLAG_HMAC:
            return hashlib.new(self.digest).digest_size
        return 0

    @property
    def authenticated(self) -> bool:
        """Whether the body is protected by a tag or an HMAC (v1 files never are)."""
        return self.version == STREAM_VERSION_2 and bool(self.flags & (FLAG_AEAD | FLAG_HMAC))


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise DovecotFormatError(f"{_WHAT} header is truncated in its {what}")
        piece = self.data[self.offset : end]
        self.offset = end
        return piece

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def counted(self, length_size: int, what: str) -> bytes:
        return self.take(self.number(length_size, what), what)


def parse_dovecot_header(data: bytes) -> DovecotHeader:
    """Parse the header at the start of `data`, which must hold at least the whole header.

    Raises DovecotFormatError if the magic, version, flags, algorithms or any length
    field is not what Dovecot 2.3 writes.
    """
    if not data.startswith(STREAM_MAGIC) or len(data) <= len(STREAM_MAGIC):
        raise DovecotFormatError(f"{_WHAT} does not start with the mail-crypt magic")
    version = data[len(STREAM_MAGIC)]
    if version == STREAM_VERSION_2:
        return _parse_v2(data)
    if version == STREAM_VERSION_1:
        return _parse_v1(data)
    raise DovecotFormatError(f"{_WHAT} has unknown format version {version}")


def _parse_v2(data: bytes) -> DovecotHeader:
    reader = _Reader(data, len(STREAM_MAGIC) + 1)
    flags = reader.number(4, "flags")
    size = reader.number(4, "header length")
    if not _V2_FIXED_SIZE < size <= min(len(data), MAX_HEADER_SIZE):
        raise DovecotFormatError(f"{_WHAT} header length {size} is impossible or truncated")
    reader.data = data[:size]
    cipher_oid, reader.offset = decode_oid(reader.data, reader.offset)
    digest_oid, reader.offset = decode_oid(reader.data, reader.offset)
    cipher = _CIPHER_BY_OID.get(cipher_oid)
    digest = _HASH_BY_OID.get(digest_oid)
    if cipher is None or digest is None:
        raise DovecotFormatError(
            f"{_WHAT} uses cipher {cipher_oid} and hash {digest_oid}; supported are "
            f"{', '.join(STREAM_CIPHERS)} with {', '.join(STREAM_HASHES)}"
        )
    _check_flags(flags, cipher)
    rounds = reader.number(4, "rounds")
    if not 1 <= rounds <= MAX_PBKDF2_ROUNDS:
        raise DovecotFormatError(f"{_WHAT} asks for {rounds} PBKDF2 rounds; refused")
    if reader.number(4, "key data length") != size - reader.offset:
        raise DovecotFormatError(f"{_WHAT} key data length disagrees with the header length")
    count = reader.number(1, "recipient count")
    if count == 0:
        raise DovecotFormatError(f"{_WHAT} has no recipient")
    recipients = tuple(_parse_recipient(reader) for _ in range(count))
    key_hash = reader.counted(4, "key data hash")
    if len(key_hash) != hashlib.new(digest).digest_size or reader.offset != size:
        raise DovecotFormatError(f"{_WHAT} key data section is malformed")
    return DovecotHeader(
        STREAM_VERSION_2, flags, size, cipher, digest, rounds, recipients, key_hash
    )


def _check_flags(flags: int, cipher: str) -> None:
    aead = STREAM_CIPHERS[cipher][3]
    allowed = (FLAG_AEAD,) if aead else (FLAG_HMAC, FLAG_NO_INTEGRITY)
    if flags not in allowed:
        raise DovecotFormatError(f"{_WHAT} has flags {flags:#x}, impossible with {cipher}")


def _parse_recipient(reader: _Reader) -> DovecotRecipient:
    key_type = reader.number(1, "recipient key type")
    recipient_id = reader.take(32, "recipient key id").hex()
    ephemeral = reader.counted(4, "ephemeral key")
    wrapped = reader.counted(4, "wrapped key")
    if key_type not in (KEY_TYPE_EC, KEY_TYPE_RSA) or (key_type == KEY_TYPE_RSA) == bool(ephemeral):
        raise DovecotFormatError(f"{_WHAT} recipient has key type {key_type} or a bad key")
    return DovecotRecipient(key_type, recipient_id, ephemeral, wrapped)


def _parse_v1(data: bytes) -> DovecotHeader:
    reader = _Reader(data, len(STREAM_MAGIC) + 1)
    size = reader.number(2, "key data length") + reader.offset
    if size > len(data):
        raise DovecotFormatError(f"{_WHAT} (v1) header is truncated")
    reader.data = data[:size]
    ephemeral = reader.counted(2, "ephemeral key")
    recipient_id = reader.counted(2, "recipient key id")
    seed_hash = reader.counted(2, "seed hash")
    locked_seed = reader.counted(2, "encrypted seed")
    if (len(recipient_id), len(seed_hash), len(locked_seed)) != (32, 32, 32) or (
        reader.offset != size or not ephemeral
    ):
        raise DovecotFormatError(f"{_WHAT} (v1) key data section is malformed")
    recipient = DovecotRecipient(KEY_TYPE_EC, recipient_id.hex(), ephemeral, locked_seed)
    return DovecotHeader(
        STREAM_VERSION_1, 0, size, _V1_CIPHER, "sha256", 0, (recipient,), seed_hash
    )


def read_dovecot_header(fileobj: BinaryIO) -> DovecotHeader | None:
    """The header of the mail file at the stream's position, or None if the file is not
    encrypted (empty, or no magic). Leaves the position after what it read.

    Raises DovecotFormatError if the header is malformed or truncated.
    """
    start = fileobj.read(len(STREAM_MAGIC) + 1)
    # Dovecot serves anything that does not start with the whole magic as plain text,
    # even a short file that is a beginning of the magic.
    if not start.startswith(STREAM_MAGIC):
        return None
    if len(start) == len(STREAM_MAGIC):
        raise DovecotFormatError(f"{_WHAT} ends right after its magic")
    if start[-1] == STREAM_VERSION_2:
        fixed = start + fileobj.read(_V2_FIXED_SIZE - len(start))
        size = int.from_bytes(fixed[-4:], "big") if len(fixed) == _V2_FIXED_SIZE else 0
        wanted = min(size, MAX_HEADER_SIZE + 1) - len(fixed)
    elif start[-1] == STREAM_VERSION_1:
        fixed = start + fileobj.read(2)
        wanted = int.from_bytes(fixed[-2:], "big") if len(fixed) == len(start) + 2 else 0
    else:
        raise DovecotFormatError(f"{_WHAT} has unknown format version {start[-1]}")
    return parse_dovecot_header(fixed + fileobj.read(max(wanted, 0)))


# --- the per-mail key ---------------------------------------------------------------


def _key_data_hash(digest: str, key_material: bytes) -> bytes:
    value = hashlib.new(digest, key_material).digest()
    for counter in range(1, KEY_DATA_HASH_ROUNDS + 1):
        value = hashlib.new(digest, value + counter.to_bytes(4, "big")).digest()
    return value


def _key_material_size(header: DovecotHeader) -> int:
    _, key_size, iv_size, _ = STREAM_CIPHERS[header.cipher]
    extra = KEY_DATA_EXTRA_SIZE if header.flags & (FLAG_AEAD | FLAG_HMAC) else 0
    return key_size + iv_size + extra


def _find_recipient(
    header: DovecotHeader, keyring: DovecotKeyring
) -> tuple[DovecotRecipient, DovecotPrivateKey]:
    for recipient in header.recipients:
        private_key = keyring.find(recipient.key_id)
        if private_key is not None:
            return recipient, private_key
    wanted = ", ".join(recipient.key_id for recipient in header.recipients)
    raise DovecotKeyNotFound(
        f"no private key for {_WHAT} recipient {wanted}; give the attributes file and "
        "password of the user who owns the mailbox, or the matching global key"
    )


def _unwrap_v2(header: DovecotHeader, keyring: DovecotKeyring) -> bytes:
    recipient, private_key = _find_recipient(header, keyring)
    expected_size = _key_material_size(header)
    if recipient.key_type == KEY_TYPE_EC:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise DecryptionFailed(_WHAT)
        padded_size = (expected_size // 16 + 1) * 16
        if len(recipient.wrapped_key) != padded_size:
            raise DecryptionFailed(_WHAT)
        secret = ecdh_secret(private_key, recipient.ephemeral_key)
        stretched = hashlib.pbkdf2_hmac(
            header.digest,
            secret,
            recipient.ephemeral_key,
            header.rounds,
            STREAM_WRAP_KEY_SIZE + STREAM_WRAP_IV_SIZE,
        )
        unwrap = Cipher(
            algorithms.AES(stretched[:STREAM_WRAP_KEY_SIZE]),
            modes.CBC(stretched[STREAM_WRAP_KEY_SIZE:]),
        ).decryptor()
        unpadder = symmetric_padding.PKCS7(128).unpadder()
        try:
            padded = unwrap.update(recipient.wrapped_key) + unwrap.finalize()
            key_material = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptionFailed(_WHAT) from None
    else:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise DecryptionFailed(_WHAT)
        if len(recipient.wrapped_key) != private_key.key_size // 8:
            raise DecryptionFailed(_WHAT)
        try:
            key_material = private_key.decrypt(recipient.wrapped_key, RSA_OAEP)
        except ValueError:
            raise DecryptionFailed(_WHAT) from None
    if len(key_material) != expected_size or not hmac.compare_digest(
        _key_data_hash(header.digest, key_material), header.key_hash
    ):
        raise DecryptionFailed(_WHAT)
    return key_material


def _unwrap_v1(header: DovecotHeader, keyring: DovecotKeyring) -> bytes:
    recipient, private_key = _find_recipient(header, keyring)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise DecryptionFailed(_WHAT)
    wrap_key = hashlib.sha256(ecdh_secret(private_key, recipient.ephemeral_key)).digest()
    unwrap = Cipher(algorithms.AES(wrap_key), modes.CTR(bytes(16))).decryptor()
    seed = unwrap.update(recipient.wrapped_key) + unwrap.finalize()
    if not hmac.compare_digest(hashlib.sha256(seed).digest(), header.key_hash):
        raise DecryptionFailed(_WHAT)
    return seed


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
        _, key_size, iv_size, _ = STREAM_CIPHERS.get(header.cipher, ("", 32, 16, False))
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
            ctr = Cipher(algorithms.AES(self.key), modes.CTR(bytes(16))).decryptor()
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
        key_material = _unwrap_v1(header, keyring)
    else:
        key_material = _unwrap_v2(header, keyring)
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
    if isinstance(recipient, ec.EllipticCurvePublicKey):
        ephemeral = ephemeral_key or ec.generate_private_key(recipient.curve)
        point = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        stretched = hashlib.pbkdf2_hmac(
            DEFAULT_HASH,
            ephemeral.exchange(ec.ECDH(), recipient),
            point,
            STREAM_PBKDF2_ROUNDS,
            STREAM_WRAP_KEY_SIZE + STREAM_WRAP_IV_SIZE,
        )
        padder = symmetric_padding.PKCS7(128).padder()
        wrap = Cipher(
            algorithms.AES(stretched[:STREAM_WRAP_KEY_SIZE]),
            modes.CBC(stretched[STREAM_WRAP_KEY_SIZE:]),
        ).encryptor()
        padded = padder.update(key_material) + padder.finalize()
        wrapped = wrap.update(padded) + wrap.finalize()
        key_type = KEY_TYPE_EC
    else:
        point = b""
        wrapped = recipient.encrypt(key_material, RSA_OAEP)
        key_type = KEY_TYPE_RSA
    key_hash = _key_data_hash(DEFAULT_HASH, key_material)
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
    size = _V2_FIXED_SIZE + len(algorithms_part) + 4 + 4 + len(key_data)
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
