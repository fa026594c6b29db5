"""Key slots of version 1 (read, no longer written): the account key locked by one
credential, with its own Argon2 cost."""

from __future__ import annotations

import struct

import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import cryptmail.crypto._slots_v1 as slots_module
from cryptmail.config import Argon2Config
from cryptmail.crypto import Argon2Params
from cryptmail.crypto._slots_v1 import _lock_slot
from cryptmail.crypto._slots_v1 import lock_slot_v1 as lock_slot
from cryptmail.crypto._slots_v1 import slot_params_v1 as slot_params
from cryptmail.crypto._slots_v1 import unlock_slot_v1 as unlock_slot
from cryptmail.errors import DecryptionFailed, KdfParametersRefused, MalformedObject

FAST = Argon2Params(memory_kib=8, time_cost=1, parallelism=1)
ACCOUNT_KEY = bytes(range(32))
PASSWORD = b"correct horse battery staple"
CONTEXT = bytes(16) + b"|password|"
SALT = bytes(range(16, 32))
CEILING = Argon2Config()


def unlock_checked(
    record: bytes, credential: bytes, context: bytes, max_memory_kib: int = CEILING.max_memory_kib
) -> bytes:
    """What the keys layer does: refuse the parameters first, then run Argon2."""
    slot_params(record).check_ceiling(max_memory_kib, CEILING.max_time_cost)
    return unlock_slot(record, credential, context)


def test_round_trip() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    assert len(record) == 86
    assert slot_params(record) == FAST
    assert unlock_checked(record, PASSWORD, CONTEXT) == ACCOUNT_KEY


def test_layout_follows_the_spec() -> None:
    params = Argon2Params(memory_kib=64, time_cost=2, parallelism=2)
    record = _lock_slot(ACCOUNT_KEY, PASSWORD, params, CONTEXT, SALT)
    assert record[:10] == struct.pack(">BIIB", 1, 64, 2, 2)
    assert record[10:26] == SALT
    nonce, sealed = record[26:38], record[38:]
    assert len(sealed) == 48
    slot_key = hash_secret_raw(PASSWORD, SALT, 2, 64, 2, 32, Type.ID)
    assert AESGCM(slot_key).decrypt(nonce, sealed, b"cryptmail/v1/slot" + CONTEXT) == ACCOUNT_KEY


def test_fresh_salt_and_nonce_every_time() -> None:
    first = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    second = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    assert first[10:26] != second[10:26]
    fixed = [_lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT, SALT) for _ in range(2)]
    assert fixed[0][10:26] == fixed[1][10:26] == SALT
    assert fixed[0][26:38] != fixed[1][26:38]  # the nonce stays random


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_only_32_byte_account_keys(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        lock_slot(bytes(length), PASSWORD, FAST, CONTEXT)


def test_wrong_password_fails() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    for wrong in (b"", b"correct horse battery stapl", PASSWORD + b" ", PASSWORD.upper()):
        with pytest.raises(DecryptionFailed):
            unlock_checked(record, wrong, CONTEXT)


def test_wrong_context_fails() -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    for context in (
        b"",
        bytes(16) + b"|recovery|",  # relabelled as another kind
        bytes(15) + b"\x01|password|",  # copied to another account
        CONTEXT + b"x",
    ):
        with pytest.raises(DecryptionFailed):
            unlock_checked(record, PASSWORD, context)


def test_every_flipped_bit_fails() -> None:
    record = _lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT, SALT)
    for position in range(len(record)):
        for bit in range(8):
            bad = bytearray(record)
            bad[position] ^= 1 << bit
            if position == 0:
                expected: type[Exception] = MalformedObject  # version
            elif position < 10:
                # The cost fields: refused by the ceiling, or a different slot key.
                try:
                    # A low ceiling keeps a flipped high memory bit from costing 512 MiB.
                    unlock_checked(bytes(bad), PASSWORD, CONTEXT, max_memory_kib=4096)
                except (KdfParametersRefused, DecryptionFailed):
                    continue
                pytest.fail(f"cost byte {position} bit {bit} was accepted")
            else:
                expected = DecryptionFailed
            with pytest.raises(expected):
                unlock_checked(bytes(bad), PASSWORD, CONTEXT)


@pytest.mark.parametrize("length", [0, 1, 10, 85, 87, 200])
def test_wrong_length_is_malformed(length: int) -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    bad = (record * 3)[:length]
    with pytest.raises(MalformedObject):
        slot_params(bad)
    with pytest.raises(MalformedObject):
        unlock_slot(bad, PASSWORD, CONTEXT)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_malformed(version: int) -> None:
    record = lock_slot(ACCOUNT_KEY, PASSWORD, FAST, CONTEXT)
    with pytest.raises(MalformedObject, match="version"):
        unlock_slot(bytes([version]) + record[1:], PASSWORD, CONTEXT)


@pytest.mark.parametrize(
    ("memory_kib", "time_cost", "parallelism"),
    [(CEILING.max_memory_kib + 1, 1, 1), (100 << 20, 1, 1), (64, CEILING.max_time_cost + 1, 1)],
)
def test_parameters_above_the_ceiling_are_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, memory_kib: int, time_cost: int, parallelism: int
) -> None:
    # A record planted with a huge cost: built by hand, since locking it would run it.
    record = struct.pack(">BIIB", 1, memory_kib, time_cost, parallelism) + bytes(76)

    def no_argon2(*args: object) -> bytes:
        raise AssertionError("Argon2 ran before the ceiling was checked")

    monkeypatch.setattr(slots_module, "derive_key", no_argon2)
    with pytest.raises(KdfParametersRefused):
        unlock_checked(record, PASSWORD, CONTEXT)


def test_the_default_cost_is_within_the_default_ceiling() -> None:
    config = Argon2Config()
    params = Argon2Params(config.memory_kib, config.time_cost, config.parallelism)
    params.check_ceiling(config.max_memory_kib, config.max_time_cost)
