"""How a command handler stops: a refusal the client is told about, or a lost client.

Both the session and the command handlers import these, so they live apart from either.
"""

from __future__ import annotations

from typing import Literal

from cryptmail.errors import CryptmailError
from cryptmail.imap.wire._requests import UndecodableName


class CommandFailed(CryptmailError):
    """A handler's refusal: answered as ``tag NO|BAD [CODE] text``."""

    def __init__(
        self, text: str, code: str | None = None, status: Literal["NO", "BAD"] = "NO"
    ) -> None:
        self.text = text
        self.code = code
        self.status: Literal["NO", "BAD"] = status
        super().__init__(text)


class ConnectionClosed(CryptmailError):
    """The client went away (or timed out) in the middle of a command."""


def missing_code(name: str) -> str:
    """The code for a COPY, MOVE or APPEND target that does not exist: TRYCREATE
    (RFC 3501 7.1) unless the name cannot be created at all."""
    return "[NONEXISTENT]" if isinstance(name, UndecodableName) else "[TRYCREATE]"
