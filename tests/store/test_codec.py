"""Encodings of sealed index values: flags padding, the cache record, rounded sizes."""

from __future__ import annotations

import pytest

from cryptmail.crypto import PayloadKey
from cryptmail.errors import ObjectTampered
from cryptmail.store import MessageCache, round_size
from cryptmail.store._codec import decode_flags, encode_flags


@pytest.mark.parametrize(
    "flags",
    [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Flagged", "$Label1", "ü"})],
)
def test_flags_round_trip_padded_to_32(flags: frozenset[str]) -> None:
    encoded = encode_flags(flags)
    assert len(encoded) % 32 == 0
    assert decode_flags(encoded) == flags


def test_flag_sets_of_similar_length_encode_to_one_length() -> None:
    assert len(encode_flags(frozenset())) == len(encode_flags(frozenset({"\\Seen"})))


@pytest.mark.parametrize("data", [b"\xff\xfe", b"{not json", b'{"a": 1}', b"[1, 2]", b"[null]"])
def test_bad_flags_are_tampered(data: bytes) -> None:
    with pytest.raises(ObjectTampered):
        decode_flags(data)


def test_cache_round_trip_with_and_without_key() -> None:
    with_key = MessageCache(size=12345, message_key=bytes(range(32)), extra=b"envelope")
    assert MessageCache.decode(with_key.encode()) == with_key
    without = MessageCache(size=7, message_key=None)
    assert MessageCache.decode(without.encode()) == without


def test_cache_round_trip_with_a_payload_key() -> None:
    payload_key = PayloadKey(bytes(range(32)), bytes(range(32, 64)))
    cache = MessageCache(size=99, message_key=None, extra=b"analysis", payload_key=payload_key)
    decoded = MessageCache.decode(cache.encode())
    assert decoded == cache
    assert decoded.key == (None, payload_key)
    both = MessageCache(size=1, message_key=b"M" * 32, extra=b"x", payload_key=payload_key)
    assert MessageCache.decode(both.encode()) == both
    with pytest.raises(ObjectTampered):
        MessageCache.decode(cache.encode()[: 10 + 40])  # cut inside the payload key


def test_cache_repr_hides_the_key() -> None:
    cache = MessageCache(size=1, message_key=b"K" * 32, extra=b"secret")
    assert "KKK" not in repr(cache)
    assert "secret" not in repr(cache)


def test_cache_rejects_truncated_and_unknown_version() -> None:
    encoded = MessageCache(size=1, message_key=None).encode()
    with pytest.raises(ObjectTampered):
        MessageCache.decode(encoded[:5])
    with pytest.raises(ObjectTampered):
        MessageCache.decode(b"\x09" + encoded[1:])


@pytest.mark.parametrize(
    ("size", "rounded"), [(0, 0), (1, 4096), (4096, 4096), (4097, 8192), (10**6, 1003520)]
)
def test_round_size(size: int, rounded: int) -> None:
    assert round_size(size) == rounded
