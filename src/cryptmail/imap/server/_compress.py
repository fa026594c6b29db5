"""COMPRESS=DEFLATE (RFC 4978): raw deflate (no zlib header) both ways.

Output is compressed as it is written and pushed out with a sync flush whenever the
session waits (its drain), so the client can always decode all it has received.

Input is inflated in bounded steps: one step gives at most ``step`` bytes, the size of
an ordinary socket read, so the command reader's limits (line, literal, command,
APPENDLIMIT) see the same pieces as without compression and guard memory the same way.
Each chunk read from the socket may inflate to at most ``max(floor, ratio * size)``
bytes; a chunk that wants more is a compression bomb and ends the connection
(:class:`InflateLimit`), as does input that is not valid deflate data.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["INFLATE_FLOOR", "INFLATE_RATIO", "DeflateStream", "InflateLimit"]

INFLATE_RATIO: Final = 64
"""Most bytes one received byte may inflate to (text mail compresses 3-15 times)."""
INFLATE_FLOOR: Final = 1024 * 1024
"""What any received chunk may inflate to, however small it is."""


class InflateLimit(Exception):
    """The client's compressed input is broken or inflates beyond the bound."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeflateStream:
    """The two deflate streams of one connection; see the module docstring."""

    def __init__(self, step: int) -> None:
        self._step = step
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        self._budget = 0
        self._more = False
        self._unflushed = False

    # -- output ---------------------------------------------------------------------

    def compress(self, data: bytes) -> bytes:
        """Compressed bytes to write now (often none: zlib holds them until `flush`)."""
        if not data:
            return b""
        self._unflushed = True
        return self._deflate.compress(data)

    def flush(self) -> bytes:
        """Everything compressed so far, decodable by the client (a sync flush)."""
        if not self._unflushed:
            return b""
        self._unflushed = False
        return self._deflate.flush(zlib.Z_SYNC_FLUSH)

    # -- input ----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Input already received may give more output: call `more` before reading."""
        return self._more

    def inflate(self, data: bytes) -> bytes:
        """The first step of output of a newly received chunk (maybe empty)."""
        self._budget = max(INFLATE_FLOOR, INFLATE_RATIO * len(data))
        return self._run(data)

    def more(self) -> bytes:
        """The next step of output of the chunk received last."""
        return self._run(self._inflate.unconsumed_tail)

    def _run(self, data: bytes) -> bytes:
        if self._inflate.eof:
            raise InflateLimit("Compressed stream ended")
        limit = min(self._step, self._budget + 1)
        try:
            out = self._inflate.decompress(data, limit)
        except zlib.error:
            raise InflateLimit("Invalid compressed data") from None
        self._budget -= len(out)
        if self._budget < 0:
            raise InflateLimit("Compressed input inflates too much")
        # Output stopped at the limit: the tail, or zlib's own state, may hold more.
        self._more = bool(self._inflate.unconsumed_tail) or len(out) == limit
        return out
