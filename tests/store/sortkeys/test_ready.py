"""The ready form of sort keys (what a version 2 sort entry holds) reads back as the
very keys the slow path makes from the record, over odd headers."""

from __future__ import annotations

import math

import pytest

from cryptmail.store import header_sort_fields
from cryptmail.store.sortkeys import SortKeys, decode_ready_keys, encode_ready_keys, sort_keys

HEADERS = [
    b"From: =?utf-8?b?w4lsb2TDqWE=?= <e@example.net>\r\nSubject: =?iso-8859-1?q?Caf=E9?= (fwd)\r\n",
    b"From: Team: a@example.net, b@example.net;\r\nTo: undisclosed-recipients:;\r\n"
    b"Subject: [fwd: Re: \xc3\x9cn\xc3\xafc\xc3\xb6d\xc3\xa9 stra\xc3\x9fe]\r\n",
    b'From: <>\r\nCc: "Q, R" <q@example.org>\r\nSubject: \r\nIn-Reply-To: <p@x> <q@x>\r\n',
    b"",
    b"Subject: bad \xff\xfe bytes\r\nDate: Mon, 1 Jan 2024 12:00:00 +0200\r\n"
    b"Message-ID: <a@b>\r\nReferences: <r1@x>\r\n <r2@x> <r3@x>\r\n",
    b'Subject: =?utf-8?q?=00nul?=\r\nFrom: "\\ud800" <x@y>\r\n',
]


@pytest.mark.parametrize("header", HEADERS)
def test_ready_keys_are_the_keys_the_record_makes(header: bytes) -> None:
    keys = sort_keys(header_sort_fields(header))
    assert decode_ready_keys(encode_ready_keys(keys)) == keys
    assert decode_ready_keys(encode_ready_keys(keys), 77, 1.5) == keys._replace(
        size=77, arrival=1.5
    )


def test_no_date_no_message_id_and_an_empty_message_id_differ() -> None:
    none = SortKeys(None, "", False, "", "", "", "", "", None, ())
    empty = none._replace(message_id="", date=0.0)
    assert decode_ready_keys(encode_ready_keys(none)) == none
    back = decode_ready_keys(encode_ready_keys(empty))
    assert back == empty and back.message_id == "" and back.date == 0.0
    assert decode_ready_keys(encode_ready_keys(none._replace(date=math.inf))).date == math.inf


def test_damaged_ready_keys_raise() -> None:
    data = encode_ready_keys(sort_keys(header_sort_fields(HEADERS[0])))
    for bad in (data[:5], data[:-1], data + b"x", data[:8] + b"\x80" + data[9:]):
        with pytest.raises(ValueError, match="ready sort keys"):
            decode_ready_keys(bad)
