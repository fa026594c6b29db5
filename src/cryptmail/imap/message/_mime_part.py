"""The MIME part tree and what each part's Content-* headers say.

Filled by :mod:`cryptmail.imap.message._mime` while it streams over a message; read by the
BODYSTRUCTURE writer and the part map. Header values are kept as raw bytes, folded
lines joined by LF, exactly as Dovecot keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptmail.imap.message._envelope import EnvelopeBuilder
from cryptmail.store.headers import Rfc822Reader, parse_content_params

__all__ = ["MessagePart", "PartData", "Size"]

FLAG_MULTIPART: Final = 0x01
FLAG_DIGEST: Final = 0x02
FLAG_RFC822: Final = 0x04
FLAG_TEXT: Final = 0x08
FLAG_GLOBAL: Final = 0x10
"""With FLAG_RFC822: the part is message/global (RFC 6532), parsed as the message it
holds. IMAP4rev1 (and Dovecot 2.3) describe it as a leaf, IMAP4rev2 as a message."""
FLAG_IS_MIME: Final = 0x40


@dataclass(slots=True)
class Size:
    """Bytes as stored, bytes with every line ending as CRLF, and LF count."""

    physical: int = 0
    virtual: int = 0
    lines: int = 0

    def add(self, other: Size) -> None:
        self.physical += other.physical
        self.virtual += other.virtual
        self.lines += other.lines


@dataclass(slots=True)
class PartData:
    """Content-* header values of one part (the first of each kind counts)."""

    content_type: bytes | None = None
    subtype: bytes | None = None
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    transfer_encoding: bytes | None = None
    content_id: bytes | None = None
    description: bytes | None = None
    md5: bytes | None = None
    disposition: bytes | None = None
    disposition_params: list[tuple[bytes, bytes]] = field(default_factory=list)
    language: list[bytes] | None = None
    location: bytes | None = None

    def add_header(self, name_lower: bytes, value: bytes) -> None:
        """Feed one complete ``Content-*`` header (name lower-cased)."""
        kind = name_lower[8:]
        if kind == b"type" and self.content_type is None:
            self._content_type(value)
        elif kind == b"transfer-encoding" and self.transfer_encoding is None:
            reader = Rfc822Reader(value)
            reader.skip_lwsp()
            token = bytearray()
            if reader.mime_token(token) >= 0 and reader.skip_lwsp() == 0 and token:
                self.transfer_encoding = bytes(token)
        elif kind == b"id" and self.content_id is None:
            self.content_id = nul_to_replacement(value)
        elif kind == b"md5" and self.md5 is None:
            self.md5 = nul_to_replacement(value)
        elif kind == b"description" and self.description is None:
            self.description = nul_to_replacement(value)
        elif kind == b"location" and self.location is None:
            self.location = nul_to_replacement(value)
        elif kind == b"language" and self.language is None:
            self._language(value)
        elif kind == b"disposition" and not self.disposition_params:
            reader = Rfc822Reader(value)
            reader.skip_lwsp()
            token = bytearray()
            if reader.mime_token(token) < 0:
                return
            self.disposition = bytes(token)
            self.disposition_params = parse_content_params(reader)

    def _content_type(self, value: bytes) -> None:
        reader = Rfc822Reader(value)
        reader.skip_lwsp()
        text = bytearray()
        ret = reader.content_type(text)
        main, slash, sub = bytes(text).partition(b"/")
        self.content_type = main
        self.subtype = sub if slash else b""
        if ret >= 0:
            self.params = parse_content_params(reader)

    def _language(self, value: bytes) -> None:
        reader = Rfc822Reader(value)
        reader.skip_lwsp()
        langs: list[bytes] = []
        token = bytearray()
        while reader.atom(token) >= 0:
            langs.append(bytes(token))
            token.clear()
            if reader.pos >= reader.end or reader.data[reader.pos] != 0x2C:
                break
            reader.pos += 1
            reader.skip_lwsp()
        if langs:
            self.language = langs


def nul_to_replacement(value: bytes) -> bytes:
    """NUL becomes U+FFFD in stored header strings, as in Dovecot."""
    return value.replace(b"\0", "\ufffd".encode()) if b"\0" in value else value


@dataclass(slots=True, eq=False)
class MessagePart:
    """One node of the MIME tree, with absolute offsets into the message."""

    offset: int
    parent: MessagePart | None = None
    flags: int = 0
    header: Size = field(default_factory=Size)
    body: Size = field(default_factory=Size)
    children: list[MessagePart] = field(default_factory=list)
    data: PartData | None = None
    envelope: EnvelopeBuilder | None = None
    depth: int = 0

    @property
    def is_multipart(self) -> bool:
        return bool(self.flags & FLAG_MULTIPART)

    @property
    def is_rfc822(self) -> bool:
        return bool(self.flags & FLAG_RFC822)

    @property
    def body_offset(self) -> int:
        return self.offset + self.header.physical
