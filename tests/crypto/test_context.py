"""Length-prefixed contexts: every list of parts has its own encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.crypto import FieldCipher, context
from cryptmail.errors import DecryptionFailed

_PART = st.one_of(st.binary(max_size=40), st.text(max_size=20), st.integers(0, 2**63))


def test_the_encoding_is_documented() -> None:
    assert context() == b""
    assert context(b"ab") == b"\x00\x02ab"
    assert context("cm_mailboxes.name_sealed", 17) == (
        b"\x00\x18cm_mailboxes.name_sealed\x00\x0217"
    )
    assert context("é") == b"\x00\x02\xc3\xa9"


def test_equal_concatenations_give_different_contexts() -> None:
    assert b"ab" + b"c" == b"a" + b"bc"
    assert context(b"ab", b"c") != context(b"a", b"bc")
    assert context("flags|1", "2") != context("flags", "1|2")
    assert context(b"", b"x") != context(b"x", b"")
    assert context(b"x") != context(b"x", b"")


def test_equal_concatenations_give_different_aad() -> None:
    """A field sealed for ("ab", "c") does not open for ("a", "bc")."""
    fields = FieldCipher(bytes(32))
    sealed = fields.seal(b"value", context(b"ab", b"c"))
    assert fields.open(sealed, context(b"ab", b"c")) == b"value"
    with pytest.raises(DecryptionFailed):
        fields.open(sealed, context(b"a", b"bc"))


@given(st.lists(_PART, max_size=5), st.lists(_PART, max_size=5))
def test_the_encoding_is_injective(a: list[bytes | str | int], b: list[bytes | str | int]) -> None:
    def norm(parts: list[bytes | str | int]) -> list[bytes]:
        return [
            str(p).encode() if isinstance(p, int) else p.encode() if isinstance(p, str) else p
            for p in parts
        ]

    if norm(a) != norm(b):
        assert context(*a) != context(*b)


def test_a_part_over_65535_bytes_is_refused() -> None:
    assert len(context(bytes(65535))) == 65537
    with pytest.raises(ValueError, match="65535"):
        context(bytes(65536))
