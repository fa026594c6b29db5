"""A second reader of cryptmail's stored formats, written from docs/security.md alone.

It does not import `cryptmail`: only `cryptography` and `argon2-cffi` primitives. If it
and `cryptmail.crypto` ever disagree about a vector, the spec, the code or this file
has a bug. Section names in comments are those of docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Private = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


class Malformed(Exception):
    """Not in any format the spec describes (MalformedObject)."""


class Failed(Exception):
    """The one opaque decryption failure (DecryptionFailed)."""


class Refused(Exception):
    """Argon2 parameters refused before any work (KdfParametersRefused)."""


# Constants section.
MAGIC = b"CMBLOB"
TAG = 16
CURVES = {1: "x25519", 2: "prime256v1", 3: "secp384r1", 4: "secp521r1"}
COMPACT_SIZES = {"x25519": 32, "prime256v1": 33, "secp384r1": 49, "secp521r1": 67}
NIST = {"secp256r1": "prime256v1", "secp384r1": "secp384r1", "secp521r1": "secp521r1"}
NIST_CURVES: dict[str, ec.EllipticCurve] = {
    "prime256v1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """Conventions: HKDF-SHA-256, 32 bytes, empty salt = 0^32."""
    return HKDF(hashes.SHA256(), 32, salt or bytes(32), info).derive(ikm)


def aead_open(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < TAG:
        raise Failed
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise Failed from None


def curve_name(key: Private) -> str:
    if isinstance(key, x25519.X25519PrivateKey):
        return "x25519"
    return NIST[key.curve.name]


def compact_public(key: Private) -> bytes:
    if isinstance(key, x25519.X25519PrivateKey):
        return key.public_key().public_bytes_raw()
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )


def key_id(key: Private) -> bytes:
    """Conventions: SHA-256(curve_name || 0x00 || public)."""
    return hashlib.sha256(curve_name(key).encode() + b"\x00" + compact_public(key)).digest()


def shared_secret(key: Private, peer: bytes) -> bytes:
    """ECDH against a stored ephemeral key; every invalid key is a decryption failure."""
    name = curve_name(key)
    if len(peer) != COMPACT_SIZES[name]:
        raise Failed
    try:
        if isinstance(key, x25519.X25519PrivateKey):
            # cryptography refuses the all-zero output with ValueError.
            return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        point = ec.EllipticCurvePublicKey.from_encoded_point(NIST_CURVES[name], peer)
        return key.exchange(ec.ECDH(), point)
    except ValueError:
        raise Failed from None


# --- Blob header --------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    raw: bytes
    sealed: bool
    curve: str = ""
    key_id: bytes = b""
    ephemeral: bytes = b""
    wrapped: bytes = b""
    chunk_size: int = 0
    version: int = 1


def lp(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def parse_header(blob: bytes) -> Header:
    if blob[:6] != MAGIC or len(blob) < 8 or blob[6] not in (1, 3):
        raise Malformed("magic or version")
    mode = blob[7]
    if mode == 0:
        return Header(raw=blob[:8], sealed=False, version=blob[6])
    if mode != 1:
        raise Malformed("mode")
    cursor = 8

    def take(count: int) -> bytes:
        nonlocal cursor
        piece = blob[cursor : cursor + count]
        if len(piece) != count:
            raise Malformed("truncated header")
        cursor += count
        return piece

    curve_id = take(1)[0]
    if curve_id not in CURVES:
        raise Malformed("curve")
    kid = take(32)
    ephemeral = take(take(1)[0])
    wrapped = take(take(1)[0])
    log2 = take(1)[0]
    if not 12 <= log2 <= 24:
        raise Malformed("chunk size")
    return Header(
        blob[:cursor], True, CURVES[curve_id], kid, ephemeral, wrapped, 1 << log2, blob[6]
    )


def unwrap_message_key(blob: bytes, blob_id: bytes, key: Private) -> bytes:
    """Key hierarchy: wrap_key and wrapped; parsing rules 5-7."""
    header = parse_header(blob)
    if not header.sealed:
        raise Malformed("plain blob")
    if len(header.wrapped) != 48:
        raise Failed  # before any ECDH
    shared = shared_secret(key, header.ephemeral)
    salt = header.ephemeral + compact_public(key)
    if header.version == 1:
        label, context = b"cryptmail/v1/ecies-wrap", blob_id
    else:
        label, context = b"cryptmail/v3/blob-key-wrap", lp(blob_id)
    wrap = hkdf(shared, salt, label + context)
    return aead_open(wrap, bytes(12), header.wrapped, context)


def open_body(blob: bytes, blob_id: bytes, message_key: bytes) -> bytes:
    """STREAM body: the last chunk is the one that ends the blob."""
    header = parse_header(blob)
    if not header.sealed:
        raise Malformed("plain blob")
    payload_key = hkdf(
        message_key, blob_id, b"cryptmail/v1/blob-payload" + hashlib.sha256(header.raw).digest()
    )
    body = blob[len(header.raw) :]
    stride = header.chunk_size + TAG
    starts = list(range(0, len(body), stride)) or [0]
    out = []
    for index, start in enumerate(starts):
        last = index == len(starts) - 1
        piece = body[start : start + stride]
        nonce = index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        plaintext = aead_open(payload_key, nonce, piece, b"")
        if last and not plaintext and index > 0:
            raise Failed  # only an empty message ends in an empty chunk
        out.append(plaintext)
    return b"".join(out)


def open_blob(blob: bytes, blob_id: bytes, key: Private) -> bytes:
    header = parse_header(blob)
    if not header.sealed:
        return blob[len(header.raw) :]
    return open_body(blob, blob_id, unwrap_message_key(blob, blob_id, key))


def load_private_key(pkcs8: bytes) -> Private:
    key = serialization.load_der_private_key(pkcs8, password=None)
    if not isinstance(key, x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise Malformed("not an EC or X25519 key")
    return key


# --- Key slot record ----------------------------------------------------------------


def unlock_slot(
    record: bytes, credential: bytes, context: bytes, max_memory_kib: int, max_time_cost: int
) -> bytes:
    """Parsing rules 11-13, then Argon2id and AES-256-GCM."""
    if len(record) != 86 or record[0] != 1:
        raise Malformed("slot record")
    memory, passes, lanes = struct.unpack(">IIB", record[1:10])
    if (
        memory > max_memory_kib
        or passes > max_time_cost
        or not 1 <= lanes <= 64
        or memory < 8 * lanes
        or passes < 1
    ):
        raise Refused
    salt, nonce, sealed = record[10:26], record[26:38], record[38:]
    slot_key = hash_secret_raw(credential, salt, passes, memory, lanes, 32, Type.ID)
    return aead_open(slot_key, nonce, sealed, b"cryptmail/v1/slot" + context)


def unlock_slot_v2(
    record: bytes,
    credential: bytes,
    label: tuple[bytes, str, str, int],
    max_memory_kib: int,
    max_time_cost: int,
) -> bytes:
    """A version-2 record: Argon2id, the slot's X25519 key, then the ECIES box.
    `label` is (account_uuid, kind, name, generation)."""
    if len(record) != 138 or record[0] != 2:
        raise Malformed("slot record")
    memory, passes, lanes = struct.unpack(">IIB", record[1:10])
    if (
        memory > max_memory_kib
        or passes > max_time_cost
        or not 1 <= lanes <= 64
        or memory < 8 * lanes
        or passes < 1
    ):
        raise Refused
    salt, public, ephemeral, wrapped = record[10:26], record[26:58], record[58:90], record[90:]
    ikm = hash_secret_raw(credential, salt, passes, memory, lanes, 32, Type.ID)
    private = x25519.X25519PrivateKey.from_private_bytes(
        hkdf(ikm, b"", b"cryptmail/v2/slot-private-key")
    )
    if compact_public(private) != public:
        raise Failed
    uuid, kind, name, generation = label

    def lp(value: bytes) -> bytes:
        return struct.pack(">H", len(value)) + value

    context = (
        b"cryptmail/v2/slot"
        + lp(uuid)
        + lp(kind.encode("ascii"))
        + lp(name.encode("utf-8"))
        + struct.pack(">I", generation)
    )
    shared = shared_secret(private, ephemeral)
    wrap = hkdf(shared, ephemeral + public, b"cryptmail/v1/ecies-wrap" + context)
    return aead_open(wrap, bytes(12), wrapped, context)


# --- Sealed private key and data key ------------------------------------------------


def open_data_key(account_key: bytes, sealed: bytes, generation: int) -> bytes:
    wrap = hkdf(account_key, b"", b"cryptmail/v2/data-key-wrap")
    if len(sealed) < 12 + TAG:
        raise Failed
    aad = b"cryptmail/v2/data-key-wrap" + struct.pack(">I", generation)
    return aead_open(wrap, sealed[:12], sealed[12:], aad)


def derive_data_key(account_key: bytes) -> bytes:
    return hkdf(account_key, b"", b"cryptmail/v1/data-key")


def open_private_key(account_key: bytes, sealed: bytes, kid: bytes) -> Private:
    wrap = hkdf(account_key, b"", b"cryptmail/v1/private-key-wrap")
    if len(sealed) < 12 + TAG:
        raise Failed
    return load_private_key(aead_open(wrap, sealed[:12], sealed[12:], kid))


# --- Sealed field -------------------------------------------------------------------


def open_field(data_key: bytes, sealed: bytes, context: bytes) -> bytes:
    if len(sealed) < 29 or sealed[0] != 1:
        raise Failed
    return aead_open(data_key, sealed[1:13], sealed[13:], b"cryptmail/v1/field" + context)


def open_field_v2(data_keys: dict[int, bytes], sealed: bytes, context: bytes) -> bytes:
    """A field of version 1 (generation 0) or 2 (the generation follows the version)."""
    if sealed[:1] == b"\x01":
        return open_field(data_keys[0], sealed, context)
    if len(sealed) < 33 or sealed[0] != 2:
        raise Failed
    generation = struct.unpack(">I", sealed[1:5])[0]
    if generation not in data_keys:
        raise Failed
    key = data_keys[generation]
    return aead_open(key, sealed[5:17], sealed[17:], b"cryptmail/v1/field" + context)


def open_field_v3(data_keys: dict[int, bytes], sealed: bytes, context: bytes) -> bytes:
    """A field of version 3: under the field key derived from the generation's data key."""
    if len(sealed) < 33 or sealed[0] != 3:
        raise Failed
    generation = struct.unpack(">I", sealed[1:5])[0]
    if generation not in data_keys:
        raise Failed
    field_key = hkdf(data_keys[generation], b"", b"cryptmail/v3/field-key")
    return aead_open(field_key, sealed[5:17], sealed[17:], b"cryptmail/v1/field" + context)


def field_lookup(data_key: bytes, value: bytes, context: bytes) -> bytes:
    lookup_key = hkdf(data_key, b"", b"cryptmail/v1/field-lookup")
    return hmac.new(lookup_key, context + b"\x00" + value, hashlib.sha256).digest()


# --- Sealed box ---------------------------------------------------------------------


def open_box(detail: bytes, key: Private, context: bytes) -> bytes:
    """A version-3 security-event detail: key_id || 0x03 || eph_len || E || wrapped || body."""
    if detail[:32] != key_id(key) or detail[32:33] != b"\x03" or len(detail) < 34:
        raise Failed
    eph_len = detail[33]
    ephemeral = detail[34 : 34 + eph_len]
    wrapped = detail[34 + eph_len : 34 + eph_len + 48]
    body = detail[34 + eph_len + 48 :]
    if len(wrapped) != 48:
        raise Failed
    label = b"cryptmail/v3/sealed-box"
    shared = shared_secret(key, ephemeral)
    wrap = hkdf(shared, ephemeral + compact_public(key), label + context)
    message_key = aead_open(wrap, bytes(12), wrapped, context)
    return aead_open(message_key, bytes(12), body, label + context)


# --- Codes --------------------------------------------------------------------------


def normalize_code(text: str) -> str | None:
    cleaned = text.upper()
    for drop in (" ", "\t", "-"):
        cleaned = cleaned.replace(drop, "")
    cleaned = cleaned.replace("0", "O").replace("1", "I").replace("8", "B")
    if not cleaned or len(cleaned) % 5 or any(ch not in B32 for ch in cleaned):
        return None
    return cleaned


def code_lookup_id(normalized: str) -> bytes:
    return hmac.new(b"cryptmail/v1/code-lookup", normalized.encode(), hashlib.sha256).digest()[:16]
