"""imaplib with COMPRESS=DEFLATE (RFC 4978): Python's zlib on the client side."""

from __future__ import annotations

import imaplib
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))  # imaplib has no COMPRESS


class CompressedIMAP4(imaplib.IMAP4):
    """After :meth:`compress`, everything sent is deflated and everything read inflated."""

    _deflate: zlib._Compress | None = None
    _inflate: zlib._Decompress | None = None
    _plain = b""

    def compress(self) -> str:
        typ, _ = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._inflate = zlib.decompressobj(-15)
        return str(typ)

    def send(self, data: Buffer) -> None:
        if self._deflate is None:
            super().send(data)
            return
        raw = bytes(data)
        self.sock.sendall(self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def send_raw(self, data: bytes) -> None:
        """Bytes on the socket as they are (a hand-made deflate stream)."""
        self.sock.sendall(data)

    def _fill(self) -> bool:
        assert self._inflate is not None
        data = self.sock.recv(65536)
        if not data:
            return False
        self._plain += self._inflate.decompress(data)
        return True

    def read(self, size: int) -> bytes:
        if self._inflate is None:
            return super().read(size)
        while len(self._plain) < size and self._fill():
            pass
        out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def readline(self) -> bytes:
        if self._inflate is None:
            return super().readline()
        while b"\n" not in self._plain and self._fill():
            pass
        end = self._plain.find(b"\n") + 1 or len(self._plain)
        out, self._plain = self._plain[:end], self._plain[end:]
        return out
