"""What Sieve sends: the vacation reply's headers, and a relay that is not there."""

from __future__ import annotations

import socket

import pytest

from cryptmail.delivery._relay import RelayFailed, send_vacation, vacation_message
from cryptmail.sieve import Vacation

REPLY = Vacation(
    to="alice@example.net",
    sender="bob@example.org",
    subject="Away",
    reason="Back on Monday.",
    seconds=86_400,
    handle="h",
    in_reply_to="<1@example.net>",
)


def test_the_reply_is_marked_automatic_and_threaded() -> None:
    data = vacation_message(REPLY)
    assert b"Auto-Submitted: auto-replied" in data
    assert b"In-Reply-To: <1@example.net>" in data and b"To: alice@example.net" in data
    assert b"Back on Monday." in data


def test_a_mime_reason_is_the_body_entity_itself() -> None:
    mime = Vacation(
        **{**REPLY.__dict__, "mime": True, "reason": "Content-Type: text/plain\n\nHi\n"}
    )
    data = vacation_message(mime)
    assert b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHi\r\n" in data


async def test_a_relay_that_is_not_there_raises_relay_failed() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(RelayFailed):
        await send_vacation(f"127.0.0.1:{port}", REPLY)
