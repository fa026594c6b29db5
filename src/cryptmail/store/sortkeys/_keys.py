"""Sort and thread keys of one message (RFC 5256, RFC 5957), from a few header fields.

The fields SORT and THREAD read (Date, Subject, From, To, Cc, Message-ID, In-Reply-To,
References) are kept as one small record (`store/_sortfields.py`) inside the sealed
message cache; :func:`sort_keys` turns it into a :class:`SortKeys` tuple, the compact
form a selected mailbox keeps in memory for every message. Here, below the protocols,
so delivery makes the keys once per message (its sort entries hold them ready) with the
same code IMAP uses for what delivery did not. Pure: no I/O.
"""

from __future__ import annotations

import email.utils
import re
from typing import Final, NamedTuple

from cryptmail.store._sortfields import decode_sort_fields
from cryptmail.store.headers import decode_header_value, parse_addresses
from cryptmail.store.sortkeys._base_subject import base_subject, valid_utf8
from cryptmail.store.sortkeys._casemap import unicode_casemap

__all__ = ["SortKeys", "SortMemo", "message_ids", "sort_keys"]

_MAX_REFERENCES: Final = 256


class SortKeys(NamedTuple):
    """What SORT and THREAD need of one message; strings already in collation form."""

    date: float | None
    """Date: header as a POSIX time; None when missing or unreadable."""
    subject: str
    """Base subject (RFC 5256 section 2.1), casemapped."""
    reply: bool
    """The subject had a "Re:"/"Fwd:" leader, a "(fwd)" trailer or "[fwd: ...]"."""
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    message_id: str | None
    references: tuple[str, ...]
    """References (or, without a usable one, the first In-Reply-To id), oldest first."""
    size: int = 0
    """RFC822.SIZE (not in the record: the reader sets it from the analysis)."""
    arrival: float = 0.0
    """The internal date as a POSIX time (not in the record: set from the message row)."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _sent_date(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(decode_header_value(raw).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def _first_address(raw: bytes | None) -> tuple[str, str]:
    """(mailbox, display) of the first address: the addr-mailbox (RFC 5256) and the
    RFC 5957 display form (the decoded display name, else mailbox@domain).

    As in Dovecot, the address list is parsed with missing parts filled in
    (``<>`` is MISSING_MAILBOX@MISSING_DOMAIN), and a group's name counts as the
    mailbox of its first address."""
    if raw is None:
        return "", ""
    found = parse_addresses(raw)
    if not found:
        return "", ""
    addr = found[0]
    mailbox = _text(addr.mailbox or b"")
    if addr.name:
        display = decode_header_value(valid_utf8(addr.name))
    else:
        display = mailbox + ("@" + _text(addr.domain) if addr.domain is not None else "")
    return unicode_casemap(mailbox), unicode_casemap(display)


_MSG_ID: Final = re.compile(rb"<([^<>\s@]+@[^<>\s]+)>")


def message_ids(raw: bytes | None) -> list[str]:
    """Every ``<local@domain>`` in a Message-ID / References / In-Reply-To value."""
    if not raw:
        return []
    return [m.decode("utf-8", "replace") for m in _MSG_ID.findall(raw)]


class SortMemo:
    """Parsed values of one run over a mailbox's records, kept for that run only (never
    longer: they are plaintext of the user's mail). A mailbox repeats them (To is nearly
    always its owner, a thread shares a subject), and parsing address lists is most of
    what a message's keys cost."""

    __slots__ = ("addresses", "subjects")

    def __init__(self) -> None:
        self.addresses: dict[bytes, tuple[str, str]] = {}
        self.subjects: dict[bytes, tuple[str, bool]] = {}

    def address(self, raw: bytes | None) -> tuple[str, str]:
        if raw is None:
            return "", ""
        found = self.addresses.get(raw)
        if found is None:
            found = self.addresses[raw] = _first_address(raw)
        return found

    def subject(self, raw: bytes) -> tuple[str, bool]:
        found = self.subjects.get(raw)
        if found is None:
            subject, reply = base_subject(raw)
            found = self.subjects[raw] = (unicode_casemap(subject), reply)
        return found


def sort_keys(record: bytes, memo: SortMemo | None = None) -> SortKeys:
    """The keys of one message from its :func:`encode_sort_fields` record; ``memo``
    saves parsing a value met before in the same run."""
    memo = memo or SortMemo()
    fields = decode_sort_fields(record)
    subject, reply = memo.subject(fields.get(b"subject", b""))
    from_, display_from = memo.address(fields.get(b"from"))
    to, display_to = memo.address(fields.get(b"to"))
    cc, _display_cc = memo.address(fields.get(b"cc"))
    ids = message_ids(fields.get(b"message-id"))
    references = message_ids(fields.get(b"references"))
    if not references:
        references = message_ids(fields.get(b"in-reply-to"))[:1]
    return SortKeys(
        date=_sent_date(fields.get(b"date")),
        subject=subject,
        reply=reply,
        from_=from_,
        to=to,
        cc=cc,
        display_from=display_from,
        display_to=display_to,
        message_id=ids[0] if ids else None,
        references=tuple(references[-_MAX_REFERENCES:]),
    )
