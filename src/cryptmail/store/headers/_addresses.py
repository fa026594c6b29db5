"""Address lists parsed the way Dovecot 2.3's ``message-address`` parser does.

With "fill missing" on, what cannot be parsed becomes ``MISSING_MAILBOX``,
``MISSING_DOMAIN``, ``SYNTAX_ERROR`` or ``INVALID_ROUTE`` rather than vanishing; a group
start is an address with only ``mailbox`` (the group name), a group end has all four
None. Encoded words stay encoded. Pure: used by IMAP (ENVELOPE, SEARCH) and by the sort
keys delivery makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptmail.store.headers._rfc822 import Rfc822Reader

__all__ = ["Address", "parse_addresses"]


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
