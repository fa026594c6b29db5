"""One pass over a message gives everything FETCH needs, ready to cache.

:class:`MessageAnalyzer` is fed the message in chunks (as it is decrypted, say) and
returns a :class:`MessageAnalysis`: the part map plus ENVELOPE, BODY and BODYSTRUCTURE
already in IMAP syntax. ``to_bytes`` / ``from_bytes`` give the cacheable form::

    magic "CMMA" | version (1 byte, 4) | six field lengths (u32 little-endian)
        | part map (see _partmap) | ENVELOPE | BODY | BODYSTRUCTURE | sort fields
        | preview (UTF-8)

The sort fields are the raw header fields SORT and THREAD read (``_sortkeys``); the
preview is RFC 8970's PREVIEW text (``_preview``). Version 3 had no preview (read with
``preview`` None: FETCH PREVIEW makes it and stores the analysis again); version 2 had
the first four fields only, version 1 put each length as a varint before its field;
both are still read, with ``sort_fields`` None too (the reader fills it in from the
message's header and stores the analysis again). An analysis without a preview is
written as version 3, one without sort fields as version 2 (its preview is then not
kept: made again at the next PREVIEW, until SORT has filled the sort fields in).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from cryptmail.imap.message._bodystructure import write_body, write_bodystructure, write_envelope
from cryptmail.imap.message._mime import MimeParser
from cryptmail.imap.message._partmap import PartMap, _read_varint, part_map_from_tree
from cryptmail.imap.message._preview import preview_from_bytes
from cryptmail.imap.message._sortkeys import encode_sort_fields

__all__ = ["MessageAnalysis", "MessageAnalyzer", "analyze_message"]

MAGIC: Final = b"CMMA"
VERSION: Final = 4
_FIVE_FIELDS_VERSION: Final = 3
_FOUR_FIELDS_VERSION: Final = 2
_VARINT_VERSION: Final = 1
_LENGTHS: Final = struct.Struct("<6I")
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

    @property
    def rfc822_size(self) -> int:
        return self.part_map.vsize

    def to_bytes(self) -> bytes:
        fields: tuple[bytes, ...] = (
            self.part_map.to_bytes(), self.envelope, self.body, self.bodystructure,
        )  # fmt: skip
        if self.sort_fields is None:  # what an older cache gave is stored as it was
            lengths = _FOUR_LENGTHS.pack(*(len(field) for field in fields))
            return MAGIC + bytes([_FOUR_FIELDS_VERSION]) + lengths + b"".join(fields)
        fields += (self.sort_fields,)
        if self.preview is None:
            lengths = _FIVE_LENGTHS.pack(*(len(field) for field in fields))
            return MAGIC + bytes([_FIVE_FIELDS_VERSION]) + lengths + b"".join(fields)
        fields += (self.preview.encode("utf-8"),)
        head = MAGIC + bytes([VERSION]) + _LENGTHS.pack(*(len(field) for field in fields))
        return head + b"".join(fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageAnalysis:
        """Raises ValueError on anything but :meth:`to_bytes` output (either version)."""
        if data[:4] != MAGIC or len(data) < 5:
            raise ValueError("not a message analysis")
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
        sort_fields = fields[4] if len(fields) > 4 else None
        try:
            preview = fields[5].decode("utf-8") if len(fields) > 5 else None
        except UnicodeDecodeError as exc:
            raise ValueError("message analysis preview is not UTF-8") from exc
        part_map = PartMap.from_bytes(fields[0])
        return cls(part_map, fields[1], fields[2], fields[3], sort_fields, preview)


_LAYOUTS: Final = {
    VERSION: _LENGTHS, _FIVE_FIELDS_VERSION: _FIVE_LENGTHS, _FOUR_FIELDS_VERSION: _FOUR_LENGTHS,
}  # fmt: skip


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
        return MessageAnalysis(
            part_map=part_map_from_tree(root),
            envelope=write_envelope(envelope),
            body=write_body(root),
            bodystructure=write_bodystructure(root),
            sort_fields=encode_sort_fields(sort_fields),
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
