"""RFC 5230's rules for whether a reply is due, without records."""

from __future__ import annotations

from typing import Any

from cryptmail.sieve import SieveEnvelope, SieveMessage, Vacation
from cryptmail.sieve._vacation import DAY, MAX_SECONDS, MIN_SECONDS, strip_detail, vacation_reply

BASE = b"From: a@example.net\r\nTo: Bob <bob@example.org>\r\nSubject: Q\r\n\r\nbody\r\n"


def _reply(
    message: bytes = BASE,
    sender: str = "a@example.net",
    *,
    own: tuple[str, ...] = (),
    reason: str = "away",
    days: int | None = None,
) -> Vacation | None:
    return vacation_reply(
        SieveMessage(message),
        SieveEnvelope(sender, "bob+x@example.org"),
        own=own,
        reason=reason,
        subject=None,
        from_address=None,
        days=days,
        handle=None,
        mime=False,
        delimiters="+",
    )


def _due(**kw: Any) -> Vacation:
    reply = _reply(**kw)
    assert reply is not None
    return reply


def test_strip_detail() -> None:
    assert strip_detail("bob+tag@example.org", "+") == "bob@example.org"
    assert strip_detail("bob-x+y@example.org", "+-") == "bob@example.org"
    assert strip_detail("+bob@example.org", "+") == "+bob@example.org"


def test_default_subject_and_period_clamped() -> None:
    reply = _due()
    assert reply.subject == "Auto: Q" and reply.seconds == 7 * DAY
    assert _due(days=0).seconds == MIN_SECONDS
    assert _due(days=365).seconds == MAX_SECONDS


def test_no_reply_to_the_null_sender_daemons_or_ourselves() -> None:
    assert _reply(sender="") is None
    assert _reply(sender="MAILER-DAEMON@example.net") is None
    assert _reply(sender="dev-request@lists.example") is None
    assert _reply(sender="bob@example.org") is None


def test_only_when_we_are_an_addressee_or_listed() -> None:
    other = BASE.replace(b"To: Bob <bob@example.org>", b"To: carol@example.org")
    assert _reply(other) is None
    assert _reply(other, own=("carol@example.org",)) is not None


def test_the_handle_differs_with_the_reason() -> None:
    assert _due(reason="a").handle != _due(reason="b").handle
