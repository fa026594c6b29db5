"""One pass over a message gives everything FETCH needs, ready to cache.

:class:`MessageAnalyzer` is fed the message in chunks (as it is decrypted, say) and
returns a :class:`MessageAnalysis`: the part map plus ENVELOPE, BODY and BODYSTRUCTURE
already in IMAP syntax. ``to_bytes`` / ``from_bytes`` give the cacheable form::

    magic "CMMA" | version (1 byte, 5) | presence (1 byte) | eight field lengths
        (u32 little-endian) | part map (see _partmap) | ENVELOPE | BODY | BODYSTRUCTURE
        | sort fields | preview (UTF-8) | rev2 BODY | rev2 BODYSTRUCTURE

The sort fields are the raw header fields SORT and THREAD read (``_sortkeys``); the
preview is RFC 8970's PREVIEW text (``_preview``); presence bit 0 says the sort fields
are there, bit 1 the preview, bit 2 the rev2 forms (given only when they differ: a
message/global part, RFC 9051). A missing preview is made at the next FETCH PREVIEW.

Older versions are still read: version 4 (six fields), 3 (no preview), 2 (no sort fields
either: the reader fills them in from the message's header), 1 (lengths as varints).
They parsed message/global as a leaf, so their rev2 forms are wrong where such a part
is in the message: those are refused (ValueError, as for a damaged cache), so the
message is analysed again at its next FETCH, lazily. Without message/global, the old
analysis is right for both forms and is kept.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from cryptmail.imap.message._bodystructure import (
    has_global,
    write_body,
    write_bodystructure,
    write_envelope,
)
from cryptmail.imap.message._mime import MimeParser
from cryptmail.imap.message._partmap import PartMap, _read_varint, part_map_from_tree
from cryptmail.imap.message._preview import preview_from_bytes
from cryptmail.imap.message._sortkeys import encode_sort_fields

__all__ = ["MessageAnalysis", "MessageAnalyzer", "analyze_message"]

MAGIC: Final = b"CMMA"
VERSION: Final = 5
_SIX_FIELDS_VERSION: Final = 4
_FIVE_FIELDS_VERSION: Final = 3
_FOUR_FIELDS_VERSION: Final = 2
_VARINT_VERSION: Final = 1
_LENGTHS: Final = struct.Struct("<B8I")
_SIX_LENGTHS: Final = struct.Struct("<6I")
_FIVE_LENGTHS: Final = struct.Struct("<5I")
_FOUR_LENGTHS: Final = struct.Struct("<4I")


class MessageAnalysis(NamedTuple):
    """Cacheable facts about one message; structures are the bytes FETCH sends.

    A named tuple, as the other per-message values of the FETCH path: a frozen
    dataclass costs about three times as much to build.
    """

    part_map: PartMap
    envelope: bytes
    body: bytes
    bodystructure: bytes
    sort_fields: bytes | None = None
    """``encode_sort_fields`` of the message's header; None if read from an older cache."""
    preview: str | None = None
    """RFC 8970 PREVIEW text; None when not made yet (a big message, an older cache)."""
    rev2_body: bytes | None = None
    """BODY for an IMAP4rev2 session; None when the same as ``body``."""
    rev2_bodystructure: bytes | None = None
    """BODYSTRUCTURE for an IMAP4rev2 session; None when the same as ``bodystructure``."""

    def body_for(self, rev2: bool) -> bytes:
        """BODY as a session of that protocol revision reads it."""
        return self.rev2_body if rev2 and self.rev2_body is not None else self.body

    def bodystructure_for(self, rev2: bool) -> bytes:
        """BODYSTRUCTURE as a session of that protocol revision reads it."""
        if rev2 and self.rev2_bodystructure is not None:
            return self.rev2_bodystructure
        return self.bodystructure

    @property
    def rfc822_size(self) -> int:
        return self.part_map.vsize

    def to_bytes(self) -> bytes:
        presence = (
            (self.sort_fields is not None)
            | (self.preview is not None) << 1
            | (self.rev2_body is not None) << 2
        )
        fields = (
            self.part_map.to_bytes(), self.envelope, self.body, self.bodystructure,
            self.sort_fields or b"", (self.preview or "").encode("utf-8"),
            self.rev2_body or b"", self.rev2_bodystructure or b"",
        )  # fmt: skip
        head = MAGIC + bytes([VERSION]) + _LENGTHS.pack(presence, *map(len, fields))
        return head + b"".join(fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageAnalysis:
        """Raises ValueError on anything but :meth:`to_bytes` output (any version), and
        on an older version's analysis of a message with a message/global part."""
        if data[:4] != MAGIC or len(data) < 5:
            raise ValueError("not a message analysis")
        if data[4] == VERSION:
            return _from_current(data)
        if data[4] in _LAYOUTS:
            layout = _LAYOUTS[data[4]]
            if len(data) < 5 + layout.size:
                raise ValueError("message analysis is truncated")
            lengths = layout.unpack_from(data, 5)
            pos = 5 + layout.size
            if pos + sum(lengths) != len(data):
                raise ValueError("message analysis is truncated or has trailing bytes")
            fields = []
            for length in lengths:
                fields.append(data[pos : pos + length])
                pos += length
        elif data[4] == _VARINT_VERSION:
            fields = _varint_fields(data)
        else:
            raise ValueError(f"message analysis version {data[4]} is unknown")
        if _GLOBAL_TYPE in fields[3].lower():
            raise ValueError("message analysis predates message/global: analyse again")
        sort_fields = fields[4] if len(fields) > 4 else None
        try:
            preview = fields[5].decode("utf-8") if len(fields) > 5 else None
        except UnicodeDecodeError as exc:
            raise ValueError("message analysis preview is not UTF-8") from exc
        part_map = PartMap.from_bytes(fields[0])
        return cls(part_map, fields[1], fields[2], fields[3], sort_fields, preview)


_GLOBAL_TYPE: Final = b'"message" "global"'


def _from_current(data: bytes) -> MessageAnalysis:
    if len(data) < 5 + _LENGTHS.size:
        raise ValueError("message analysis is truncated")
    presence, *lengths = _LENGTHS.unpack_from(data, 5)
    pos = 5 + _LENGTHS.size
    if pos + sum(lengths) != len(data):
        raise ValueError("message analysis is truncated or has trailing bytes")
    fields = []
    for length in lengths:
        fields.append(data[pos : pos + length])
        pos += length
    try:
        preview = fields[5].decode("utf-8") if presence & 2 else None
    except UnicodeDecodeError as exc:
        raise ValueError("message analysis preview is not UTF-8") from exc
    return MessageAnalysis(
        PartMap.from_bytes(fields[0]), fields[1], fields[2], fields[3],
        fields[4] if presence & 1 else None, preview,
        fields[6] if presence & 4 else None, fields[7] if presence & 4 else None,
    )  # fmt: skip


_LAYOUTS: Final = {
    _SIX_FIELDS_VERSION: _SIX_LENGTHS,
    _FIVE_FIELDS_VERSION: _FIVE_LENGTHS,
    _FOUR_FIELDS_VERSION: _FOUR_LENGTHS,
}


def _varint_fields(data: bytes) -> list[bytes]:
    pos = 5
    fields: list[bytes] = []
    for _ in range(4):
        length, pos = _read_varint(data, pos)
        if pos + length > len(data):
            raise ValueError("message analysis is truncated")
        fields.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise ValueError("message analysis has trailing bytes")
    return fields


class MessageAnalyzer:
    """Streaming front end: ``feed`` chunks of any size, then ``finish``."""

    def __init__(self) -> None:
        self._parser = MimeParser()

    def feed(self, chunk: bytes) -> None:
        self._parser.feed(chunk)

    def finish(self) -> MessageAnalysis:
        root = self._parser.finish()
        envelope = root.envelope.envelope if root.envelope is not None else None
        sort_fields = root.envelope.sort_fields if root.envelope is not None else []
        body, bodystructure = write_body(root), write_bodystructure(root)
        rev2_body = rev2_bodystructure = None
        if has_global(root):
            rev2_body, rev2_bodystructure = write_body(root, True), write_bodystructure(root, True)
        return MessageAnalysis(
            part_map=part_map_from_tree(root),
            envelope=write_envelope(envelope),
            body=body,
            bodystructure=bodystructure,
            sort_fields=encode_sort_fields(sort_fields),
            rev2_body=rev2_body,
            rev2_bodystructure=rev2_bodystructure,
        )


def analyze_message(
    message: bytes, chunk_size: int = 1 << 16, *, with_preview: bool = False
) -> MessageAnalysis:
    """Analyse a message held in memory; ``with_preview`` makes its PREVIEW text too
    (cheap here: the bytes are at hand)."""
    analyzer = MessageAnalyzer()
    view = memoryview(message)
    for start in range(0, len(message), chunk_size):
        analyzer.feed(bytes(view[start : start + chunk_size]))
    analysis = analyzer.finish()
    if with_preview:
        analysis = analysis._replace(preview=preview_from_bytes(message, analysis.part_map))
    return analysis
