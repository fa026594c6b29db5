"""URLAUTH grants: the token opens its grant for its URL only, one opaque error else."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryptmail.crypto import new_url_token, open_url_grant, seal_url_grant, url_token_lookup
from cryptmail.errors import DecryptionFailed

URL = b"canonical url"
GRANT = b"grant bytes"


def test_round_trip_and_fresh_tokens() -> None:
    token = new_url_token()
    assert len(token) == 32 and token != new_url_token()
    sealed = seal_url_grant(token, URL, GRANT)
    assert open_url_grant(token, URL, sealed) == GRANT
    assert seal_url_grant(token, URL, GRANT) != sealed  # a fresh nonce each time
    assert GRANT not in sealed


def test_lookup_is_hkdf_of_the_token_and_not_the_wrap_key() -> None:
    token = bytes(range(32))
    expected = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"cryptmail/v1/urlauth-lookup"
    ).derive(token)
    assert url_token_lookup(token) == expected
    assert token not in expected


def test_format_as_documented() -> None:
    """An independent reader of docs/security.md "URLAUTH grants" opens a sealed grant."""
    token = new_url_token()
    sealed = seal_url_grant(token, URL, GRANT)
    wrap_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"cryptmail/v1/urlauth-wrap"
    ).derive(token)
    aad = b"cryptmail/v1/urlauth-wrap" + b"\x01" + URL
    assert sealed[0] == 1
    assert AESGCM(wrap_key).decrypt(sealed[1:13], sealed[13:], aad) == GRANT


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_every_change_is_one_opaque_error() -> None:
    token = new_url_token()
    sealed = seal_url_grant(token, URL, GRANT)
    cases = [
        (new_url_token(), URL, sealed),
        (token, URL + b"x", sealed),
        (token, URL, _flip(sealed, 0)),
        (token, URL, _flip(sealed, 5)),
        (token, URL, _flip(sealed, len(sealed) - 1)),
        (token, URL, sealed[:-1]),
        (token, URL, sealed[:20]),
        (token, URL, b""),
        (token, URL, sealed + bytes(70_000)),
        (token[:16], URL, sealed),
    ]
    for case_token, url, data in cases:
        with pytest.raises(DecryptionFailed):
            open_url_grant(case_token, url, data)
    with pytest.raises(DecryptionFailed):
        url_token_lookup(b"short")
