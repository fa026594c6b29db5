"""PREVIEW text (RFC 8970): which part, decoding, HTML, folding, the length bound."""

from __future__ import annotations

import base64

from cryptmail.imap.message._analysis import MessageAnalysis, analyze_message
from cryptmail.imap.message._preview import PREVIEW_CHARS, SOURCE_BYTES, preview_from_bytes

from .test_mime import fixed_analysis


def _preview(message: bytes) -> str:
    analysis = analyze_message(message, with_preview=True)
    assert analysis.preview is not None
    assert analysis.preview == preview_from_bytes(message, analysis.part_map)
    return analysis.preview


def test_plain_is_folded_without_quotes() -> None:
    message = b"Subject: x\r\n\r\n  Hi\tthere,\r\n\r\n> quoted\r\n  >> deeper\r\nbye\x00now\r\n"
    assert _preview(message) == "Hi there, byenow"


def test_plain_preferred_over_html_and_attachments_skipped() -> None:
    message = (
        b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n"
        b"attached text\r\n--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n"
        b"--a\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--a\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + base64.encodebytes("Grüße".encode("latin-1")) + b"--a--\r\n--m--\r\n"
    )
    assert _preview(message) == "Grüße"


def test_html_only_is_stripped() -> None:
    message = (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
        b"\r\n\r\n<html><head><title>t</title><style>p{}</style></head><body><p>Caf=C3=A9&nbsp;"
        b"&lt;ok&gt;</p><script>x()</script><div>two</div></body></html>\r\n"
    )
    assert _preview(message) == "Café <ok> two"


def test_no_text_part_and_length_bound() -> None:
    assert _preview(b"Content-Type: image/png\r\n\r\nxx\r\n") == ""
    long = _preview(b"Subject: x\r\n\r\n" + "ü".encode() * 5000 + b"\r\n")
    assert long == "ü" * PREVIEW_CHARS
    # Only the first SOURCE_BYTES of the part are read: text after them never shows.
    late = _preview(b"\r\n" + b"\r\n" * SOURCE_BYTES + b"late words\r\n")
    assert late == ""


def test_preview_survives_the_cache_format() -> None:
    message = b"Subject: x\r\n\r\nhello\r\n"
    with_preview = analyze_message(message, with_preview=True)
    assert MessageAnalysis.from_bytes(with_preview.to_bytes()) == with_preview
    without = analyze_message(message)
    assert without.preview is None
    stored = without.to_bytes()
    assert stored[4] == 5  # the current version, its preview marked absent
    assert MessageAnalysis.from_bytes(stored) == without
    assert MessageAnalysis.from_bytes(fixed_analysis(with_preview, 4)) == with_preview
    assert MessageAnalysis.from_bytes(fixed_analysis(without, 3)) == without
