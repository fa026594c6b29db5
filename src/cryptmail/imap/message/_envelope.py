"""ENVELOPE: addresses parsed and written the way Dovecot 2.3 does.

Address lists follow Dovecot's ``message-address`` parser with "fill missing" on:
what cannot be parsed becomes ``MISSING_MAILBOX``, ``MISSING_DOMAIN``,
``SYNTAX_ERROR`` or ``INVALID_ROUTE`` rather than vanishing. Encoded words stay
encoded. The last occurrence of a repeated envelope header wins, as in Dovecot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptmail.imap.wire._response import (
    append_human_string,
    append_nstring,
    append_nstring_nolf,
)
from cryptmail.store import SORT_FIELDS
from cryptmail.store.headers import Address, parse_addresses

__all__ = [
    "SORT_FIELDS",
    "Address",
    "Envelope",
    "EnvelopeBuilder",
    "parse_addresses",
    "write_addresses",
]

ENVELOPE_FIELDS: Final = (
    b"date", b"subject", b"from", b"sender", b"reply-to",
    b"to", b"cc", b"bcc", b"in-reply-to", b"message-id",
)  # fmt: skip


def _maybe_quoted(value: bytes, *, escape_dot: bool) -> bytes:
    if all(_is_atext(c) or (not escape_dot and c == 0x2E) for c in value):
        return value
    escaped = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + escaped + b'"'


def _is_atext(char: int) -> bool:
    return char >= 0x80 or (0x20 < char < 0x7F and char not in b'()<>[]:;@\\,."')


def write_addresses(addresses: tuple[Address, ...] | None) -> bytes:
    """The header form of parsed addresses, as Dovecot writes them for SEARCH."""
    out = bytearray()
    first = True
    in_group = False
    for addr in addresses or ():
        if not first:
            out += b", "
        first = False
        if addr.domain is None:
            if not in_group:
                name = addr.mailbox or b""
                if not name:
                    out += b'""'
                elif b"=?" in name:
                    out += name
                else:
                    out += _maybe_quoted(name, escape_dot=True)
                out += b": "
                first = True
            else:
                if out.endswith(b", "):
                    del out[-2:]
                elif out.endswith(b": "):
                    del out[-1:]
                out += b";"
            in_group = not in_group
            continue
        if addr.name is not None:
            out += addr.name if b"=?" in addr.name else _maybe_quoted(addr.name, escape_dot=True)
        mailbox = addr.mailbox or b""
        if addr.name:
            out += b" "
        out += b"<"
        if addr.route is not None:
            out += addr.route + b":"
        out += _maybe_quoted(mailbox, escape_dot=False) if mailbox else b'""'
        if addr.domain:
            out += b"@" + addr.domain
        out += b">"
    return bytes(out)


@dataclass(slots=True)
class Envelope:
    """The ten ENVELOPE fields; strings are raw header values (unfolded by LF)."""

    date: bytes | None = None
    subject: bytes | None = None
    from_: tuple[Address, ...] | None = None
    sender: tuple[Address, ...] | None = None
    reply_to: tuple[Address, ...] | None = None
    to: tuple[Address, ...] | None = None
    cc: tuple[Address, ...] | None = None
    bcc: tuple[Address, ...] | None = None
    in_reply_to: bytes | None = None
    message_id: bytes | None = None

    def to_imap(self) -> bytes:
        """The ENVELOPE list body (without the outer parentheses), as Dovecot writes it."""
        out = bytearray()
        append_nstring_nolf(out, self.date)
        out.append(0x20)
        if self.subject is None:
            out += b"NIL"
        else:
            append_human_string(out, self.subject)
        for addresses in (
            self.from_,
            self.sender if self.sender is not None else self.from_,
            self.reply_to if self.reply_to is not None else self.from_,
            self.to,
            self.cc,
            self.bcc,
        ):
            out.append(0x20)
            _write_addresses(out, addresses)
        out.append(0x20)
        append_nstring_nolf(out, self.in_reply_to)
        out.append(0x20)
        append_nstring_nolf(out, self.message_id)
        return bytes(out)


def _write_addresses(out: bytearray, addresses: tuple[Address, ...] | None) -> None:
    if addresses is None:
        out += b"NIL"
        return
    out.append(0x28)
    for addr in addresses:
        out.append(0x28)
        if addr.name is None:
            out += b"NIL"
        else:
            append_human_string(out, addr.name)
        for part in (addr.route, addr.mailbox, addr.domain):
            out.append(0x20)
            append_nstring(out, part)
        out.append(0x29)
    out.append(0x29)


@dataclass(slots=True)
class EnvelopeBuilder:
    """Collects envelope headers of one message (root or message/rfc822 part)."""

    envelope: Envelope = field(default_factory=Envelope)
    sort_fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Raw fields SORT and THREAD read (see ``_sortkeys``), in order."""

    def add_header(self, name_lower: bytes, value: bytes) -> None:
        if name_lower in SORT_FIELDS:
            self.sort_fields.append((name_lower, value))
        env = self.envelope
        if b"\0" in value and name_lower in _STRING_FIELDS:
            value = value.replace(b"\0", "\ufffd".encode())
        if name_lower == b"date":
            env.date = value
        elif name_lower == b"subject":
            env.subject = value
        elif name_lower == b"message-id":
            env.message_id = value
        elif name_lower == b"in-reply-to":
            env.in_reply_to = value
        elif name_lower in _ADDRESS_FIELDS:
            # Repeated address headers add up, as in Dovecot.
            found = parse_addresses(value)
            if found is None:
                return
            attr = _ADDRESS_FIELDS[name_lower]
            current: tuple[Address, ...] | None = getattr(env, attr)
            setattr(env, attr, found if current is None else current + found)


_STRING_FIELDS: Final = frozenset({b"date", b"subject", b"message-id", b"in-reply-to"})
_ADDRESS_FIELDS: Final = {
    b"from": "from_",
    b"sender": "sender",
    b"reply-to": "reply_to",
    b"to": "to",
    b"cc": "cc",
    b"bcc": "bcc",
}
