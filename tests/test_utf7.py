"""Modified UTF-7 mailbox names: RFC 3501 examples, round trips, strict rejection, and the
lenient reading the Maildir import uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptmail.errors import ParseError
from cryptmail.utf7 import decode_mailbox_name, encode_mailbox_name


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


@pytest.mark.parametrize(
    ("encoded", "name"),
    [
        ("Entwürfe", "Entwürfe"),  # raw 8-bit stands for itself
        ("a\tb", "a\tb"),  # so does a control character
        ("&AGE-", "a"),  # printable ASCII in BASE64
        ("&U,BTFw-&ZeVnLIqe-", "台北日本語"),  # two adjacent runs
        ("&U,BTF2-", "台北"),  # non-zero padding bits
        ("Caf&AOk-", "Café"),
        ("A&-B", "A&B"),
    ],
)
def test_lenient_accepts_what_other_programs_write(encoded: str, name: str) -> None:
    assert decode_mailbox_name(encoded, strict=False) == name


@pytest.mark.parametrize("bad", ["&U,BTFw", "&Jjo!-", "&2D0-", "&AA-", "&AP-", "&é-"])
def test_lenient_still_rejects_broken_runs(bad: str) -> None:
    with pytest.raises(ParseError):
        decode_mailbox_name(bad, strict=False)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_lenient_reads_every_canonical_name(name: str) -> None:
    assert decode_mailbox_name(encode_mailbox_name(name), strict=False) == name
