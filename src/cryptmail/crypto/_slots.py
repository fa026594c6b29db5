"""Key slots, version 2: the account key sealed to a key pair that only the credential
makes, so that a new account key can be sealed to a slot without its credential.

    ikm          = Argon2id(credential, salt, m, t, p)
    slot_private = X25519 private key from HKDF(ikm, salt="", info=LABEL_SLOT_PRIVATE_KEY)
    slot_public  = its public key (stored)
    box          = ECIES wrap (crypto._ecies) of account_key to slot_public, context =
                   LABEL_SLOT_BOX || lp(account_uuid) || lp(kind) || lp(name) || u32(generation)
    record       = version u8 = 2 | m u32 | t u32 | p u8 | salt 16 | slot_public 32
                   | E 32 | wrapped 48

`lp(x)` is u16(len(x)) || x. A re-key seals the new account key to each remaining slot's
public key: EC work only, no credential (the way age seals a file key to several
recipients). Version-1 records (`_slots_v1`) are still opened, and the slot key of an
opened one is returned so the caller can write it as version 2 at the same salt and cost.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.config import Argon2Params
from cryptmail.crypto._ecies import WRAPPED_SIZE, WrappedKey, unwrap_key, wrap_key
from cryptmail.crypto._kdf import derive_key
from cryptmail.crypto._keypair import PublicKeyInfo, encode_public_key
from cryptmail.crypto._labels import (
    ACCOUNT_KEY_SIZE,
    LABEL_SLOT_BOX,
    LABEL_SLOT_PRIVATE_KEY,
    SLOT_SALT_SIZE,
    SLOT_VERSION,
    SLOT_VERSION_1,
)
from cryptmail.crypto._slots_v1 import open_slot_v1, slot_params_v1
from cryptmail.errors import DecryptionFailed, MalformedObject

_HEAD = struct.Struct(">BIIB")
_KEY_SIZE = 32
_RECORD_SIZE = _HEAD.size + SLOT_SALT_SIZE + _KEY_SIZE + _KEY_SIZE + WRAPPED_SIZE


def _lp(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


@dataclass(frozen=True)
class SlotLabel:
    """What a slot is bound to: the account, its kind and name, and the generation of the
    account key it holds (a slot restored from an older generation does not open)."""

    account_uuid: bytes
    kind: str
    name: str
    generation: int

    def context(self) -> bytes:
        """The version-2 ECIES context."""
        return (
            LABEL_SLOT_BOX
            + _lp(self.account_uuid)
            + _lp(self.kind.encode("ascii"))
            + _lp(self.name.encode("utf-8"))
            + struct.pack(">I", self.generation)
        )

    def v1_context(self) -> bytes:
        """The version-1 AEAD context (no generation: version 1 predates re-keying)."""
        return self.account_uuid + b"|" + self.kind.encode() + b"|" + self.name.encode("utf-8")


@dataclass(frozen=True)
class SlotPublicKey:
    """The public half of a slot: all a re-key needs to seal a new account key to it."""

    params: Argon2Params
    salt: bytes
    public: bytes


@dataclass(frozen=True, repr=False)
class SlotKey:
    """A slot's key pair, derived from its credential (one Argon2id)."""

    public: SlotPublicKey
    private: X25519PrivateKey = field(repr=False)


@dataclass(frozen=True, repr=False)
class OpenedSlot:
    account_key: bytes = field(repr=False)
    slot_key: SlotKey


def _slot_key_from(ikm: bytes, params: Argon2Params, salt: bytes) -> SlotKey:
    scalar = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL_SLOT_PRIVATE_KEY
    ).derive(ikm)
    private = X25519PrivateKey.from_private_bytes(scalar)
    public = encode_public_key(private.public_key())
    return SlotKey(SlotPublicKey(params, salt, public), private)


def derive_slot_key(credential: bytes, params: Argon2Params, salt: bytes | None = None) -> SlotKey:
    """The slot key pair of `credential` (one Argon2id; a fresh salt unless given)."""
    salt = os.urandom(SLOT_SALT_SIZE) if salt is None else salt
    if len(salt) != SLOT_SALT_SIZE:
        raise ValueError("a slot salt is 16 bytes")
    return _slot_key_from(derive_key(credential, salt, params), params, salt)


def seal_slot(account_key: bytes, public: SlotPublicKey, label: SlotLabel) -> bytes:
    """A version-2 record sealing `account_key` to the slot's public key (no Argon2)."""
    if len(account_key) != ACCOUNT_KEY_SIZE:
        raise ValueError("an account key is 32 bytes")
    wrapped = wrap_key(account_key, PublicKeyInfo("x25519", public.public), label.context())
    params = public.params
    head = _HEAD.pack(SLOT_VERSION, params.memory_kib, params.time_cost, params.parallelism)
    return head + public.salt + public.public + wrapped.ephemeral + wrapped.wrapped


def lock_slot(
    account_key: bytes, credential: bytes, params: Argon2Params, label: SlotLabel
) -> bytes:
    """A new version-2 record that `unlock_slot(record, credential, label)` opens (one
    Argon2id, fresh salt)."""
    if len(account_key) != ACCOUNT_KEY_SIZE:
        raise ValueError("an account key is 32 bytes")
    return seal_slot(account_key, derive_slot_key(credential, params).public, label)


def slot_version(record: bytes) -> int:
    """1 or 2; MalformedObject for anything else."""
    if record[:1] == bytes([SLOT_VERSION]):
        _check_v2(record)
        return SLOT_VERSION
    slot_params_v1(record)
    return SLOT_VERSION_1


def _check_v2(record: bytes) -> Argon2Params:
    if len(record) != _RECORD_SIZE:
        raise MalformedObject("key slot record has the wrong length")
    version, memory, time_cost, parallelism = _HEAD.unpack_from(record)
    if version != SLOT_VERSION:
        raise MalformedObject(f"key slot version {version} is not supported")
    return Argon2Params(memory, time_cost, parallelism)


def slot_params(record: bytes) -> Argon2Params:
    """The Argon2 parameters a slot record (version 1 or 2) asks for, to check them
    against the ceiling before unlocking. MalformedObject for an unknown record."""
    if record[:1] == bytes([SLOT_VERSION]):
        return _check_v2(record)
    return slot_params_v1(record)


def slot_public_key(record: bytes) -> SlotPublicKey:
    """The public half of a version-2 record; MalformedObject for version 1 (which has
    none: it can only be re-locked by its credential)."""
    params = _check_v2(record)
    offset = _HEAD.size
    salt = record[offset : offset + SLOT_SALT_SIZE]
    public = record[offset + SLOT_SALT_SIZE : offset + SLOT_SALT_SIZE + _KEY_SIZE]
    return SlotPublicKey(params, salt, public)


def reseal_slot(record: bytes, account_key: bytes, label: SlotLabel) -> bytes:
    """`record`'s slot sealing `account_key` under `label` instead (no credential)."""
    return seal_slot(account_key, slot_public_key(record), label)


def unlock_slot(record: bytes, credential: bytes, label: SlotLabel) -> OpenedSlot:
    """The account key and the slot's key pair; DecryptionFailed for a wrong credential,
    label or a changed record (one Argon2id). For a version-1 record the key pair is the
    one its version-2 successor at the same salt and cost has.

    Callers check `slot_params(record)` against the configured ceiling first.
    """
    if record[:1] != bytes([SLOT_VERSION]):
        params = slot_params_v1(record)
        account_key, ikm = open_slot_v1(record, credential, label.v1_context())
        salt = record[_HEAD.size : _HEAD.size + SLOT_SALT_SIZE]
        return OpenedSlot(account_key, _slot_key_from(ikm, params, salt))
    public = slot_public_key(record)
    slot_key = derive_slot_key(credential, public.params, public.salt)
    offset = _HEAD.size + SLOT_SALT_SIZE + _KEY_SIZE
    ephemeral = record[offset : offset + _KEY_SIZE]
    wrapped = record[offset + _KEY_SIZE :]
    if slot_key.public.public != public.public:
        raise DecryptionFailed("key slot")
    account_key = unwrap_key(WrappedKey(ephemeral, wrapped), slot_key.private, label.context())
    return OpenedSlot(account_key, slot_key)


def upgrade_slot(opened: OpenedSlot, label: SlotLabel) -> bytes:
    """The version-2 record of an opened slot (version 1 or 2) for `label` (no Argon2)."""
    return seal_slot(opened.account_key, opened.slot_key.public, label)
