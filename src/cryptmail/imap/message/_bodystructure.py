"""Writing BODY and BODYSTRUCTURE from a parsed part tree, byte for byte as Dovecot 2.3.

Strings go through the same quoting rules (:mod:`cryptmail.imap.wire._response`); text
parts get the default ``("charset" "us-ascii")``; a multipart without parts gets one
empty text/plain part; message/rfc822 carries its envelope, structure and line count.
"""

from __future__ import annotations

from typing import Final

from cryptmail.imap.message._envelope import Envelope
from cryptmail.imap.message._mime_part import (
    FLAG_MULTIPART,
    FLAG_RFC822,
    FLAG_TEXT,
    MessagePart,
    PartData,
)
from cryptmail.imap.wire._response import append_nstring, append_nstring_nolf

__all__ = ["write_body", "write_bodystructure", "write_envelope"]

_EMPTY_BODY: Final = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE: Final = (
    b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
)
_EMPTY_ENVELOPE: Final = b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL"


def _params(out: bytearray, params: list[tuple[bytes, bytes]], default_charset: bool) -> None:
    if not default_charset and not params:
        out += b"NIL"
        return
    out.append(0x28)
    seen_charset = False
    for index, (name, value) in enumerate(params):
        if index:
            out.append(0x20)
        if default_charset and name.lower() == b"charset":
            seen_charset = True
        append_nstring(out, name)
        out.append(0x20)
        append_nstring(out, value)
    if default_charset and not seen_charset:
        if params:
            out.append(0x20)
        out += b'"charset" "us-ascii"'
    out.append(0x29)


def _common(out: bytearray, data: PartData) -> None:
    out.append(0x20)
    if data.disposition is None:
        out += b"NIL"
    else:
        out.append(0x28)
        append_nstring(out, data.disposition)
        out.append(0x20)
        _params(out, data.disposition_params, False)
        out.append(0x29)
    out.append(0x20)
    if data.language is None:
        out += b"NIL"
    else:
        out.append(0x28)
        for index, lang in enumerate(data.language):
            if index:
                out.append(0x20)
            append_nstring(out, lang)
        out.append(0x29)
    out.append(0x20)
    append_nstring_nolf(out, data.location)


def _envelope_of(part: MessagePart) -> bytes:
    if part.envelope is None:
        return _EMPTY_ENVELOPE
    return part.envelope.envelope.to_imap()


def _write(out: bytearray, part: MessagePart, extended: bool) -> None:
    data = part.data or PartData()
    if part.flags & FLAG_MULTIPART:
        if part.children:
            for child in part.children:
                out.append(0x28)
                _write(out, child, extended)
                out.append(0x29)
        else:
            out += _EMPTY_BODYSTRUCTURE if extended else _EMPTY_BODY
        out.append(0x20)
        append_nstring(out, data.subtype or b"")
        if extended:
            out.append(0x20)
            _params(out, data.params, False)
            _common(out, data)
        return
    if part.flags & FLAG_RFC822:
        out += b'"message" "rfc822"'
        text = False
    elif data.content_type is None:
        out += b'"text" "plain"'
        text = True
    elif data.content_type.lower() == b"multipart" or (
        data.content_type.lower() == b"message" and (data.subtype or b"").lower() == b"rfc822"
    ):
        # A container left unparsed (nested too deep): Dovecot describes it this way.
        out += b'"application" "octet-stream"'
        text = False
    else:
        text = data.content_type.lower() == b"text"
        append_nstring(out, data.content_type)
        out.append(0x20)
        append_nstring(out, data.subtype or b"")
    out.append(0x20)
    _params(out, data.params, text)
    out.append(0x20)
    append_nstring_nolf(out, data.content_id)
    out.append(0x20)
    append_nstring_nolf(out, data.description)
    out.append(0x20)
    if data.transfer_encoding is not None:
        append_nstring(out, data.transfer_encoding)
    else:
        out += b'"7bit"'
    out += b" %d" % part.body.virtual
    if text:
        out += b" %d" % part.body.lines
    elif part.flags & FLAG_RFC822 and part.children:
        child = part.children[0]
        out += b" ("
        out += _envelope_of(child)
        out += b") ("
        _write(out, child, extended)
        out += b") %d" % part.body.lines
    if extended:
        out.append(0x20)
        append_nstring_nolf(out, data.md5)
        _common(out, data)


def write_bodystructure(root: MessagePart) -> bytes:
    """``(...)`` for FETCH BODYSTRUCTURE (the extended form)."""
    out = bytearray(b"(")
    _write(out, root, True)
    out.append(0x29)
    return bytes(out)


def _is_plain_7bit(part: MessagePart) -> bool:
    """Dovecot answers BODY of such a message with a fixed, lower-case form."""
    data = part.data or PartData()
    if not part.flags & FLAG_TEXT or part.children:
        return False
    if data.subtype is not None and data.subtype.lower() != b"plain":
        return False
    if data.params and (
        data.params[0][0].lower() != b"charset" or data.params[0][1].lower() != b"us-ascii"
    ):
        return False
    if data.content_id is not None or data.description is not None:
        return False
    if data.transfer_encoding is not None and data.transfer_encoding.lower() != b"7bit":
        return False
    return (
        data.md5 is None
        and data.disposition is None
        and data.language is None
        and data.location is None
    )


def write_body(root: MessagePart) -> bytes:
    """``(...)`` for FETCH BODY (the basic form)."""
    if _is_plain_7bit(root):
        return b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" %d %d)' % (
            root.body.virtual,
            root.body.lines,
        )
    out = bytearray(b"(")
    _write(out, root, False)
    out.append(0x29)
    return bytes(out)


def write_envelope(envelope: Envelope | None) -> bytes:
    """``(...)`` for FETCH ENVELOPE."""
    if envelope is None:
        return b"(" + _EMPTY_ENVELOPE + b")"
    return b"(" + envelope.to_imap() + b")"
