"""MACs over key rows, and keys derived from the server key.

    mac_key       = HKDF-SHA256(secret, salt="", info=label)
    account MAC   = HMAC-SHA256(HKDF(account_key, LABEL_ACCOUNT_MAC), account_rows)
    delivery MAC  = HMAC-SHA256(HKDF(server_key, LABEL_DELIVERY_MAC), delivery_rows)
    retry tag     = HMAC-SHA256(HKDF(server_key, LABEL_DELIVERY_TAG),
                                u64(user_id) || SHA-256(message))[0:16]
    sieve key     = HKDF(server_key, LABEL_SIEVE_SCRIPT_KEY)   (a FieldCipher's data key)
    sieve record  = HMAC-SHA256(HKDF(server_key, LABEL_SIEVE_RECORD),
                                u64(user_id) || lp(kind) || lp(part) ...)

Every variable-length item of a MAC's message is length-prefixed (u32), every number
has a fixed width, so two different sets of rows never encode to the same bytes. The
encodings are specified in docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto._labels import (
    LABEL_ACCOUNT_MAC,
    LABEL_DELIVERY_MAC,
    LABEL_DELIVERY_TAG,
    LABEL_SIEVE_RECORD,
    LABEL_SIEVE_SCRIPT_KEY,
    LABEL_STAGED_IMPORT,
)

MAC_SIZE = 32
DELIVERY_TAG_SIZE = 16
_SLOT_ENTRY = struct.Struct(">Q32s")


def derive_mac_key(secret: bytes, label: bytes) -> bytes:
    """A 32-byte key for one purpose (`label`), derived from `secret`."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def _lp(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


@dataclass(frozen=True, repr=False)
class KeyPairRow:
    """One cm_key_pairs row as the account MAC covers it."""

    key_id: bytes
    curve: str
    public_key: bytes
    private_sealed: bytes
    active: bool


@dataclass(frozen=True, repr=False)
class SlotEntry:
    """One key slot as the account MAC covers it: its row id and a digest of the row."""

    slot_id: int
    digest: bytes


def slot_digest(kind: str, name: str, lookup_id: bytes | None, record: bytes) -> bytes:
    """SHA-256 over a slot row's kind, name, lookup id and record."""
    return hashlib.sha256(
        _lp(kind.encode()) + _lp(name.encode()) + _lp(lookup_id or b"") + _lp(record)
    ).digest()


def encode_slot_list(entries: Sequence[SlotEntry]) -> bytes:
    """The slot list as stored in cm_accounts.key_mac_slots: u64 id || digest, by id."""
    ordered = sorted(entries, key=lambda e: e.slot_id)
    return b"".join(_SLOT_ENTRY.pack(e.slot_id, e.digest) for e in ordered)


def decode_slot_list(data: bytes) -> list[SlotEntry] | None:
    """The entries of a stored slot list; None if it is not a whole number of entries."""
    if len(data) % _SLOT_ENTRY.size:
        return None
    return [SlotEntry(i, d) for i, d in _SLOT_ENTRY.iter_unpack(data)]


def account_mac(
    account_key: bytes,
    *,
    user_id: int,
    account_uuid: bytes,
    generation: int,
    crypt: int,
    active_curve: str,
    active_public: bytes,
    pairs: Sequence[KeyPairRow],
    slot_list: bytes,
) -> bytes:
    """The MAC of an account's key rows under its account key."""
    message = [
        struct.pack(">QIq", user_id, generation, crypt),
        _lp(account_uuid),
        _lp(active_curve.encode()),
        _lp(active_public),
        struct.pack(">I", len(pairs)),
    ]
    for pair in sorted(pairs, key=lambda p: p.key_id):
        message += [
            _lp(pair.key_id),
            _lp(pair.curve.encode()),
            _lp(pair.public_key),
            _lp(pair.private_sealed),
            b"\x01" if pair.active else b"\x00",
        ]
    message.append(_lp(slot_list))
    key = derive_mac_key(account_key, LABEL_ACCOUNT_MAC)
    return hmac.new(key, b"".join(message), hashlib.sha256).digest()


def delivery_mac_key(server_key: bytes) -> bytes:
    return derive_mac_key(server_key, LABEL_DELIVERY_MAC)


def delivery_mac(
    mac_key: bytes, *, user_id: int, crypt: int, curve: str, public_key: bytes
) -> bytes:
    """The MAC of what delivery reads (the active public key, `crypt`) under the
    server key's subkey (`delivery_mac_key`); `curve` and `public_key` are empty for a
    user without a key pair."""
    message = struct.pack(">Qq", user_id, crypt) + _lp(curve.encode()) + _lp(public_key)
    return hmac.new(mac_key, message, hashlib.sha256).digest()


def staged_import_key(server_key: bytes) -> bytes:
    """The key that seals where a staged first-login import's Maildir is."""
    return derive_mac_key(server_key, LABEL_STAGED_IMPORT)


def delivery_tag_key(server_key: bytes) -> bytes:
    return derive_mac_key(server_key, LABEL_DELIVERY_TAG)


def sieve_script_key(server_key: bytes) -> bytes:
    """The key Sieve scripts are sealed under (as a `FieldCipher`'s data key): delivery
    reads a user's active script with no user secret, so it cannot be the data key."""
    return derive_mac_key(server_key, LABEL_SIEVE_SCRIPT_KEY)


def delivery_tag(tag_key: bytes, user_id: int, message_digest: bytes) -> bytes:
    """The retry tag of one delivery (`tag_key` from `delivery_tag_key`)."""
    message = struct.pack(">Q", user_id) + message_digest
    return hmac.new(tag_key, message, hashlib.sha256).digest()[:DELIVERY_TAG_SIZE]


def macs_equal(a: bytes | None, b: bytes) -> bool:
    return a is not None and hmac.compare_digest(a, b)


def sieve_record_key(server_key: bytes) -> bytes:
    return derive_mac_key(server_key, LABEL_SIEVE_RECORD)


def sieve_record(record_key: bytes, user_id: int, kind: str, parts: Sequence[str]) -> bytes:
    """The key of one Sieve record (a vacation reply sent to a sender for a handle, an id
    a duplicate test saw): a keyed hash, so the table holds no address or Message-ID."""
    message = struct.pack(">Q", user_id) + _lp(kind.encode())
    message += b"".join(_lp(part.encode("utf-8", errors="surrogatepass")) for part in parts)
    return hmac.new(record_key, message, hashlib.sha256).digest()
