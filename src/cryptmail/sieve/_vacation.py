"""RFC 5230 vacation: whether a reply is due at all, and what it says.

The rules that need no memory are here (never to lists, bulk or automatic mail, never to
ourselves, only when we were an addressee); "once per sender per :days" needs the
records, which delivery keeps as keyed hashes (delivery/_sieve_records.py).
"""

from __future__ import annotations

import email.utils
import hashlib
from collections.abc import Iterable

from cryptmail.sieve._actions import Vacation
from cryptmail.sieve._match import ascii_lower
from cryptmail.sieve._message import SieveEnvelope, SieveMessage

DAY = 86_400
# Pigeonhole's defaults: sieve_vacation_min_period 1d, default_period 7d, max_period 60d.
MIN_SECONDS = DAY
DEFAULT_SECONDS = 7 * DAY
MAX_SECONDS = 60 * DAY

_SYSTEM_SENDERS = ("mailer-daemon", "listserv", "majordomo", "owner-")
_LIST_HEADERS = ("list-id", "list-owner", "list-unsubscribe", "list-post", "list-help")
_RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def strip_detail(address: str, delimiters: str) -> str:
    """`user+tag@domain` -> `user@domain` for each delimiter character."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    cut = min((i for i in (local.find(d) for d in delimiters) if i > 0), default=-1)
    if cut > 0:
        local = local[:cut]
    return f"{local}@{domain}" if at else local


def _is_automatic(message: SieveMessage, sender: str) -> bool:
    local = ascii_lower(sender.rpartition("@")[0])
    if not sender or local.startswith(_SYSTEM_SENDERS) or local.endswith("-request"):
        return True
    for value in message.header("auto-submitted"):
        if ascii_lower(value.split(";")[0].strip()) != "no":
            return True
    for value in message.header("precedence"):
        if ascii_lower(value.strip()) in ("bulk", "list", "junk"):
            return True
    return any(message.has_header(name) for name in _LIST_HEADERS)


def vacation_reply(
    message: SieveMessage,
    envelope: SieveEnvelope,
    *,
    own: Iterable[str],
    reason: str,
    subject: str | None,
    from_address: str | None,
    days: int | None,
    handle: str | None,
    mime: bool,
    delimiters: str,
) -> Vacation | None:
    """The reply, or None when RFC 5230 4.5/4.6 say not to answer this message."""
    sender = envelope.sender
    mine = {ascii_lower(strip_detail(a, delimiters)) for a in own if a}
    mine.add(ascii_lower(strip_detail(envelope.recipient, delimiters)))
    if _is_automatic(message, sender) or ascii_lower(strip_detail(sender, delimiters)) in mine:
        return None
    addressed = {
        ascii_lower(strip_detail(addr, delimiters))
        for name in _RECIPIENT_HEADERS
        for addr in message.addresses(name)
    }
    if not addressed & mine:
        return None
    seconds = DEFAULT_SECONDS if days is None else days * DAY
    seconds = max(MIN_SECONDS, min(MAX_SECONDS, seconds))
    original = message.header("subject")
    reply_subject = subject if subject is not None else "Auto: " + (original[0] if original else "")
    if handle is None:
        material = "\0".join([reason, subject or "", from_address or "", "mime" if mime else ""])
        handle = hashlib.sha256(material.encode("utf-8")).hexdigest()
    message_id = message.raw_header("message-id")
    from_value = from_address or strip_detail(envelope.recipient, delimiters)
    if "@" not in email.utils.parseaddr(from_value)[1]:
        from_value = strip_detail(envelope.recipient, delimiters)
    return Vacation(
        to=sender,
        sender=from_value,
        subject=reply_subject,
        reason=reason,
        seconds=seconds,
        handle=handle,
        mime=mime,
        in_reply_to=message_id[0] if message_id else "",
    )
