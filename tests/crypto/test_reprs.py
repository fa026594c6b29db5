"""No repr of a value that holds key material shows the key, wrapped or not."""

from __future__ import annotations

import os

from cryptmail.crypto import (
    BlobSealer,
    WrappedKey,
    generate_private_key,
    parse_blob_header,
    public_info,
)
from cryptmail.crypto.dovecot import DovecotKeySet, DovecotRecipient


def _shows(value: object, secret: bytes) -> bool:
    text = repr(value)
    return repr(secret) in text or secret.hex() in text


def test_blob_header_and_wrapped_key_reprs_hide_the_wrapped_key() -> None:
    sealer = BlobSealer(public_info(generate_private_key("x25519")), os.urandom(16))
    header = parse_blob_header(sealer.header)
    assert header.wrapped is not None
    assert not _shows(header, header.wrapped.wrapped)
    assert not _shows(header, header.raw)
    assert not _shows(header.wrapped, header.wrapped.wrapped)
    wrapped = WrappedKey(ephemeral=b"\x04" * 32, wrapped=b"wrapped-key-3c9a")
    assert "wrapped-key-3c9a" not in repr(wrapped)


def test_dovecot_values_hide_their_keys() -> None:
    recipient = DovecotRecipient(2, "ab" * 32, b"\x02" * 33, b"wrapped-seed-51f0")
    assert "wrapped-seed-51f0" not in repr(recipient)
    keys = DovecotKeySet(active="ab" * 32, private_keys={"ab" * 32: "2:private-key-77e1"})
    assert "private-key-77e1" not in repr(keys)
