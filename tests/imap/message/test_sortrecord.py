"""The sort key record payload: every field round-trips (missing date and id, non-ASCII,
empty references, many references), strings are shared, a wanted filter keeps only
matching rows with their arrival set, and anything malformed is refused."""

from __future__ import annotations

import math

import pytest

from cryptmail.imap.message._sortkeys import SortKeys, SortMemo, encode_sort_fields, sort_keys
from cryptmail.imap.message._sortorder import block_value
from cryptmail.imap.message._sortrecord import SortBlock, decode_sort_record, encode_sort_record


def _keys(i: int) -> SortKeys:
    fields = [
        (b"subject", b"Re: [list] =?utf-8?q?r=C3=A9sum=C3=A9?= %d" % (i % 3)),
        (b"from", b"=?utf-8?q?J=C3=BCrgen?= <j%d@example.net>" % (i % 2)),
        (b"to", b"user@example.org"),
        (b"references", b" ".join(b"<r%d@x>" % n for n in range(i % 4))),
    ]
    if i % 5:
        fields.append((b"date", b"Mon, %d Jan 2024 10:00:00 +0100" % (1 + i % 28)))
    if i % 7:
        fields.append((b"message-id", b"<m%d@example.net>" % i))
    return sort_keys(encode_sort_fields(fields), SortMemo())._replace(size=1000 + i)


def test_every_field_round_trips() -> None:
    entries = [(i + 1, 10_000 + i, _keys(i)) for i in range(50)]
    entries.append((4_000_000_000, 2**40, SortKeys(None, "", False, "", "", "", "", "", None, ())))
    decoded = decode_sort_record(encode_sort_record(entries))
    assert decoded == entries
    assert any(keys.date is None for _u, _r, keys in decoded)
    assert any(keys.message_id is None for _u, _r, keys in decoded)
    assert any(len(keys.references) == 3 for _u, _r, keys in decoded)
    # A repeated value is one object (the in-memory table holds it once).
    assert decoded[0][2].to is decoded[1][2].to


def test_a_wanted_filter_checks_the_row_and_sets_the_arrival() -> None:
    entries = [(uid, 100 + uid, _keys(uid)) for uid in range(1, 6)]
    wanted = {2: (102, 1.5), 3: (999, 2.5), 5: (105, 3.5), 7: (107, 4.5)}
    decoded = decode_sort_record(encode_sort_record(entries), wanted)
    assert [(uid, row, keys.arrival) for uid, row, keys in decoded] == [
        (2, 102, 1.5), (5, 105, 3.5)
    ]  # fmt: skip
    assert decoded[0][2]._replace(arrival=0.0) == entries[1][2]


def test_an_empty_record() -> None:
    assert decode_sort_record(encode_sort_record([])) == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # truncated
        lambda data: data + b"\0",  # trailing bytes
        lambda data: b"XXXX" + data[4:],  # not a record
        lambda data: data[:4] + b"\x02" + data[5:],  # another version
        lambda data: b"",
    ],
)
def test_malformed_records_are_refused(damage: object) -> None:
    data = encode_sort_record([(1, 1, _keys(1)), (2, 2, _keys(2))])
    with pytest.raises(ValueError):
        decode_sort_record(damage(data))  # type: ignore[operator]


def test_a_string_number_out_of_range_is_refused() -> None:
    keys = _keys(4)
    assert not keys.references and keys.message_id is not None
    data = bytearray(encode_sort_record([(1, 1, keys)]))
    # ... u32 message id string number || u32 reference count (0) || no references
    data[-8:-4] = b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        decode_sort_record(bytes(data))


def test_nan_is_no_date() -> None:
    keys = _keys(0)
    assert keys.date is None
    decoded = decode_sort_record(encode_sort_record([(1, 1, keys._replace(date=math.nan))]))
    assert decoded[0][2].date is None


def test_a_block_reads_columns_as_the_whole_keys_hold_them() -> None:
    entries = [(uid, 100 + uid, _keys(uid)) for uid in range(1, 40)]
    wanted = {uid: (row, uid / 2) for uid, row, _keys in entries if uid % 6}
    wanted[6] = (1, 0.0)  # uid 6 is another row now
    block = SortBlock(encode_sort_record(entries), wanted)
    whole = decode_sort_record(encode_sort_record(entries), wanted)
    assert block.uids == [uid for uid, _row, _keys in whole]
    assert block.keys() == [(uid, keys) for uid, _row, keys in whole]
    assert block.entries() == whole
    for field in ("subject", "from_", "to", "cc", "display_from", "display_to", "size"):
        assert block.column(field) == [getattr(keys, field) for _u, _r, keys in whole]
    assert block.column("arrival") == [uid / 2 for uid in block.uids]
    assert block.column("sent") == [
        keys.arrival if keys.date is None else keys.date for _u, _r, keys in whole
    ]
    assert block_value(block, "subject", 5) == whole[4][2].subject
    with pytest.raises(KeyError):
        block_value(block, "subject", 6)


def test_a_block_takes_each_uid_once_ascending_and_only_its_span() -> None:
    """Writers keep a chunk ascending with one entry per UID; a reader that meets one
    that is not still answers in order, each UID once (the first entry), and drops an
    entry outside the chunk's UIDs."""
    keys = [_keys(i) for i in range(4)]
    payload = encode_sort_record(
        [(9, 109, keys[0]), (3, 103, keys[1]), (9, 109, keys[2]), (5000, 5100, keys[3])]
    )
    wanted = {9: (109, 1.0), 3: (103, 2.0), 5000: (5100, 3.0)}
    block = SortBlock(payload, wanted, range(0, 2048))
    assert block.uids == [3, 9]
    assert block.keys() == [(3, keys[1]._replace(arrival=2.0)), (9, keys[0]._replace(arrival=1.0))]
    assert block_value(block, "size", 9) == keys[0].size
