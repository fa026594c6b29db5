"""SieveMessage: unfolded, decoded header values; addresses; body parts."""

from __future__ import annotations

from cryptmail.sieve import SieveMessage

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
