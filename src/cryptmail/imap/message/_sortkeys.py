"""Sort and thread keys of one message (RFC 5256, RFC 5957), from a few header fields.

The fields SORT and THREAD read (Date, Subject, From, To, Cc, Message-ID, In-Reply-To,
References) are kept as one small record, :func:`encode_sort_fields` (made in
`store/_sortfields.py`, which delivery shares), inside the sealed message cache and in
delivery's sort entries; :func:`sort_keys` turns it into a :class:`SortKeys` tuple, the
compact form a selected mailbox keeps in memory for every message.

Strings compare in the i;unicode-casemap collation (RFC 5051): each character mapped to
its (simple) titlecase, then the whole string decomposed (NFKD); the results compare by
code point, which is the order of their UTF-8 octets.
"""

from __future__ import annotations

import email.utils
import re
import unicodedata
from typing import Final, NamedTuple

from cryptmail.imap.message._envelope import parse_addresses
from cryptmail.imap.message._textsearch import decode_header_value
from cryptmail.store import (
    SORT_FIELDS,
    decode_sort_fields,
    encode_sort_fields,
    header_sort_fields,
)

__all__ = [
    "SORT_FIELDS",
    "SortKeys",
    "SortMemo",
    "base_subject",
    "encode_sort_fields",
    "header_sort_fields",
    "message_ids",
    "sort_keys",
    "unicode_casemap",
]

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


# -- collation -------------------------------------------------------------------------


def _titlecase(char: str) -> str:
    # Python knows only the full titlecase mapping; where that is one character it is
    # also the simple one RFC 5051 uses, and where it is more (German sharp s) the
    # simple mapping is the character itself.
    mapped = char.title()
    return mapped if len(mapped) == 1 else char


def unicode_casemap(text: str) -> str:
    """The i;unicode-casemap (RFC 5051) comparison form of ``text``."""
    if text.isascii():
        return text.upper()  # ASCII titlecase is upper case; NFKD changes nothing
    return unicodedata.normalize("NFKD", "".join(_titlecase(c) for c in text))


# -- base subject (RFC 5256 section 2.1) -------------------------------------------------

_BLANKS: Final = re.compile(r"[ \t]+")
_BLOB: Final = re.compile(r"\[[^\[\]]*\] *")
_REFWD: Final = re.compile(r"(?:re|fwd?) *(?:\[[^\[\]]*\] *)?:", re.IGNORECASE)
_TRAILER: Final = re.compile(r"(?:\(fwd\)| )$", re.IGNORECASE)


def _strip_leader(text: str) -> tuple[str, bool]:
    """Step 3: every prefix matching ``subj-leader`` (``*subj-blob subj-refwd`` or WSP)."""
    reply = False
    while True:
        if text.startswith(" "):
            text = text[1:]
            continue
        pos = 0
        while (blob := _BLOB.match(text, pos)) is not None:
            pos = blob.end()
        refwd = _REFWD.match(text, pos)
        if refwd is None:
            return text, reply
        text = text[refwd.end() :]
        reply = True


def _valid_utf8(raw: bytes) -> bytes:
    """Bytes that are not UTF-8 become U+FFFD (as in Dovecot, which sorts them last)."""
    return raw.decode("utf-8", "replace").encode("utf-8")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def base_subject(raw: bytes) -> tuple[str, bool]:
    """The base subject of a raw Subject: value (not casemapped) and whether the subject
    marked a reply or forward."""
    # Step 1: encoded words decoded, blanks and continuations one space.
    text = _BLANKS.sub(" ", decode_header_value(_valid_utf8(raw)))
    reply = False
    while True:
        # Step 2: trailers ("(fwd)" or a blank), repeatedly.
        while (trailer := _TRAILER.search(text)) is not None:
            if trailer.group(0) != " ":
                reply = True
            text = text[: trailer.start()]
        # Steps 3 to 5: leaders and leading blobs until none is left.
        while True:
            before = text
            text, was_reply = _strip_leader(text)
            reply |= was_reply
            blob = _BLOB.match(text)
            if blob is not None and blob.end() < len(text):
                text = text[blob.end() :]
            if text == before:
                break
        # Step 6: "[fwd: ...]" unwrapped, then from step 2 again.
        if len(text) >= 6 and text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply


# -- dates, addresses, ids -------------------------------------------------------------


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
        display = decode_header_value(_valid_utf8(addr.name))
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
