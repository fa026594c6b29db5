"""What running the scripts asks delivery to do: plain values, executed by delivery/."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Keep:
    """Store in INBOX (explicit keep, or the implicit keep nobody cancelled)."""

    flags: frozenset[str] = frozenset()
    implicit: bool = False


@dataclass(frozen=True)
class FileInto:
    """Store in `mailbox`; create it first if `create` (RFC 5490 :create)."""

    mailbox: str
    flags: frozenset[str] = frozenset()
    create: bool = False


@dataclass(frozen=True)
class Redirect:
    """Send the message on to `address` through the relay, envelope unchanged."""

    address: str


@dataclass(frozen=True)
class Reject:
    """Refuse the message for this recipient (RFC 5429); `extended` for ereject."""

    reason: str
    extended: bool = False


@dataclass(frozen=True)
class Vacation:
    """An auto-reply (RFC 5230), already decided to be due by the script's own rules;
    delivery still checks the once-per-`seconds` record before sending it."""

    to: str
    sender: str
    subject: str
    reason: str
    seconds: int
    handle: str
    mime: bool = False
    in_reply_to: str = ""


@dataclass(frozen=True)
class DuplicateMark:
    """A duplicate test's id to remember once the delivery succeeded (RFC 7352 3)."""

    handle: str
    unique_id: str
    seconds: int
    last: bool = False


Action = Keep | FileInto | Redirect | Reject | Vacation


@dataclass(frozen=True)
class SieveResult:
    """The actions of every script run, in order, with the implicit keep resolved: an
    empty `actions` means the message was discarded. `errors` holds, per failed script,
    its name and line (never its text): such a run ends in an implicit keep."""

    actions: tuple[Action, ...]
    duplicates: tuple[DuplicateMark, ...] = ()
    errors: tuple[str, ...] = field(default=())

    @property
    def rejected(self) -> Reject | None:
        return next((a for a in self.actions if isinstance(a, Reject)), None)
