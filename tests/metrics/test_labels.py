"""Label values come from fixed sets: anything else is "other"."""

from __future__ import annotations

from cryptmail.metrics import IMAP_COMMANDS, OTHER, bounded


def test_a_known_value_passes_and_anything_else_is_other() -> None:
    assert bounded("FETCH", IMAP_COMMANDS) == "FETCH"
    assert bounded("alice@example.org", IMAP_COMMANDS) == OTHER
    assert bounded("XYZZY", IMAP_COMMANDS) == OTHER
