"""The ready form of sort keys (what a version 2 sort entry holds) reads back as the
very keys the slow path makes from the record, over odd headers."""

from __future__ import annotations

import math

import pytest

from cryptmail.store import header_sort_fields
from cryptmail.store.sortkeys import (
    ReadyBlock,
    SortKeys,
    decode_ready_keys,
    encode_ready_keys,
    sort_keys,
)

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


def _block_of_headers() -> tuple[ReadyBlock, dict[int, SortKeys]]:
    """A block of every header above, given out of UID order, and the keys expected."""
    expected: dict[int, SortKeys] = {}
    entries = []
    for index, header in enumerate(HEADERS):
        uid = 100 - 7 * index
        keys = sort_keys(header_sort_fields(header))._replace(size=10 + index, arrival=1e9 + index)
        expected[uid] = keys
        entries.append((uid, keys.size, keys.arrival, encode_ready_keys(keys)))
    return ReadyBlock(entries), expected


def test_a_block_decodes_each_column_as_the_whole_keys_have_it() -> None:
    block, expected = _block_of_headers()
    assert block.uids == sorted(expected) and len(block) == len(HEADERS)
    assert block.keys() == sorted(expected.items())
    for field in ("subject", "from_", "to", "cc", "display_from", "display_to", "size"):
        assert block.column(field) == [getattr(expected[uid], field) for uid in block.uids]
    sent = [k.arrival if k.date is None else k.date for k in map(expected.__getitem__, block.uids)]
    assert block.column("sent") == sent
    assert block.column("arrival") == [expected[uid].arrival for uid in block.uids]
    for uid, keys in expected.items():
        assert block.column("from_")[block.uids.index(uid)] == keys.from_
    with pytest.raises(KeyError):
        block.column("message_id")


def test_a_block_keeps_the_first_entry_of_a_uid_and_empty_keys_for_bad_bytes() -> None:
    """Bytes that do not decode (never expected: delivery sealed them) give empty keys
    and empty strings, never an error in the middle of a SORT."""
    good = encode_ready_keys(sort_keys(header_sort_fields(HEADERS[0])))
    block = ReadyBlock([(5, 1, 2.0, good), (5, 9, 9.0, b"other"), (3, 4, 7.0, good[:5])])
    assert block.uids == [3, 5]
    assert block.column("subject") == ["", sort_keys(header_sort_fields(HEADERS[0])).subject]
    assert block.column("sent")[0] == 7.0  # no date readable: the arrival
    empty = SortKeys(None, "", False, "", "", "", "", "", None, (), 4, 7.0)
    assert block.keys()[0] == (3, empty)
    assert block.keys()[1][1].size == 1
