"""One pass over a message gives everything FETCH needs, ready to cache.

:class:`MessageAnalyzer` is fed the message in chunks (as it is decrypted, say) and
returns a :class:`MessageAnalysis`: the part map plus ENVELOPE, BODY and BODYSTRUCTURE
already in IMAP syntax. ``to_bytes`` / ``from_bytes`` give the cacheable form::

    magic "CMMA" | version (1 byte, 1) | four fields, each a varint length + bytes:
        part map (see _partmap) | ENVELOPE | BODY | BODYSTRUCTURE
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptmail.imap._bodystructure import write_body, write_bodystructure, write_envelope
from cryptmail.imap._mime import MimeParser
from cryptmail.imap._partmap import PartMap, _read_varint, _varint, part_map_from_tree

__all__ = ["MessageAnalysis", "MessageAnalyzer", "analyze_message"]

MAGIC: Final = b"CMMA"
VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class MessageAnalysis:
    """Cacheable facts about one message; structures are the bytes FETCH sends."""

    part_map: PartMap
    envelope: bytes
    body: bytes
    bodystructure: bytes

    @property
    def rfc822_size(self) -> int:
        return self.part_map.vsize

    def to_bytes(self) -> bytes:
        out = bytearray(MAGIC)
        out.append(VERSION)
        for field in (self.part_map.to_bytes(), self.envelope, self.body, self.bodystructure):
            _varint(out, len(field))
            out += field
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageAnalysis:
        """Raises ValueError on anything but :meth:`to_bytes` output."""
        if data[:4] != MAGIC or len(data) < 5 or data[4] != VERSION:
            raise ValueError("not a version 1 message analysis")
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
        return cls(PartMap.from_bytes(fields[0]), fields[1], fields[2], fields[3])


class MessageAnalyzer:
    """Streaming front end: ``feed`` chunks of any size, then ``finish``."""

    def __init__(self) -> None:
        self._parser = MimeParser()

    def feed(self, chunk: bytes) -> None:
        self._parser.feed(chunk)

    def finish(self) -> MessageAnalysis:
        root = self._parser.finish()
        envelope = root.envelope.envelope if root.envelope is not None else None
        return MessageAnalysis(
            part_map=part_map_from_tree(root),
            envelope=write_envelope(envelope),
            body=write_body(root),
            bodystructure=write_bodystructure(root),
        )


def analyze_message(message: bytes, chunk_size: int = 1 << 16) -> MessageAnalysis:
    """Analyse a message held in memory."""
    analyzer = MessageAnalyzer()
    view = memoryview(message)
    for start in range(0, len(message), chunk_size):
        analyzer.feed(bytes(view[start : start + chunk_size]))
    return analyzer.finish()
