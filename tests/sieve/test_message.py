"""SieveMessage: unfolded, decoded header values; addresses; body parts."""

from __future__ import annotations

import email.header
import email.utils

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.sieve import SieveMessage
from cryptmail.sieve._message import _decode, _simple_addresses

RAW = (
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n and more\r\n"
    b"To: Bob <bob@example.org>, carol@example.org\r\n"
    b"X-Multi: one\r\nX-Multi: two\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nplain words\r\n"
    b"--b\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n"
    b"--b\r\nContent-Type: application/pdf\r\n\r\nPDFDATA\r\n--b--\r\n"
)


def test_headers_are_unfolded_decoded_and_repeated() -> None:
    message = SieveMessage(RAW)
    assert message.header("subject") == ["Grüße and more"]
    assert message.header("X-MULTI") == ["one", "two"]
    assert message.has_header("to") and not message.has_header("cc")


def test_addresses_drop_display_names() -> None:
    assert SieveMessage(RAW).addresses("to") == ["bob@example.org", "carol@example.org"]


def test_body_transforms() -> None:
    message = SieveMessage(RAW)
    text = message.body(":text", ())
    assert any("plain words" in t for t in text) and any("html words" in t for t in text)
    assert not any("PDFDATA" in t for t in text)
    assert any("PDFDATA" in t for t in message.body(":content", ("application/pdf",)))
    assert "--b" in message.body(":raw", ())[0]


def test_a_header_only_copy_keeps_the_whole_size() -> None:
    assert SieveMessage(b"Subject: x\r\n\r\n", size=5000).size == 5000


def test_a_message_with_an_empty_header_has_no_fields() -> None:
    """A message that starts with its empty line (RFC 5322 3.5) has no header: lines of
    its body that look like fields are not tested (Pigeonhole sees none either)."""
    for raw in (b"\r\nX-Spam: Yes\r\nSubject: x\r\n\r\nbody\r\n", b"\nX-Spam: Yes\n\nbody\n"):
        message = SieveMessage(raw)
        assert not message.has_header("x-spam") and message.header("subject") == []


# Address fields of the forms delivery sees most, and of the ones the email package's
# parser must read: several addresses, groups, encoded-words, comments, quotes, none.
ADDRESS_FIELDS = [
    "bench@example.net",
    "Alice <Alice+List@Example.NET>",
    "J. Smith <j.smith@example.org>, bob@example.org,carol@b.example",
    "Friends: ann@example.org, Bob <bob@example.org>;",
    "undisclosed-recipients:;",
    "=?utf-8?q?J=C3=B6rg?= <joerg@example.de>",
    '"Smith, John" <john@example.org>',
    "john@example.org (John Smith)",
    "<>",
    "no-at-sign",
    "a@b, ,c@d",
    "a..b@example.org",
    "a@b c@d",
    "x <a@b> y",
    "a@@b",
    "a@[192.0.2.1]",
    "<@route.example:a@b.example>",
    "",
    " ",
]


def _parsed(values: list[str]) -> list[str]:
    return [address for _name, address in email.utils.getaddresses(values) if address]


def test_addresses_are_what_the_email_package_reads() -> None:
    for value in ADDRESS_FIELDS:
        message = SieveMessage(f"To: {value}\r\nCc: {value}\r\nCc: x@y.example\r\n\r\n".encode())
        assert message.addresses("to") == _parsed([value]), value
        assert message.addresses("CC") == _parsed([value, "x@y.example"]), value


def test_the_common_forms_are_read_without_the_parser() -> None:
    assert _simple_addresses("bench@example.net") == ["bench@example.net"]
    assert _simple_addresses("J. Smith <j@example.org>, b@example.org") == [
        "j@example.org",
        "b@example.org",
    ]
    for value in ('"Smith, John" <j@x.org>', "Friends: a@b;", "a@b (c)", "a@b.example."):
        assert _simple_addresses(value) is None, value


# Characters that make the parser's cases: specials, spaces, 8-bit, encoded-word marks.
FIELD_TEXT = st.text(alphabet=st.sampled_from(list('ab.@<>,;:"()[]\\ \t-+=?_é')), max_size=24)


@settings(max_examples=2000, deadline=None)
@given(FIELD_TEXT)
def test_what_is_read_without_the_parser_is_what_the_parser_reads(value: str) -> None:
    simple = _simple_addresses(value)
    assert simple is None or simple == _parsed([value])


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('aB =?_é\t"')), max_size=16))
def test_a_value_without_encoded_words_is_decoded_as_before(value: str) -> None:
    expected = str(email.header.make_header(email.header.decode_header(value)))
    assert _decode(value) == expected


def test_a_field_asked_twice_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    parse = email.utils.getaddresses

    def counted(values: list[str]) -> list[tuple[str, str]]:
        calls.append(values)
        return parse(values)

    monkeypatch.setattr(email.utils, "getaddresses", counted)
    message = SieveMessage(b'To: "Ann" <ann@example.org>\r\nSubject: =?utf-8?q?hi?=\r\n\r\n')
    first = message.addresses("to")
    assert message.addresses("TO") is first and first == ["ann@example.org"]
    assert len(calls) == 1
    assert message.header("subject") is message.header("Subject")


def test_fields_not_asked_for_are_not_decoded() -> None:
    message = SieveMessage(b"Subject: =?utf-8?q?hi?=\r\nFrom: a@b.example\r\n\r\n")
    assert message.addresses("from") == ["a@b.example"]
    assert message._decoded == {}
