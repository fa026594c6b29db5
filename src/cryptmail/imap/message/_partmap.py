"""The part map: where each MIME part's header and body lie inside a message.

Computed once when a message is first seen (:func:`part_map_from_tree`), stored
(encrypted, by the store) as :meth:`PartMap.to_bytes`, and then used to serve any
``BODY[section]<partial>`` by byte range without parsing the message again:
:meth:`PartMap.plan` says which stored bytes to read and how big the answer is, and
:class:`VirtualStream` turns those bytes into what IMAP sends (bare LF as CRLF, NUL as
0x80, the partial window applied) chunk by chunk.

Serialized form, version 2 (integers unsigned 32-bit little-endian, so that one
``struct`` call decodes a whole map: every FETCH of a message not in memory loads one)::

    magic "CMPM" | version (1 byte, 2) | part count | per part, in pre-order:
        flags | children | header offset | header size | body size
        | header virtual size | body virtual size | body lines

Version 1, the same fields as unsigned LEB128 varints, is still read (caches written
before version 2) and still written when a value does not fit 32 bits.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Final, NamedTuple

from cryptmail.imap.message._mime_part import (
    FLAG_GLOBAL,
    FLAG_MULTIPART,
    FLAG_RFC822,
    FLAG_TEXT,
    MessagePart,
)
from cryptmail.imap.wire._requests import Section

__all__ = ["PartEntry", "PartMap", "SectionPlan", "VirtualStream", "part_map_from_tree"]

MAGIC: Final = b"CMPM"
VERSION: Final = 2
_VARINT_VERSION: Final = 1
_FIXED_LIMIT: Final = 1 << 32
_FIELDS: Final = 8
_MAX_PARTS: Final = 1 << 20
FILTER_LOOKAHEAD: Final = 64 * 1024
"""How far past a part's header HEADER.FIELDS may read looking for the empty line."""


class PartEntry(NamedTuple):
    """One MIME part: physical offsets and sizes, virtual sizes, flags, child count.

    A named tuple, not a dataclass: every FETCH of a message that is not in memory
    builds its entries from the cache, and a tuple is several times cheaper to build.
    """

    flags: int
    children: int
    header_offset: int
    header_size: int
    body_size: int
    header_vsize: int
    body_vsize: int
    body_lines: int

    @property
    def body_offset(self) -> int:
        return self.header_offset + self.header_size

    @property
    def is_multipart(self) -> bool:
        return bool(self.flags & FLAG_MULTIPART)

    @property
    def is_rfc822(self) -> bool:
        return bool(self.flags & FLAG_RFC822)

    def holds_message(self, rev2: bool) -> bool:
        """Whether section numbers go into this part's message: message/rfc822 always,
        message/global in IMAP4rev2 only (RFC 9051 6.4.5; rev1 and Dovecot 2.3 see a
        leaf)."""
        return bool(self.flags & FLAG_RFC822) and (rev2 or not self.flags & FLAG_GLOBAL)


class SectionPlan(NamedTuple):
    """How to answer one BODY[section]<partial>.

    Read ``length`` stored bytes from ``offset`` and pass them through
    ``VirtualStream(plan)``; exactly ``size`` bytes come out. ``found`` False means
    the part does not exist: Dovecot then sends an empty string (``{0}``), and so do
    we. When ``header_fields`` is set (HEADER.FIELDS[.NOT]) the output size is only
    known after :func:`~cryptmail.imap.message._sections.filter_header` ran over the header
    bytes, so ``size`` is None.
    """

    found: bool
    offset: int = 0
    length: int = 0
    vsize: int = 0
    size: int | None = 0
    skip: int = 0
    header_fields: tuple[str, ...] | None = None
    exclude: bool = False
    cached_header_style: bool = False

    @property
    def needs_conversion(self) -> bool:
        """False when the stored bytes already use CRLF everywhere (plain seek works)."""
        return self.vsize != self.length


def _varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("part map values are never negative")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varints(data: bytes, pos: int) -> list[int]:
    """Every varint from `pos` to the end of `data`, in one pass."""
    values: list[int] = []
    append = values.append
    value = shift = 0
    for byte in data[pos:]:
        if byte & 0x80:
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift > 63:
                raise ValueError("part map holds an oversized number")
        else:
            append(value | byte << shift)
            value = shift = 0
    if shift:
        raise ValueError("part map is truncated")
    return values


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("part map is truncated or holds an oversized number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


class PartMap:
    """All parts of one message in pre-order (index 0 is the message itself).

    Read from the cache, the numbers are decoded and checked at once but the entries are
    built on first use: a whole-message FETCH needs only the sizes of part 0.
    """

    __slots__ = ("_parts", "_values", "size", "vsize")

    size: int
    """Stored (physical) size of the message."""
    vsize: int
    """RFC822.SIZE: the size with every line ending counted as CRLF."""

    def __init__(self, parts: tuple[PartEntry, ...]) -> None:
        self._parts: tuple[PartEntry, ...] | None = parts
        self._values: Sequence[int] = ()
        root = parts[0]
        self.size = root.header_size + root.body_size
        self.vsize = root.header_vsize + root.body_vsize

    @property
    def parts(self) -> tuple[PartEntry, ...]:
        if self._parts is None:
            values, make = self._values, PartEntry._make
            self._parts = tuple(
                make(values[i : i + _FIELDS]) for i in range(0, len(values), _FIELDS)
            )
        return self._parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartMap) and self.parts == other.parts

    __hash__ = None  # type: ignore[assignment]  # mutable cache inside: not hashable

    def __repr__(self) -> str:
        return f"PartMap({len(self.parts)} parts, vsize={self.vsize})"

    # -- serialisation -----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        values = [value for part in self.parts for value in part]
        if min(values, default=0) < 0:
            raise ValueError("part map values are never negative")
        if max(values, default=0) >= _FIXED_LIMIT:
            return self._to_varint_bytes(values)
        head = MAGIC + bytes([VERSION]) + struct.pack("<I", len(self.parts))
        return head + struct.pack(f"<{len(values)}I", *values)

    def _to_varint_bytes(self, values: list[int]) -> bytes:
        out = bytearray(MAGIC)
        out.append(_VARINT_VERSION)
        _varint(out, len(self.parts))
        for value in values:
            _varint(out, value)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> PartMap:
        """Parse :meth:`to_bytes` output (either version), rejecting anything inconsistent.

        Raises:
            ValueError: wrong magic or version, truncation, trailing bytes, or a
                tree shape that does not add up.
        """
        if data[:4] != MAGIC or len(data) < 6:
            raise ValueError("not a part map")
        values: Sequence[int]
        if data[4] == VERSION:
            if len(data) < 9:
                raise ValueError("part map is truncated")
            (count,) = struct.unpack_from("<I", data, 5)
            if not 1 <= count <= _MAX_PARTS or len(data) != 9 + 4 * _FIELDS * count:
                raise ValueError("part map is truncated, too long or has an impossible count")
            values = struct.unpack_from(f"<{_FIELDS * count}I", data, 9)
        elif data[4] == _VARINT_VERSION:
            decoded = _read_varints(data, 5)
            count = decoded[0]
            if not 1 <= count <= _MAX_PARTS:
                raise ValueError("part map has an impossible part count")
            if len(decoded) != 1 + _FIELDS * count:
                raise ValueError("part map is truncated or has trailing bytes")
            values = decoded[1:]
        else:
            raise ValueError(f"part map version {data[4]} is unknown")
        if _subtree_end(values[1::_FIELDS], 0) != count:
            raise ValueError("part map child counts do not form one tree")
        result = cls.__new__(cls)
        result._parts, result._values = None, values
        # Fields of part 0: values[0:8] = flags, children, header offset, header size,
        # body size, header vsize, body vsize, body lines.
        result.size = values[3] + values[4]
        result.vsize = values[5] + values[6]
        return result

    # -- navigation ---------------------------------------------------------------------

    def children(self, index: int) -> Iterator[int]:
        """Indexes of the direct children of part ``index``."""
        counts = [part.children for part in self.parts]
        child = index + 1
        for _ in range(counts[index]):
            yield child
            child = _subtree_end(counts, child)

    def find(self, path: tuple[int, ...], rev2: bool = False) -> int | None:
        """The part a section number names, with Dovecot's rules, or None.

        A non-multipart part has only part 1 (itself); a message/rfc822 part (and in
        ``rev2`` a message/global one) is entered when the path goes on.
        """
        index = 0
        for depth, number in enumerate(path):
            part = self.parts[index]
            more = depth + 1 < len(path)
            if part.is_multipart:
                found = None
                for position, child in enumerate(self.children(index), start=1):
                    if position == number:
                        found = child
                        break
                if found is None:
                    return None
                index = found
            elif number != 1 or (more and not part.holds_message(rev2)):
                return None
            if more and self.parts[index].holds_message(rev2):
                if not self.parts[index].children:
                    return None
                index += 1
        return index

    # -- sections -----------------------------------------------------------------------

    def plan(
        self, section: Section, partial: tuple[int, int] | None = None, *, rev2: bool = False
    ) -> SectionPlan:
        """Plan the answer to ``BODY[section]<partial>`` (``rev2``: for an IMAP4rev2
        session, which enters message/global parts)."""
        if not section.part and section.text == "":  # the whole message: part 0's sizes
            skip, size = window(self.vsize, partial)
            return SectionPlan(True, 0, self.size, self.vsize, size, skip)
        if section.part:
            found = self.find(section.part, rev2)
            if found is None:
                return SectionPlan(found=False)
            index = found
            if section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"):
                part = self.parts[index]
                if not part.holds_message(rev2) or not part.children:
                    return SectionPlan(found=False)
                index += 1
        else:
            index = 0
        part = self.parts[index]
        text = section.text
        if text in ("", "TEXT"):
            offset, length, vsize = part.body_offset, part.body_size, part.body_vsize
        else:  # HEADER, HEADER.FIELDS[.NOT], MIME
            offset, length, vsize = part.header_offset, part.header_size, part.header_vsize
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            if section.part:
                # Dovecot's filter reads on to the first empty line even where a
                # boundary cut the part's header short; follow it a bounded way.
                length = min(length + FILTER_LOOKAHEAD, self.size - offset)
            return SectionPlan(
                found=True, offset=offset, length=length, vsize=vsize, size=None,
                skip=partial[0] if partial else 0, header_fields=section.fields,
                exclude=text == "HEADER.FIELDS.NOT",
                cached_header_style=text == "HEADER.FIELDS" and not section.part,
            )  # fmt: skip
        skip, size = window(vsize, partial)
        return SectionPlan(True, offset, length, vsize, size, skip)

    def __iter__(self) -> Iterator[PartEntry]:
        return iter(self.parts)


def _subtree_end(children: Sequence[int], index: int) -> int:
    """Index just past the subtree rooted at ``index`` (iterative, no recursion), given
    each part's child count."""
    pending = 1
    while pending:
        if index >= len(children):
            raise ValueError("part map child counts run past the end")
        pending += children[index] - 1
        index += 1
    return index


def window(vsize: int, partial: tuple[int, int] | None) -> tuple[int, int]:
    """(bytes to skip, bytes to send) for a partial fetch of ``vsize`` bytes."""
    if partial is None:
        return 0, vsize
    start, length = partial
    if start >= vsize:
        return start, 0
    return start, min(length, vsize - start)


def part_map_from_tree(root: MessagePart) -> PartMap:
    """Flatten a parsed tree (pre-order, iteratively: nesting depth is unbounded)."""
    parts: list[PartEntry] = []
    stack = [root]
    while stack:
        part = stack.pop()
        parts.append(
            PartEntry(
                flags=part.flags & (FLAG_MULTIPART | FLAG_RFC822 | FLAG_TEXT | FLAG_GLOBAL),
                children=len(part.children),
                header_offset=part.offset,
                header_size=part.header.physical,
                body_size=part.body.physical,
                header_vsize=part.header.virtual,
                body_vsize=part.body.virtual,
                body_lines=part.body.lines,
            )
        )
        stack.extend(reversed(part.children))
    return PartMap(tuple(parts))


class VirtualStream:
    """Stored bytes in, IMAP bytes out: LF becomes CRLF, NUL becomes 0x80, then the
    partial window (skip, size) is cut. Feed chunks in order; memory stays O(chunk).
    """

    __slots__ = ("_last_cr", "_remaining", "_skip")

    def __init__(self, skip: int = 0, size: int | None = None) -> None:
        self._skip = skip
        self._remaining = -1 if size is None else size
        self._last_cr = False

    @classmethod
    def for_plan(cls, plan: SectionPlan) -> VirtualStream:
        return cls(plan.skip, plan.size)

    def feed(self, chunk: bytes) -> bytes:
        if not chunk or self._remaining == 0:
            return b""
        if b"\0" in chunk:
            chunk = chunk.replace(b"\0", b"\x80")
        if self._last_cr and chunk[0] == 0x0A:
            converted = b"\n" + chunk[1:].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        else:
            converted = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self._last_cr = chunk[-1] == 0x0D
        if self._skip:
            if self._skip >= len(converted):
                self._skip -= len(converted)
                return b""
            converted = converted[self._skip :]
            self._skip = 0
        if self._remaining >= 0:
            converted = converted[: self._remaining]
            self._remaining -= len(converted)
        return converted
