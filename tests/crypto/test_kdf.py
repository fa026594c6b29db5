"""Argon2id: the known answers of RFC 9106 and the reference implementation, and the
ceiling every stored slot's parameters are checked against before any work."""

from __future__ import annotations

import pytest
from argon2.low_level import ARGON2_VERSION, Type, core, ffi

from cryptmail.crypto import Argon2Params, derive_key
from cryptmail.errors import KdfParametersRefused

CEILING = {"max_memory_kib": 1 << 20, "max_time_cost": 16}


def test_rfc9106_argon2id_vector() -> None:
    """RFC 9106 section 5.3, through the argon2 core that `derive_key` calls (the
    vector uses a secret and associated data, which `derive_key` never passes)."""
    out = ffi.new("uint8_t[]", 32)
    buffers = {
        name: ffi.new("uint8_t[]", bytes([byte]) * size)
        for name, byte, size in (("pwd", 1, 32), ("salt", 2, 16), ("secret", 3, 8), ("ad", 4, 12))
    }
    context = ffi.new(
        "argon2_context *",
        {
            "out": out,
            "outlen": 32,
            "pwd": buffers["pwd"],
            "pwdlen": 32,
            "salt": buffers["salt"],
            "saltlen": 16,
            "secret": buffers["secret"],
            "secretlen": 8,
            "ad": buffers["ad"],
            "adlen": 12,
            "t_cost": 3,
            "m_cost": 32,
            "lanes": 4,
            "threads": 4,
            "version": ARGON2_VERSION,
            "allocate_cbk": ffi.NULL,
            "free_cbk": ffi.NULL,
            "flags": 0,  # ARGON2_DEFAULT_FLAGS
        },
    )
    assert core(context, Type.ID.value) == 0  # ARGON2_OK
    assert bytes(ffi.buffer(out, 32)).hex() == (
        "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
    )


def test_reference_implementation_vector_through_derive_key() -> None:
    """phc-winner-argon2 test.c: Argon2id v=0x13, t=2, m=2^16, p=1, no secret or data."""
    params = Argon2Params(memory_kib=1 << 16, time_cost=2, parallelism=1)
    assert derive_key(b"password", b"somesalt", params).hex() == (
        "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"
    )


def test_derive_key_depends_on_every_input() -> None:
    base = Argon2Params(memory_kib=8, time_cost=1, parallelism=1)
    salt = bytes(16)
    reference = derive_key(b"secret", salt, base)
    assert len(reference) == 32
    assert derive_key(b"secret", salt, base) == reference
    others = [
        derive_key(b"Secret", salt, base),
        derive_key(b"secret", b"\x01" + salt[1:], base),
        derive_key(b"secret", salt, Argon2Params(16, 1, 1)),
        derive_key(b"secret", salt, Argon2Params(8, 2, 1)),
        derive_key(b"secret", salt, Argon2Params(16, 1, 2)),
    ]
    assert len({reference, *others}) == 6


@pytest.mark.parametrize(
    "params",
    [
        Argon2Params(8, 1, 1),
        Argon2Params(47104, 2, 1),
        Argon2Params(1 << 20, 16, 64),
        Argon2Params(512, 1, 64),
    ],
)
def test_parameters_within_the_ceiling_pass(params: Argon2Params) -> None:
    params.check_ceiling(**CEILING)


@pytest.mark.parametrize(
    "params",
    [
        Argon2Params((1 << 20) + 1, 2, 1),  # memory above the ceiling
        Argon2Params(0xFFFFFFFF, 2, 1),  # a planted 4 TiB slot
        Argon2Params(47104, 17, 1),  # passes above the ceiling
        Argon2Params(47104, 0xFFFFFFFF, 1),
        Argon2Params(47104, 0, 1),  # no pass at all
        Argon2Params(47104, 2, 0),  # no lane
        Argon2Params(47104, 2, 65),  # more lanes than allowed
        Argon2Params(7, 1, 1),  # below Argon2's minimum of 8 KiB per lane
        Argon2Params(15, 1, 2),
    ],
)
def test_parameters_outside_the_range_are_refused(params: Argon2Params) -> None:
    with pytest.raises(KdfParametersRefused, match="crypto.argon2.max_"):
        params.check_ceiling(**CEILING)
