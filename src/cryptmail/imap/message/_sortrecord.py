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

import itertools
import math
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Final, cast

from cryptmail.imap.message._sortkeys import SortKeys

__all__ = ["SortBlock", "SortEntry", "decode_sort_record", "encode_sort_record"]

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


_STRING_FIELDS: Final = ("subject", "from_", "to", "cc", "display_from", "display_to")
"""Fields stored as string numbers, in column order (the seventh column, message id,
may be none; THREAD reads it through :meth:`SortBlock.keys`)."""


class SortBlock:
    """The entries of one payload a reader takes, decoded only as far as asked.

    Construction checks the whole payload (as :func:`decode_sort_record` does) and
    picks the entries to take, but builds no per-entry object: a SORT by one criterion
    reads one :meth:`column` (the strings of that field only, each made once), and only
    what needs whole keys (THREAD, several criteria) pays for :meth:`keys`. With
    ``wanted`` or ``span`` the entries taken are ascending by UID, one per UID (the
    first; writers keep a payload so), as `_sortorder.block_value` needs; without, every entry in
    payload order.
    """

    __slots__ = (
        "_arrivals", "_columns", "_dates", "_made", "_offsets", "_positions", "_refs",
        "_ref_counts", "_reply", "_rows", "_sizes", "_strings", "_text", "uids",
    )  # fmt: skip

    def __init__(
        self,
        data: bytes,
        wanted: Mapping[int, tuple[int, float]] | None = None,
        span: range | None = None,
    ) -> None:
        """ValueError when ``data`` is not a payload this version writes. With
        ``wanted`` ({uid: (row id, arrival)}), only the entries of those UIDs whose row
        id matches are taken, ``arrival`` set; else every entry, ``arrival`` 0. With
        ``span``, only entries whose UID is in it."""
        if len(data) < _HEAD.size:
            raise ValueError("sort record is truncated")
        magic, version, count, n_strings, n_refs, text_size = _HEAD.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a sort record of this version")
        read = _Reader(data, _HEAD.size)
        self._text = bytes(read.take(text_size)).decode("utf-8", "surrogatepass")
        self._offsets = read.numbers("I", n_strings + 1)
        if self._offsets[0] != 0 or self._offsets[-1] != len(self._text):
            raise ValueError("sort record strings do not add up")
        uids = read.numbers("I", count)
        rows = read.numbers("Q", count)
        self._sizes = read.numbers("Q", count)
        self._dates = read.floats(count)
        self._reply = bytes(read.take(count))
        self._columns = [read.numbers("I", count) for _ in range(7)]
        self._ref_counts = read.numbers("I", count)
        self._refs = read.numbers("I", n_refs)
        if not read.done() or sum(self._ref_counts) != n_refs:
            raise ValueError("sort record has a bad length")
        # Every string number checked now (in C, by max), so nothing read later fails.
        highest = max(
            *(max(column, default=-1) for column in self._columns[:6]),
            max(self._refs, default=-1),
            max((n for n in self._columns[6] if n != _NONE), default=-1),
        )
        if highest >= n_strings:
            raise ValueError("sort record names a string it does not hold")
        self._strings: list[str | None] = [None] * n_strings
        self._made: dict[str, list[object]] = {}
        self._rows = rows
        if wanted is None and span is None:
            self._positions: range | list[int] = range(count)
            self.uids: list[int] = uids.tolist()
            self._arrivals: list[float] | None = None
            return
        if wanted is not None:
            # In bulk (one C-level map): the usual chunk has every entry current.
            found = list(map(wanted.get, uids))
            if None not in found:
                current = cast(list[tuple[int, float]], found)
                if (
                    [row for row, _arrival in current] == rows.tolist()
                    and (span is None or not count or (uids[0] in span and uids[-1] in span))
                    and all(a < b for a, b in zip(uids, uids[1:], strict=False))
                ):
                    self._positions = range(count)
                    self.uids = uids.tolist()
                    self._arrivals = [arrival for _row, arrival in current]
                    return
        get = (wanted or {}).get
        taken: dict[int, tuple[int, float]] = {}  # uid: (position, arrival); first kept
        for i, (uid, row) in enumerate(zip(uids, rows, strict=True)):
            if uid in taken or (span is not None and uid not in span):
                continue
            arrival = 0.0
            if wanted is not None:
                entry = get(uid)
                if entry is None or entry[0] != row:
                    continue
                arrival = entry[1]
            taken[uid] = (i, arrival)
        self.uids = sorted(taken)  # ascending, as `block_value` looks them up
        self._positions = [taken[uid][0] for uid in self.uids]
        self._arrivals = [taken[uid][1] for uid in self.uids] if wanted is not None else None

    def __len__(self) -> int:
        return len(self.uids)

    def _string(self, number: int) -> str:
        found = self._strings[number]
        if found is None:
            offsets = self._offsets
            found = self._strings[number] = sys.intern(
                self._text[offsets[number] : offsets[number + 1]]
            )
        return found

    def arrivals(self) -> list[float]:
        """The ``arrival`` of every entry taken (0 without ``wanted``)."""
        return self._arrivals if self._arrivals is not None else [0.0] * len(self.uids)

    def column(self, field: str) -> list[object]:
        """One :class:`SortKeys` field of every entry taken, in :attr:`uids` order;
        "sent" is the DATE criterion's key (the date, else the arrival)."""
        made = self._made.get(field)
        if made is not None:
            return made
        positions = self._positions
        if field in _STRING_FIELDS:
            numbers = self._columns[_STRING_FIELDS.index(field)]
            string = self._string
            table = {n: string(n) for n in {numbers[i] for i in positions}}
            made = [table[numbers[i]] for i in positions]
        elif field == "size":
            made = [self._sizes[i] for i in positions]
        elif field == "arrival":
            made = list(self.arrivals())
        elif field == "sent":
            dates = self._dates
            made = [
                arrival if date != date else date  # NaN: no usable Date:
                for date, arrival in zip(
                    (dates[i] for i in positions), self.arrivals(), strict=True
                )
            ]
        else:
            raise KeyError(field)
        self._made[field] = made
        return made

    def _all_strings(self) -> list[str]:
        strings = self._strings
        if None in strings:
            text, offsets, intern = self._text, self._offsets, sys.intern
            strings[:] = [
                intern(text[offsets[n] : offsets[n + 1]]) if value is None else value
                for n, value in enumerate(strings)
            ]
        return strings  # type: ignore[return-value]  # no None left

    def keys(self) -> list[tuple[int, SortKeys]]:
        """(uid, whole keys) of every entry taken (CPU work for a worker thread: about
        1 us an entry, most of it the key tuples)."""
        strings = self._all_strings()
        positions, columns, refs = self._positions, self._columns, self._refs
        subjects, froms, tos, ccs, display_froms, display_tos = (
            [strings[column[i]] for i in positions] for column in columns[:6]
        )
        message_ids = [None if (n := columns[6][i]) == _NONE else strings[n] for i in positions]
        starts = [0, *itertools.accumulate(self._ref_counts)]
        references = [
            tuple([strings[n] for n in refs[starts[i] : starts[i + 1]]]) for i in positions
        ]
        dates, reply, sizes = self._dates, self._reply, self._sizes
        return [
            (
                uid,
                SortKeys(
                    None if (date := dates[i]) != date else date,  # NaN: no usable Date:
                    subjects[k], reply[i] == 1, froms[k], tos[k], ccs[k], display_froms[k],
                    display_tos[k], message_ids[k], references[k], sizes[i], arrival,
                ),
            )
            for k, (i, uid, arrival) in enumerate(
                zip(positions, self.uids, self.arrivals(), strict=True)
            )
        ]  # fmt: skip

    def entries(self) -> list[SortEntry]:
        """(uid, row id, whole keys) of every entry taken."""
        rows = self._rows
        return [
            (uid, rows[i], keys)
            for i, (uid, keys) in zip(self._positions, self.keys(), strict=True)
        ]


def decode_sort_record(
    data: bytes, wanted: Mapping[int, tuple[int, float]] | None = None
) -> list[SortEntry]:
    """The entries of a payload; ValueError when it is not one this version writes (the
    caller then makes those keys again). With ``wanted`` ({uid: (row id, arrival)}),
    only the entries of those UIDs whose row id matches, ``arrival`` set; else every
    entry, ``arrival`` 0."""
    return SortBlock(data, wanted).entries()
