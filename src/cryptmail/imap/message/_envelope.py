"""ENVELOPE: addresses parsed and written the way Dovecot 2.3 does.

Address lists follow Dovecot's ``message-address`` parser with "fill missing" on:
what cannot be parsed becomes ``MISSING_MAILBOX``, ``MISSING_DOMAIN``,
``SYNTAX_ERROR`` or ``INVALID_ROUTE`` rather than vanishing. Encoded words stay
encoded. The last occurrence of a repeated envelope header wins, as in Dovecot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptmail.imap.message._rfc822 import Rfc822Reader
from cryptmail.imap.wire._response import (
    append_human_string,
    append_nstring,
    append_nstring_nolf,
)
from cryptmail.store import SORT_FIELDS

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


@dataclass(frozen=True, slots=True)
class Address:
    """One ENVELOPE address; a group start has only ``mailbox`` (the group name),
    a group end has all four None."""

    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None


@dataclass(slots=True)
class _Pending:
    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None
    invalid: bool = False


class _AddressParser:
    def __init__(self, value: bytes, *, fill_missing: bool = True) -> None:
        self.r = Rfc822Reader(value, keep_comment=True)
        self.out: list[Address] = []
        self.addr = _Pending()
        self.buf = bytearray()
        self.fill = fill_missing

    def add(self) -> None:
        a = self.addr
        self.out.append(Address(a.name, a.route, a.mailbox, a.domain))
        self.addr = _Pending()

    def add_fixed(self) -> None:
        if self.addr.mailbox is None:
            self.addr.mailbox = b"MISSING_MAILBOX" if self.fill else b""
            self.addr.invalid = True
        if not self.addr.domain:
            self.addr.domain = b"MISSING_DOMAIN" if self.fill else b""
            self.addr.invalid = True
        self.add()

    def local_part(self) -> int:
        self.buf = bytearray()
        if self.r.peek() == 0x22:
            ret = self.r.quoted_string(self.buf)
        else:
            ret = self.r.nonstrict_dot_atom(self.buf)
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(self.buf)
        return ret

    def domain(self) -> int:
        out = bytearray()
        ret = self.r.domain(out)
        if ret < 0:
            return -1
        self.addr.domain = bytes(out)
        return ret

    def domain_list(self) -> int:
        out = bytearray()
        r = self.r
        while True:
            if r.pos >= r.end:
                return 0
            if r.data[r.pos] != 0x40:
                break
            if out:
                out.append(0x2C)
            out.append(0x40)
            ret = r.domain(out)
            if ret <= 0:
                return ret
            while r.skip_lwsp() > 0 and r.data[r.pos] == 0x2C:
                r.pos += 1
        self.addr.route = bytes(out)
        return 1

    def angle_addr(self) -> int:
        r = self.r
        r.pos += 1  # '<'
        if r.skip_lwsp() <= 0:
            return -1
        if r.data[r.pos] == 0x40:
            if self.domain_list() > 0 and r.data[r.pos] == 0x3A:
                r.pos += 1
            else:
                if self.fill:
                    self.addr.route = b"INVALID_ROUTE"
                if r.pos >= r.end:
                    return -1
            if r.skip_lwsp() <= 0:
                return -1
        if r.data[r.pos] != 0x3E:
            if self.local_part() <= 0:
                return -1
            if r.data[r.pos] == 0x40 and self.domain() <= 0:
                return -1
        if r.data[r.pos] != 0x3E:
            return -1
        r.pos += 1
        return r.skip_lwsp()

    def name_addr(self) -> int:
        r = self.r
        out = bytearray()
        if r.phrase(out) <= 0 or r.data[r.pos] != 0x3C:
            return -1
        self.addr.name = bytes(out) or None
        if self.angle_addr() < 0:
            if self.fill:
                self.addr.domain = b"SYNTAX_ERROR"
            self.addr.invalid = True
        return 1 if r.pos < r.end else 0

    def addr_spec(self) -> int:
        r = self.r
        assert r.last_comment is not None  # noqa: S101 -- keep_comment=True above
        r.last_comment.clear()
        quoted = r.peek() == 0x22
        ret = self.local_part()
        ret2 = -2
        if ret <= 0:
            self.addr.invalid = True
        if ret != 0 and r.pos < r.end and r.data[r.pos] == 0x40:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if r.last_comment:
            self.addr.name = bytes(r.last_comment)
        elif ret2 == -2:
            # "user" alone is a mailbox; "user more words" was a display name.
            self.buf.append(0x20)
            before = len(self.buf)
            r.phrase(self.buf)
            if len(self.buf) != before:
                self.addr.mailbox = None
                self.addr.name = bytes(self.buf)
            elif not quoted:
                self.addr.domain = b""
            self.addr.invalid = True
            ret = -1
        return ret

    def mailbox(self) -> int:
        r = self.r
        start = r.pos
        ret = self.name_addr()
        if ret < 0:
            r.pos = start
            self.addr = _Pending()
            ret = self.addr_spec()
            a = self.addr
            if a.invalid and a.name is None and a.mailbox is not None and a.domain is None:
                a.name, a.mailbox = a.mailbox, None
        if ret < 0:
            self.addr.invalid = True
        self.add_fixed()
        return ret

    def group(self) -> int:
        r = self.r
        out = bytearray()
        if r.phrase(out) <= 0 or r.data[r.pos] != 0x3A:
            return -1
        r.pos += 1
        ret = r.skip_lwsp()
        self.addr = _Pending(mailbox=bytes(out))
        self.add()
        if ret > 0 and r.data[r.pos] != 0x3B:
            while True:
                self.mailbox()
                if r.pos >= r.end or r.data[r.pos] != 0x2C:
                    break
                r.pos += 1
                if r.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if r.pos >= r.end or r.data[r.pos] != 0x3B:
                ret = -1
            else:
                r.pos += 1
                ret = r.skip_lwsp()
        self.add()  # group end
        return 0 if ret == 0 else 1

    def address(self) -> int:
        r = self.r
        start = r.pos
        saved = len(self.out)
        ret = self.group()
        if ret < 0:
            r.pos = start
            del self.out[saved:]
            self.addr = _Pending()
            ret = self.mailbox()
        return ret

    def address_list(self) -> None:
        r = self.r
        while True:
            if self.address() == 0:
                break
            if r.pos >= r.end or r.data[r.pos] != 0x2C:
                break
            r.pos += 1
            ret = r.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self.add_fixed()
                break


def parse_addresses(value: bytes, *, fill_missing: bool = True) -> tuple[Address, ...] | None:
    """Parse an address-list header value; None when it holds no address at all.

    With ``fill_missing`` (as ENVELOPE wants) unparsable pieces become
    ``MISSING_MAILBOX`` and the like; without it they are left empty.
    """
    parser = _AddressParser(value, fill_missing=fill_missing)
    if parser.r.skip_lwsp() > 0:
        parser.address_list()
    return tuple(parser.out) or None


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
