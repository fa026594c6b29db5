"""Sort keys: RFC 5256 base subject, i;unicode-casemap, addresses, dates, ids."""

from __future__ import annotations

import sys
import tracemalloc

import pytest

from cryptmail.imap.message._analysis import analyze_message
from cryptmail.imap.message._sortkeys import (
    SortMemo,
    base_subject,
    encode_sort_fields,
    header_sort_fields,
    message_ids,
    sort_keys,
    unicode_casemap,
)

BASE_SUBJECTS = [
    # (raw Subject, base subject, reply or forward)
    (b"Meeting", "Meeting", False),
    (b"Re: Meeting", "Meeting", True),
    (b"RE: re: Fw: FWD: Meeting", "Meeting", True),
    (b"Re : Meeting", "Meeting", True),  # *WSP before the colon
    (b"Re[2]: Meeting", "Meeting", True),  # subj-refwd with a blob
    (b"Re [2] : Meeting", "Meeting", True),
    (b"[list] Meeting", "Meeting", False),  # step 4: a leading blob goes ...
    (b"[list]", "[list]", False),  # ... unless nothing would be left
    (b"[a][b] Re: [c] Meeting", "Meeting", True),
    (b"[list] Re: [list] Re: Meeting", "Meeting", True),
    (b"Meeting (fwd)", "Meeting", True),  # step 2: trailer
    (b"Meeting (FWD) (fwd)  ", "Meeting", True),
    (b"[Fwd: Meeting]", "Meeting", True),  # step 6
    (b"[fwd: Re: Meeting] (fwd)", "Meeting", True),
    (b"[Fwd: [fwd: Meeting]]", "Meeting", True),
    (b"[fwd: Meeting", "[fwd: Meeting", False),  # no closing bracket: not a forward
    (b"Re:", "", True),
    (b"", "", False),
    (b"   spaced \t  out\t", "spaced out", False),
    (b"Re: Re:Meeting", "Meeting", True),
    (b"Reply: x", "Reply: x", False),  # "re" must be followed by WSP, blob or colon
    (b"Fwdx: y", "Fwdx: y", False),
    (b"Fw:Fwd:Re:x", "x", True),
    (b"Meeting (fwd) x", "Meeting (fwd) x", False),  # a trailer only at the end
    (b"Re: =?utf-8?q?R=C3=A9sum=C3=A9?=", "Résumé", True),  # encoded words decoded
    (b"=?iso-8859-1?q?Re=3A_=C9t=E9?=", "Été", True),  # the leader may be encoded
    (b"=?utf-8?b?W2xpc3Rd?= =?utf-8?b?IFJlOiB4?=", "x", True),  # words joined first
    (b"Re:\r\n Meeting", "Meeting", True),  # continuation as a space
    (b"\xe9t\xe9", "\ufffdt\ufffd", False),  # 8-bit not UTF-8: U+FFFD, as Dovecot
]


@pytest.mark.parametrize(("raw", "expected", "reply"), BASE_SUBJECTS)
def test_base_subject(raw: bytes, expected: str, reply: bool) -> None:
    assert base_subject(raw) == (expected, reply)


def test_unicode_casemap_is_titlecase_then_nfkd() -> None:
    assert unicode_casemap("abc") == "ABC"
    assert unicode_casemap("résumé") == unicode_casemap("RÉSUMÉ") == "RE\u0301SUME\u0301"
    assert unicode_casemap("été") == unicode_casemap("ÉTÉ")
    # The ligature has no simple titlecase mapping; NFKD then gives a lower-case "fi"
    # (as RFC 5051 reads and Dovecot sorts: the oracle test has "ﬁle" and "FILE").
    assert unicode_casemap("ﬁle") == "fiLE"
    # dz with caron: all three cases title-case to U+01C5, which decomposes to "Dž".
    assert unicode_casemap("ǆ") == unicode_casemap("Ǆ") == unicode_casemap("ǅ") == "Dz\u030c"
    assert unicode_casemap("ß") == "ß"  # simple titlecase mapping keeps it
    assert unicode_casemap("Straße") != unicode_casemap("STRASSE")
    # Comparison by code point is the order of UTF-8 octets.
    words = ["zebra", "Apple", "été", "日本", "\ufffd", "Ärger"]
    by_octets = sorted(words, key=lambda w: unicode_casemap(w).encode("utf-8"))
    assert sorted(words, key=unicode_casemap) == by_octets


def _keys(header: bytes) -> object:
    return sort_keys(header_sort_fields(header))


def test_addresses_first_mailbox_and_display() -> None:
    keys = sort_keys(
        header_sort_fields(
            b"From: =?utf-8?q?=C3=89mile?= <emile@example.fr>, bob@x\r\n"
            b"To: Group: dave@example.org;\r\nCc: <>\r\n"
        )
    )
    assert keys.from_ == "EMILE" and keys.display_from == unicode_casemap("Émile")
    assert keys.to == "GROUP" and keys.display_to == "GROUP"  # the group's name
    assert keys.cc == "MISSING_MAILBOX"  # "<>" filled in, as Dovecot does
    keys = sort_keys(header_sort_fields(b'From: "" <quiet@example.org>\r\n'))
    assert keys.display_from == "QUIET@EXAMPLE.ORG"  # empty name: the address
    keys = sort_keys(header_sort_fields(b"Subject: x\r\n"))
    assert (keys.from_, keys.to, keys.cc, keys.display_from) == ("", "", "", "")


def test_dates() -> None:
    keys = sort_keys(header_sort_fields(b"Date: Mon, 1 Jan 2024 12:00:00 +0200\r\n"))
    assert keys.date == 1704103200.0  # 10:00 UTC
    for bad in (b"Date: garbage\r\n", b"Date: \r\n", b"X: y\r\n", b"Date: 99 Foo 99999\r\n"):
        assert sort_keys(header_sort_fields(bad)).date is None


def test_message_ids_and_references() -> None:
    assert message_ids(b"<a@b> junk <c@d>\r\n (comment) <no-at> <e@f>") == ["a@b", "c@d", "e@f"]
    keys = sort_keys(
        header_sort_fields(
            b"Message-ID: <me@x>\r\nIn-Reply-To: <p@x> <q@x>\r\nReferences: <r@x>\r\n <s@x>\r\n"
        )
    )
    assert keys.message_id == "me@x" and keys.references == ("r@x", "s@x")
    keys = sort_keys(header_sort_fields(b"In-Reply-To: <p@x> <q@x>\r\nReferences: none\r\n"))
    assert keys.references == ("p@x",)  # no usable References: the first In-Reply-To


def test_record_keeps_first_field_and_caps_values() -> None:
    record = encode_sort_fields(
        [(b"subject", b"one"), (b"subject", b"two"), (b"x-other", b"no"),
         (b"references", b"<a@b> " * 10_000)]
    )  # fmt: skip
    fields = dict(line.split(b":", 1) for line in record.splitlines())
    assert fields[b"subject"] == b"one" and b"x-other" not in fields
    assert len(fields[b"references"]) == 16 * 1024 and fields[b"references"].endswith(b"<a@b> ")
    keys = sort_keys(record)
    assert len(keys.references) == 256


def test_analysis_and_header_give_the_same_record() -> None:
    message = (
        b"Subject: Re: x\r\nFrom: a@b\r\nTo: c@d\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        b"References: <1@x>\r\n\t<2@x>\r\nMessage-ID: <3@x>\r\nSubject: second\r\n\r\nbody\r\n"
    )
    header = message.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert analyze_message(message).sort_fields == header_sort_fields(header)


def test_fifty_thousand_keys_fit_the_stated_bound() -> None:
    """docs/benchmarks.md states 24 MB for the keys of 50,000 messages (interned
    strings, as the server keeps them; about 430 bytes a message with a unique
    Message-ID and one reference); this measures that mix."""
    from cryptmail.imap.server._sortkeys import _make_keys

    records = [
        (
            uid,
            2000 + uid % 5000,
            encode_sort_fields(
                [
                    (b"subject", b"Re: [list] weekly report number %d" % (uid % 3000)),
                    (b"from", b"Sender %d <sender%d@example.org>" % (uid % 400, uid % 400)),
                    (b"to", b"list@example.org"),
                    (b"date", b"Mon, 1 Jan 2024 10:00:00 +0000"),
                    (b"message-id", b"<%d.%d@mail.example.org>" % (uid, uid * 7)),
                    (b"references", b"<%d.%d@mail.example.org>" % (uid - 1, uid * 7 - 7)),
                ]
            ),
        )
        for uid in range(1, 50_001)
    ]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = dict(_make_keys(records))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(table) == 50_000
    print(f"sort keys of 50,000 messages: {used / 1e6:.1f} MB", file=sys.stderr)
    assert used < 24_000_000


def test_a_memo_gives_the_same_keys_as_parsing_each_record_alone() -> None:
    records = [
        encode_sort_fields(
            [
                (
                    b"subject",
                    [b"Re: plan", b"=?utf-8?q?r=C3=A9sum=C3=A9?=", b"[list] Fwd: plan"][i % 3],
                ),
                (b"from", [b'"Ann" <ann@example.net>', b"bob@example.net", b"<>"][i % 3]),
                (b"to", b"user@example.org"),
                (b"date", b"%d Jan 2024 10:00:00 +0000" % (1 + i % 28)),
            ]
        )
        for i in range(30)
    ]
    memo = SortMemo()
    assert [sort_keys(r, memo) for r in records] == [sort_keys(r) for r in records]
    assert len(memo.addresses) == 4 and len(memo.subjects) == 3  # each value parsed once
