"""One message's :class:`SortKeys` as bytes, ready: what a sort entry from delivery
holds, so a session's first SORT decodes keys instead of making them.

    keys   = f64 date (NaN: none) || u8 flags || u16 n_refs || u32 length[7 + n_refs]
             || text                       UTF-8 of the strings joined
    flags  = 1: reply, 2: has a Message-ID
    length = code points of subject, from, to, cc, display from, display to,
             message id ("" without one), then each reference, oldest first

Little-endian. ``size`` and ``arrival`` are not kept (the entry and the message row
hold them). Decoding is a few slices, no parsing: about a microsecond a message.

:class:`ReadyBlock` holds many messages' bytes and decodes them only as far as asked:
a first SORT by one criterion reads one field of each (the date: one ``unpack``), and
only what needs whole keys (THREAD, several criteria, the sort key record's write)
decodes them all. The whole decode was a third of a first SORT of 10,000 delivered
messages.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from cryptmail.store.sortkeys._keys import SortKeys

__all__ = ["ReadyBlock", "decode_ready_keys", "encode_ready_keys"]

_HEAD: Final = struct.Struct("<dBH")
_REPLY: Final = 1
_HAS_ID: Final = 2
_STRINGS: Final = 7
_MAX_REFS: Final = 0xFFFF


def encode_ready_keys(keys: SortKeys) -> bytes:
    """The bytes of ``keys`` (their ``size`` and ``arrival`` left out)."""
    refs = keys.references[-_MAX_REFS:]
    strings = (
        keys.subject, keys.from_, keys.to, keys.cc, keys.display_from, keys.display_to,
        keys.message_id or "", *refs,
    )  # fmt: skip
    flags = (_REPLY if keys.reply else 0) | (_HAS_ID if keys.message_id is not None else 0)
    date = math.nan if keys.date is None else keys.date
    lengths = struct.pack(f"<{len(strings)}I", *(len(s) for s in strings))
    text = "".join(strings).encode("utf-8", "surrogatepass")
    return _HEAD.pack(date, flags, len(refs)) + lengths + text


def decode_ready_keys(data: bytes, size: int = 0, arrival: float = 0.0) -> SortKeys:
    """The keys of :func:`encode_ready_keys`'s bytes, strings interned, ``size`` and
    ``arrival`` set; ValueError when ``data`` is not such bytes."""
    try:
        date, flags, n_refs = _HEAD.unpack_from(data)
        count = _STRINGS + n_refs
        lengths = struct.unpack_from(f"<{count}I", data, _HEAD.size)
        text = data[_HEAD.size + 4 * count :].decode("utf-8", "surrogatepass")
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"ready sort keys unreadable: {exc}") from None
    if sum(lengths) != len(text) or flags & ~(_REPLY | _HAS_ID):
        raise ValueError("ready sort keys have a bad length or flags")
    intern = sys.intern
    strings = []
    pos = 0
    for length in lengths:
        strings.append(intern(text[pos : pos + length]))
        pos += length
    return SortKeys(
        None if date != date else date,  # NaN: no usable Date:
        strings[0], bool(flags & _REPLY), strings[1], strings[2], strings[3], strings[4],
        strings[5], strings[6] if flags & _HAS_ID else None, tuple(strings[_STRINGS:]),
        size, arrival,
    )  # fmt: skip


_STRING_FIELDS: Final = ("subject", "from_", "to", "cc", "display_from", "display_to")
"""The string fields a column can be read of, in the order the bytes hold them."""
_EMPTY: Final = SortKeys(None, "", False, "", "", "", "", "", None, ())


@lru_cache(maxsize=64)
def _lengths(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def _string(data: bytes, index: int) -> str:
    """String ``index`` (below _STRINGS) of one message's bytes; "" when they do not
    decode (never expected: they were sealed by delivery, and opened)."""
    try:
        n_refs = _HEAD.unpack_from(data)[2]
        count = _STRINGS + n_refs
        lengths = _lengths(count).unpack_from(data, _HEAD.size)
        text = data[_HEAD.size + 4 * count :].decode("utf-8", "surrogatepass")
    except (struct.error, UnicodeDecodeError):
        return ""
    start = sum(lengths[:index])
    end = start + lengths[index]
    return text[start:end] if end <= len(text) else ""


class ReadyBlock:
    """Ready keys of many messages (``encode_ready_keys`` bytes, each with its UID,
    size and arrival), decoded only as far as asked: the interface of the sort key
    record's block (`imap/message/_sortrecord.py`), so a mailbox's key table holds
    either alike. :attr:`uids` ascending, one entry per UID."""

    __slots__ = ("_arrivals", "_data", "_made", "_sizes", "uids")

    def __init__(self, entries: Iterable[tuple[int, int, float, bytes]]) -> None:
        """``entries``: (uid, size, arrival, bytes); a UID given twice keeps its first."""
        taken: dict[int, tuple[int, float, bytes]] = {}
        for uid, size, arrival, data in entries:
            taken.setdefault(uid, (size, arrival, data))
        self.uids: list[int] = sorted(taken)
        ordered = [taken[uid] for uid in self.uids]
        self._sizes = [size for size, _arrival, _data in ordered]
        self._arrivals = [arrival for _size, arrival, _data in ordered]
        self._data = [data for _size, _arrival, data in ordered]
        self._made: dict[str, list[object]] = {}

    def __len__(self) -> int:
        return len(self.uids)

    def __repr__(self) -> str:
        return f"ReadyBlock({len(self.uids)} messages)"

    def column(self, field: str) -> list[object]:
        """One :class:`SortKeys` field of every entry, in :attr:`uids` order; "sent" is
        the DATE criterion's key (the date, else the arrival)."""
        made = self._made.get(field)
        if made is not None:
            return made
        if field in _STRING_FIELDS:
            index = _STRING_FIELDS.index(field)
            intern = sys.intern
            made = [intern(_string(data, index)) for data in self._data]
        elif field == "size":
            made = list(self._sizes)
        elif field == "arrival":
            made = list(self._arrivals)
        elif field == "sent":
            made = []
            for data, arrival in zip(self._data, self._arrivals, strict=True):
                try:
                    date = _HEAD.unpack_from(data)[0]
                except struct.error:
                    date = math.nan
                made.append(arrival if date != date else date)  # NaN: no usable Date:
        else:
            raise KeyError(field)
        self._made[field] = made
        return made

    def keys(self) -> list[tuple[int, SortKeys]]:
        """(uid, whole keys) of every entry (CPU work for a worker thread: a few
        microseconds an entry). Bytes that do not decode give empty keys."""
        out: list[tuple[int, SortKeys]] = []
        for uid, size, arrival, data in zip(
            self.uids, self._sizes, self._arrivals, self._data, strict=True
        ):
            try:
                keys = decode_ready_keys(data, size, arrival)
            except ValueError:
                keys = _EMPTY._replace(size=size, arrival=arrival)
            out.append((uid, keys))
        return out
