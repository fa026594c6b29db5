"""SASL PLAIN responses as every protocol reads them."""

from __future__ import annotations

import pytest

from cryptmail.plainauth import MAX_FIELD, Fault, PlainRejected, parse_plain


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
