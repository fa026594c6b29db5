"""BODY and BODYSTRUCTURE of message/global (RFC 6532) in both protocol revisions: a leaf
in IMAP4rev1, as Dovecot 2.3 answers (the expected bytes are its answers to the same
message), and a message with envelope, structure and line count in IMAP4rev2 (RFC 9051
``body-type-msg``); section numbers enter it in rev2 only. The cached analysis carries
both forms; an older cache of such a message is refused (analysed again), one without
message/global is still read."""

from __future__ import annotations

import pytest

from cryptmail.imap.message._analysis import MessageAnalysis, analyze_message
from cryptmail.imap.wire._requests import Section

from .test_mime import fixed_analysis

INNER = (
    "From: Jörg <jörg@bücher.example>\r\nSubject: grüße\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n"
).encode()
GLOBAL = (
    b"From: a@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    b"hi\r\n--b\r\nContent-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + INNER
    + b"--b--\r\n"
)
DOVECOT_BODYSTRUCTURE = (
    b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 0 NIL NIL NIL NIL)'
    b'("message" "global" NIL NIL NIL "8bit" 124 NIL NIL NIL NIL) "mixed" ("boundary" "b") '
    b"NIL NIL NIL)"
)
DOVECOT_BODY = (
    b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 0)'
    b'("message" "global" NIL NIL NIL "8bit" 124) "mixed")'
)
# Inside the multipart the CRLF before the boundary is the boundary's: "Grüße" is 7
# bytes on 0 lines, the message 5 lines (its header's four and the empty line).
INNER_TEXT = b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 7 0'


def test_rev1_forms_are_dovecots_leaf() -> None:
    analysis = analyze_message(GLOBAL)
    assert analysis.bodystructure == DOVECOT_BODYSTRUCTURE
    assert analysis.body == DOVECOT_BODY
    assert analysis.bodystructure_for(False) == DOVECOT_BODYSTRUCTURE
    assert analysis.body_for(False) == DOVECOT_BODY


def test_rev2_forms_describe_the_message_inside() -> None:
    analysis = analyze_message(GLOBAL)
    structure = analysis.bodystructure_for(True)
    # The envelope is the one FETCH ENVELOPE gives for the inner message on its own.
    envelope = analyze_message(INNER).envelope
    assert b"{5}\r\nJ\xc3\xb6rg" in envelope
    expected_part = b'("message" "global" NIL NIL NIL "8bit" 124 ' + envelope + b" " + INNER_TEXT
    assert structure.startswith(
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 0 NIL NIL NIL NIL)'
        + expected_part
    ), structure
    assert structure.endswith(
        b' NIL NIL NIL NIL) 5 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)'
    ), structure
    body = analysis.body_for(True)
    assert body == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 2 0)'
        + expected_part
        + b') 5) "mixed")'
    ), body


def test_a_message_without_message_global_has_one_form() -> None:
    analysis = analyze_message(b"Subject: x\r\n\r\nbody\r\n")
    assert analysis.rev2_body is None and analysis.rev2_bodystructure is None
    assert analysis.body_for(True) == analysis.body


@pytest.mark.parametrize("encoding", [b"base64", b"quoted-printable"])
def test_an_encoded_message_global_stays_a_leaf(encoding: bytes) -> None:
    """RFC 6532 3.5 allows an encoded message/global; its header is unreadable as it
    stands: a leaf in rev1, application/octet-stream (Dovecot's form for a container it
    did not read) in rev2, where "message" "global" must carry an envelope."""
    message = (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: message/global\r\nContent-Transfer-Encoding: " + encoding
        + b"\r\n\r\nRnJvbTogYUBiLmM=\r\n--b--\r\n"
    )  # fmt: skip
    analysis = analyze_message(message)
    assert b'("message" "global" NIL NIL NIL "' in analysis.bodystructure
    rev2 = analysis.bodystructure_for(True)
    assert b'("application" "octet-stream" NIL NIL NIL "' in rev2 and b"global" not in rev2


def test_sections_enter_message_global_in_rev2_only() -> None:
    part_map = analyze_message(GLOBAL).part_map
    # rev1, as Dovecot: part 2 is a leaf; 2.1 is itself, 2.HEADER and 2.TEXT are empty.
    assert part_map.plan(Section((2, 1), "")).size == len(INNER) - 2  # Dovecot's 124
    assert not part_map.plan(Section((2,), "HEADER")).found
    assert not part_map.plan(Section((2, 1, 1), "")).found
    # rev2: part 2 holds a message; 2.1 is its body, 2.HEADER its header.
    header = INNER[: INNER.index(b"\r\n\r\n") + 4]
    assert part_map.plan(Section((2,), "HEADER"), rev2=True).size == len(header)
    assert part_map.plan(Section((2, 1), ""), rev2=True).size == len("Grüße".encode())
    assert part_map.plan(Section((2,), "TEXT"), rev2=True).size == len("Grüße".encode())
    assert part_map.plan(Section((2,), ""), rev2=True).size == len(INNER) - 2


def test_cached_forms_round_trip_and_older_caches_of_message_global_are_refused() -> None:
    analysis = analyze_message(GLOBAL, with_preview=True)
    assert MessageAnalysis.from_bytes(analysis.to_bytes()) == analysis
    without_preview = analysis._replace(preview=None)
    assert MessageAnalysis.from_bytes(without_preview.to_bytes()) == without_preview
    for version in (2, 3, 4):
        # Written before message/global was read as a message: its rev2 forms would be
        # wrong, so the cache is refused and the message analysed again.
        with pytest.raises(ValueError, match="message/global"):
            MessageAnalysis.from_bytes(fixed_analysis(analysis, version))
    plain = analyze_message(b"Subject: x\r\n\r\nbody\r\n", with_preview=True)
    assert MessageAnalysis.from_bytes(fixed_analysis(plain, 4)) == plain
