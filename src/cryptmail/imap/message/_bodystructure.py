"""Writing BODY and BODYSTRUCTURE from a parsed part tree, byte for byte as Dovecot 2.3.

Strings go through the same quoting rules (:mod:`cryptmail.imap.wire._response`); text
parts get the default ``("charset" "us-ascii")``; a multipart without parts gets one
empty text/plain part; message/rfc822 carries its envelope, structure and line count.

message/global (RFC 6532) has two forms: IMAP4rev1 (as Dovecot 2.3) describes it as a
leaf; IMAP4rev2 (RFC 9051 ``body-type-msg``) as message/rfc822 is, with envelope,
structure and line count. One that could not be read as a message (encoded, nested
too deep) is then "application/octet-stream", as Dovecot does for such containers.
"""

from __future__ import annotations

from typing import Final

from cryptmail.imap.message._envelope import Envelope
from cryptmail.imap.message._mime_part import (
    FLAG_GLOBAL,
    FLAG_MULTIPART,
    FLAG_RFC822,
    FLAG_TEXT,
    MessagePart,
    PartData,
)
from cryptmail.imap.wire._response import append_nstring, append_nstring_nolf

__all__ = ["has_global", "write_body", "write_bodystructure", "write_envelope"]

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


def _is_global(data: PartData) -> bool:
    return (data.content_type or b"").lower() == b"message" and (
        data.subtype or b""
    ).lower() == b"global"


def _write(out: bytearray, part: MessagePart, extended: bool, rev2: bool) -> None:
    data = part.data or PartData()
    # A message/global part is a message in rev2 only; in rev1 its bytes are a leaf.
    message = bool(part.flags & FLAG_RFC822) and (rev2 or not part.flags & FLAG_GLOBAL)
    if part.flags & FLAG_MULTIPART:
        if part.children:
            for child in part.children:
                out.append(0x28)
                _write(out, child, extended, rev2)
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
    if message:
        out += b'"message" "global"' if part.flags & FLAG_GLOBAL else b'"message" "rfc822"'
        text = False
    elif data.content_type is None:
        out += b'"text" "plain"'
        text = True
    elif (
        data.content_type.lower() == b"multipart"
        or (data.content_type.lower() == b"message" and (data.subtype or b"").lower() == b"rfc822")
        or (rev2 and not part.flags & FLAG_GLOBAL and _is_global(data))
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
    elif message and part.children:
        child = part.children[0]
        out += b" ("
        out += _envelope_of(child)
        out += b") ("
        _write(out, child, extended, rev2)
        out += b") %d" % part.body.lines
    if extended:
        out.append(0x20)
        append_nstring_nolf(out, data.md5)
        _common(out, data)


def write_bodystructure(root: MessagePart, rev2: bool = False) -> bytes:
    """``(...)`` for FETCH BODYSTRUCTURE (the extended form); ``rev2``: RFC 9051's."""
    out = bytearray(b"(")
    _write(out, root, True, rev2)
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


def has_global(root: MessagePart) -> bool:
    """Whether a message/global part is in the tree: only then do the rev1 and rev2
    forms differ."""
    stack = [root]
    while stack:
        part = stack.pop()
        if part.flags & FLAG_GLOBAL or _is_global(part.data or PartData()):
            return True
        stack.extend(part.children)
    return False


def write_body(root: MessagePart, rev2: bool = False) -> bytes:
    """``(...)`` for FETCH BODY (the basic form); ``rev2``: RFC 9051's."""
    if _is_plain_7bit(root):
        return b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" %d %d)' % (
            root.body.virtual,
            root.body.lines,
        )
    out = bytearray(b"(")
    _write(out, root, False, rev2)
    out.append(0x29)
    return bytes(out)


def write_envelope(envelope: Envelope | None) -> bytes:
    """``(...)`` for FETCH ENVELOPE."""
    if envelope is None:
        return b"(" + _EMPTY_ENVELOPE + b")"
    return b"(" + envelope.to_imap() + b")"
