"""SASL PLAIN responses as every protocol reads them."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from cryptmail.plainauth import (
    MAX_FIELD,
    Fault,
    LoginRefused,
    PlainRejected,
    decode_plain_response,
    parse_plain,
)


def test_user_and_password_with_or_without_the_same_authzid() -> None:
    for response in (
        b"\x00bob@example.org\x00pw \xc3\xa9",
        b"bob@example.org\x00bob@example.org\x00pw \xc3\xa9",
    ):
        plain = parse_plain(response)
        assert plain.address == "bob@example.org"
        assert plain.password.reveal() == "pw é".encode()


def test_an_empty_password_is_for_the_login_to_refuse() -> None:
    assert parse_plain(b"\x00bob@example.org\x00").password.reveal() == b""


@pytest.mark.parametrize(
    ("response", "fault"),
    [
        (b"only one field", "malformed"),
        (b"\x00bob@example.org", "malformed"),
        (b"a\x00b\x00c\x00d", "malformed"),
        (b"\x00\x00password", "malformed"),
        (b"alice@example.org\x00bob@example.org\x00pw", "another user"),
        (b"\x00\xff\xfe\x00pw", "not UTF-8"),
        (b"\x00bob@example.org\x00\xff", "not UTF-8"),
        (b"\x00" + b"a" * (MAX_FIELD + 1) + b"\x00pw", "too long"),
        (b"\x00bob@example.org\x00" + b"p" * (MAX_FIELD + 1), "too long"),
    ],
)
def test_refusals_say_why_without_the_secret(response: bytes, fault: Fault) -> None:
    with pytest.raises(PlainRejected) as caught:
        parse_plain(response)
    assert caught.value.fault == fault
    assert b"pw" not in str(caught.value).encode() and "bob" not in str(caught.value)


@pytest.mark.parametrize("encode", [lambda b: b, lambda b: b.decode("ascii")])
def test_a_base64_response_decodes_or_is_refused_with_the_protocols_answer(
    encode: Callable[[bytes], str | bytes],
) -> None:
    """POP3 (str) and ManageSieve (bytes) decode the same way: not base64 or not ASCII
    is `invalid`; anything else malformed gets the wrong-password answer."""
    good = base64.b64encode(b"\x00bob@example.org\x00pw")
    credentials = decode_plain_response(encode(good), invalid=b"INVALID", failed=b"FAILED")
    assert credentials.address == "bob@example.org"
    assert credentials.password.reveal() == b"pw"
    for response, reply in (
        (encode(b"not base64!"), b"INVALID"),
        ("bäd", b"INVALID"),
        (encode(base64.b64encode(b"no separators")), b"FAILED"),
        (encode(base64.b64encode(b"carol\x00bob\x00pw")), b"FAILED"),
    ):
        with pytest.raises(LoginRefused) as refused:
            decode_plain_response(response, invalid=b"INVALID", failed=b"FAILED")
        assert refused.value.reply == reply
