"""Mail that Sieve sends: redirects and vacation replies, through the SMTP relay.

`sieve.smtp_relay` is Postfix's own SMTP (loopback, no auth); smtplib runs in a worker
thread. A relay that refuses or does not answer raises RelayFailed, and delivery keeps
the message instead (nothing is lost; the log says so, without addresses).
"""

from __future__ import annotations

import email.utils
import smtplib
from email.message import EmailMessage

from cryptmail.concurrency import run_in_thread
from cryptmail.sieve import Vacation

REDIRECTED_FROM = "X-Sieve-Redirected-From"
_TIMEOUT_S = 30


class RelayFailed(Exception):
    """The relay did not take the message (refused, unreachable, timed out)."""


def _split(relay: str) -> tuple[str, int]:
    host, _, port = relay.rpartition(":")
    return host.strip("[]"), int(port)


def _send(relay: str, sender: str, recipient: str, data: bytes) -> None:
    host, port = _split(relay)
    try:
        with smtplib.SMTP(host, port, timeout=_TIMEOUT_S) as smtp:
            refused = smtp.sendmail(sender, [recipient], data)
    except (OSError, smtplib.SMTPException) as exc:
        raise RelayFailed(type(exc).__name__) from exc
    if refused:
        raise RelayFailed("recipient refused")


async def send_redirect(
    relay: str, sender: str, recipient: str, redirected_from: str, message: bytes
) -> None:
    """The message as it arrived, to `recipient`, with the original envelope sender and
    a header that lets the next hop see the loop (RFC 5228 4.2)."""
    header = f"{REDIRECTED_FROM}: {redirected_from}\r\n".encode()
    await run_in_thread(_send, relay, sender, recipient, header + message)


def vacation_message(reply: Vacation) -> bytes:
    message = EmailMessage()
    message["From"] = reply.sender
    message["To"] = reply.to
    message["Subject"] = reply.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=reply.sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-replied (vacation)"
    if reply.in_reply_to:
        message["In-Reply-To"] = reply.in_reply_to
        message["References"] = reply.in_reply_to
    if reply.mime:
        # :mime: the reason is a MIME entity of its own (its headers, a blank line, body).
        head = "".join(f"{name}: {value}\r\n" for name, value in message.items())
        entity = reply.reason.replace("\r\n", "\n").replace("\n", "\r\n")
        return (head + "MIME-Version: 1.0\r\n" + entity).encode("utf-8")
    message.set_content(reply.reason)
    return message.as_bytes()


async def send_vacation(relay: str, reply: Vacation) -> None:
    """The reply, from the null sender (RFC 5230 5.1: no replies to replies)."""
    await run_in_thread(_send, relay, "", reply.to, vacation_message(reply))
