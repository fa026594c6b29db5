"""Modified UTF-7 mailbox names: RFC 3501 examples, round trips, strict rejection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.errors import ParseError
from cryptmail.imap._utf7 import decode_mailbox_name, encode_mailbox_name


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("a&b", "a&-b"),
        ("&", "&-"),
        ("😀", "&2D3eAA-"),
        ("", ""),
    ],
)
def test_known_encodings(name: str, encoded: str) -> None:
    assert encode_mailbox_name(name) == encoded
    assert decode_mailbox_name(encoded) == name


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_round_trip(name: str) -> None:
    encoded = encode_mailbox_name(name)
    assert encoded.isascii()
    assert decode_mailbox_name(encoded) == name


@pytest.mark.parametrize(
    "bad",
    [
        "&U,BTFw",  # unterminated
        "&Jjo!-",  # not BASE64
        "&AGE-",  # printable ASCII 'a' hidden in BASE64
        "&U,BTFw-&ZeVnLIqe-",  # two adjacent runs: not canonical
        "&U,BTF2-",  # non-zero padding bits
        "&2D0-",  # lone high surrogate
        "&AA-",  # truncated run
        "Entwürfe",  # raw 8-bit
        "a\tb",  # control character
        "&AP-",  # odd UTF-16 length
    ],
)
def test_strict_rejections(bad: str) -> None:
    with pytest.raises(ParseError):
        decode_mailbox_name(bad)


@given(st.text(alphabet=st.characters(max_codepoint=0x7E, min_codepoint=0x20), max_size=30))
def test_decode_never_raises_other_errors(text: str) -> None:
    try:
        decoded = decode_mailbox_name(text)
    except ParseError:
        return
    assert encode_mailbox_name(decoded) == text  # accepted means canonical
