"""Key slots of version 2: the account key sealed to a key pair derived from the
credential, so that a new account key can be sealed to it without the credential."""

from __future__ import annotations

import struct

import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto import (
    Argon2Params,
    SlotLabel,
    derive_slot_key,
    lock_slot,
    reseal_slot,
    seal_slot,
    slot_params,
    slot_public_key,
    slot_version,
    unlock_slot,
    upgrade_slot,
)
from cryptmail.crypto._ecies import WrappedKey, unwrap_key
from cryptmail.crypto._keypair import encode_public_key
from cryptmail.crypto._slots_v1 import _lock_slot
from cryptmail.errors import DecryptionFailed, MalformedObject

FAST = Argon2Params(memory_kib=8, time_cost=1, parallelism=1)
ACCOUNT_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PASSWORD = b"correct horse battery staple"
SALT = bytes(range(16, 32))
LABEL = SlotLabel(bytes(16), "password", "", 3)


def test_round_trip_and_layout() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL)
    assert len(record) == 138
    assert record[:10] == struct.pack(">BIIB", 2, 8, 1, 1)
    assert slot_version(record) == 2
    assert slot_params(record) == FAST
    assert unlock_slot(record, PASSWORD, LABEL).account_key == ACCOUNT_KEY


def test_layout_follows_the_spec() -> None:
    slot_key = derive_slot_key(PASSWORD, FAST, SALT)
    record = seal_slot(ACCOUNT_KEY, slot_key.public, LABEL)
    assert record[10:26] == SALT
    ikm = hash_secret_raw(PASSWORD, SALT, 1, 8, 1, 32, Type.ID)
    scalar = HKDF(hashes.SHA256(), 32, None, b"cryptmail/v2/slot-private-key").derive(ikm)
    private = X25519PrivateKey.from_private_bytes(scalar)
    assert record[26:58] == encode_public_key(private.public_key())
    context = (
        b"cryptmail/v2/slot"
        + b"\x00\x10"
        + bytes(16)
        + b"\x00\x08password"
        + b"\x00\x00"
        + b"\x00\x00\x00\x03"
    )
    assert LABEL.context() == context
    wrapped = WrappedKey(record[58:90], record[90:138])
    assert unwrap_key(wrapped, private, context) == ACCOUNT_KEY


def test_reseal_needs_no_credential_and_keeps_the_slot_key() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL)
    later = SlotLabel(bytes(16), "password", "", 4)
    resealed = reseal_slot(record, OTHER_KEY, later)
    assert slot_public_key(resealed) == slot_public_key(record)
    assert unlock_slot(resealed, PASSWORD, later).account_key == OTHER_KEY
    with pytest.raises(DecryptionFailed):
        unlock_slot(resealed, PASSWORD, LABEL)  # the older generation's label


def test_wrong_credential_or_label_fails() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL)
    for wrong in (b"", PASSWORD + b" ", PASSWORD.upper()):
        with pytest.raises(DecryptionFailed):
            unlock_slot(record, wrong, LABEL)
    for label in (
        SlotLabel(bytes(16), "recovery", "", 3),
        SlotLabel(bytes(15) + b"\x01", "password", "", 3),
        SlotLabel(bytes(16), "password", "x", 3),
        SlotLabel(bytes(16), "password", "", 2),
    ):
        with pytest.raises(DecryptionFailed):
            unlock_slot(record, PASSWORD, label)


def test_every_flipped_bit_fails() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL)
    for position in range(10, len(record)):
        bad = bytearray(record)
        bad[position] ^= 0x40
        with pytest.raises(DecryptionFailed):
            unlock_slot(bytes(bad), PASSWORD, LABEL)


@pytest.mark.parametrize("length", [0, 1, 10, 86, 137, 139])
def test_wrong_length_is_malformed(length: int) -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL)
    bad = (record * 2)[:length]
    with pytest.raises(MalformedObject):
        slot_params(bad)
    with pytest.raises(MalformedObject):
        unlock_slot(bad, PASSWORD, LABEL)


def test_a_version_1_slot_opens_and_upgrades_without_another_argon2() -> None:
    old = _lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL.v1_context(), SALT)
    assert slot_version(old) == 1
    with pytest.raises(MalformedObject):
        slot_public_key(old)  # no public half: only its credential can re-lock it
    opened = unlock_slot(old, PASSWORD, LABEL)
    assert opened.account_key == ACCOUNT_KEY
    upgraded = upgrade_slot(opened, LABEL)
    assert slot_public_key(upgraded).salt == SALT
    assert slot_public_key(upgraded) == derive_slot_key(PASSWORD, FAST, SALT).public
    assert unlock_slot(upgraded, PASSWORD, LABEL).account_key == ACCOUNT_KEY


def test_repr_hides_the_keys() -> None:
    opened = unlock_slot(lock_slot(ACCOUNT_KEY, PASSWORD, FAST, LABEL), PASSWORD, LABEL)
    assert ACCOUNT_KEY.hex() not in repr(opened) and "private" not in repr(opened.slot_key)
