"""The payload of a sort key chunk: many messages' :class:`SortKeys`, made once.

A chunk (`store.seal_sort_chunk` seals it) holds, for each message of a range of UIDs
whose keys were made, its UID, its row id and its keys ready to compare (base subject
casemapped, first addresses, display forms, sent date, ids): reading it back costs no
parsing, only array reads. Every field is immutable for a message (RFC 5256/5957 keys
come from its header, RFC822.SIZE from its bytes, neither ever changes; ARRIVAL, the
internal date, is taken from the message row and not kept here), so a chunk never
needs invalidating: entries of expunged messages are left out when the chunk is next
written, and a reader takes an entry only for the row it names.

    payload = "CMSK" || u8(1) || u32(n) || u32(n_strings) || u32(n_refs)
              || u32(len(text)) || text                     UTF-8 of every string joined
              || u32 offsets[n_strings + 1]                 code point offsets into text
              || u32 uid[n] || u64 row[n] || u64 size[n] || f64 date[n] (NaN: none)
              || u8 reply[n] || u32 string[7][n]            subject, from, to, cc,
                                                            display from, display to,
                                                            message id (0xffffffff: none)
              || u32 ref_count[n] || u32 refs[n_refs]       string numbers, oldest first

Numbers little-endian. Strings are shared across the chunk (a sender, a subject or a
thread's ids repeat), so the chunk is small before zlib, and the keys read back share
one object per distinct string, as the in-memory table wants them.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Final

from cryptmail.imap.message._sortkeys import SortKeys

__all__ = ["SortEntry", "decode_sort_record", "encode_sort_record"]

_MAGIC: Final = b"CMSK"
_VERSION: Final = 1
_HEAD: Final = struct.Struct("<4sBIIII")
_NONE: Final = 0xFFFFFFFF
_SWAP: Final = sys.byteorder != "little"

SortEntry = tuple[int, int, SortKeys]
"""(uid, row id, keys) of one message."""


def _packed(values: array[int] | array[float]) -> bytes:
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def encode_sort_record(entries: Sequence[SortEntry]) -> bytes:
    """The payload for ``entries`` (their ``arrival`` is not kept)."""
    numbers: dict[str, int] = {}

    def number(text: str | None) -> int:
        if text is None:
            return _NONE
        found = numbers.get(text)
        if found is None:
            found = numbers[text] = len(numbers)
        return found

    uids, rows, sizes = array("I"), array("Q"), array("Q")
    dates = array("d")
    reply = bytearray()
    columns = [array("I") for _ in range(7)]
    ref_counts, refs = array("I"), array("I")
    for uid, row_id, keys in entries:
        uids.append(uid)
        rows.append(row_id)
        sizes.append(keys.size)
        dates.append(math.nan if keys.date is None else keys.date)
        reply.append(1 if keys.reply else 0)
        for column, value in zip(
            columns,
            (keys.subject, keys.from_, keys.to, keys.cc, keys.display_from, keys.display_to,
             keys.message_id),
            strict=True,
        ):  # fmt: skip
            column.append(number(value))
        ref_counts.append(len(keys.references))
        refs.extend(number(ref) for ref in keys.references)
    strings = list(numbers)
    text = "".join(strings).encode("utf-8", "surrogatepass")
    offsets = array("I", [0])
    total = 0
    for value in strings:
        total += len(value)
        offsets.append(total)
    parts = [
        _HEAD.pack(_MAGIC, _VERSION, len(uids), len(strings), len(refs), len(text)),
        text,
        _packed(offsets),
        _packed(uids),
        _packed(rows),
        _packed(sizes),
        _packed(dates),
        bytes(reply),
        *(_packed(column) for column in columns),
        _packed(ref_counts),
        _packed(refs),
    ]
    return b"".join(parts)


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self._data = memoryview(data)
        self._pos = pos

    def take(self, size: int) -> memoryview:
        end = self._pos + size
        if end > len(self._data):
            raise ValueError("sort record is truncated")
        piece = self._data[self._pos : end]
        self._pos = end
        return piece

    def numbers(self, typecode: str, count: int) -> array[int]:
        out = array(typecode)
        out.frombytes(self.take(out.itemsize * count))
        if _SWAP:
            out.byteswap()
        return out

    def floats(self, count: int) -> array[float]:
        out = array("d")
        out.frombytes(self.take(out.itemsize * count))
        if _SWAP:
            out.byteswap()
        return out

    def done(self) -> bool:
        return self._pos == len(self._data)


def decode_sort_record(
    data: bytes, wanted: Mapping[int, tuple[int, float]] | None = None
) -> list[SortEntry]:
    """The entries of a payload; ValueError when it is not one this version writes (the
    caller then makes those keys again). With ``wanted`` ({uid: (row id, arrival)}),
    only the entries of those UIDs whose row id matches, ``arrival`` set; else every
    entry, ``arrival`` 0."""
    if len(data) < _HEAD.size:
        raise ValueError("sort record is truncated")
    magic, version, count, n_strings, n_refs, text_size = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError("not a sort record of this version")
    read = _Reader(data, _HEAD.size)
    text = bytes(read.take(text_size)).decode("utf-8", "surrogatepass")
    offsets = read.numbers("I", n_strings + 1)
    if offsets[0] != 0 or offsets[-1] != len(text):
        raise ValueError("sort record strings do not add up")
    intern = sys.intern
    strings = [intern(text[a:b]) for a, b in zip(offsets, offsets[1:], strict=False)]
    uids = read.numbers("I", count)
    rows = read.numbers("Q", count)
    sizes = read.numbers("Q", count)
    dates = read.floats(count)
    reply = bytes(read.take(count))
    columns = [read.numbers("I", count) for _ in range(7)]
    ref_counts = read.numbers("I", count)
    refs = read.numbers("I", n_refs)
    if not read.done() or sum(ref_counts) != n_refs:
        raise ValueError("sort record has a bad length")
    try:
        message_ids = [None if n == _NONE else strings[n] for n in columns[6]]
        ref_strings = [strings[n] for n in refs]
        subjects, froms, tos, ccs, display_froms, display_tos = (
            [strings[n] for n in column] for column in columns[:6]
        )
    except IndexError as exc:
        raise ValueError("sort record names a string it does not hold") from exc
    out: list[SortEntry] = []
    start = 0
    arrival = 0.0
    for i in range(count):
        end = start + ref_counts[i]
        if wanted is not None:
            found = wanted.get(uids[i])
            if found is None or found[0] != rows[i]:
                start = end
                continue
            arrival = found[1]
        date = dates[i]
        out.append(
            (
                uids[i],
                rows[i],
                SortKeys(
                    None if date != date else date,  # NaN: no usable Date:
                    subjects[i], reply[i] == 1, froms[i], tos[i], ccs[i], display_froms[i],
                    display_tos[i], message_ids[i], tuple(ref_strings[start:end]), sizes[i],
                    arrival,
                ),
            )
        )  # fmt: skip
        start = end
    return out
