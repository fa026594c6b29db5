"""Quota warnings: a short message into the user's INBOX when a delivery takes their usage
past one of `quota.warnings` (percent of virtual_users.quota), as Dovecot's
quota-warning does.

Once per crossing: the delivery that crosses a threshold (its usage before was below,
after at or above it) sends the warning for the highest threshold crossed; the next
deliveries stay above it and send nothing, and only after the user deleted enough mail
to go back below does a later crossing warn again. Usage before is read in the
delivery's own transaction, so two parallel deliveries never both claim one crossing.
The warning is delivered like any mail (sealed for crypt = 2) after the delivery that
triggered it committed; it never changes that delivery's reply.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from datetime import datetime

from cryptmail.store import round_size
from cryptmail.users import User, domain_of


def crossed_threshold(
    quota: int, used_before: int, added: int, percents: Sequence[int]
) -> int | None:
    """The highest of `percents` that `added` bytes take the usage past; None if none."""
    if quota <= 0:
        return None
    after = used_before + round_size(added)
    crossed = [p for p in percents if used_before * 100 < quota * p <= after * 100]
    return max(crossed, default=None)


def _mebibytes(octets: int) -> str:
    return f"{octets / (1024 * 1024):.1f} MiB"


def warning_message(user: User, percent: int, used: int, now: datetime) -> bytes:
    """The warning, as an RFC 5322 message from the postmaster of the user's domain."""
    domain = domain_of(user.email)
    lines = [
        f"From: Mail server <postmaster@{domain}>",
        f"To: <{user.email}>",
        f"Subject: Your mailbox is {percent}% full",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: {email.utils.make_msgid('quota-warning', domain)}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"Your mailbox now holds {_mebibytes(used)} of the {_mebibytes(user.quota)} it may",
        f"hold ({percent}% or more). When it is full, new mail to you is refused and",
        "senders get it back after a few days of retrying.",
        "",
        "Delete mail you no longer need, and empty the Trash folder, to make room.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")
