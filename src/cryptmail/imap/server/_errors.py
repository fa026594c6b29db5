"""How a command handler stops: a refusal the client is told about, or a lost client.

Both the session and the command handlers import these, so they live apart from either.
"""

from __future__ import annotations

from typing import Literal

from cryptmail.errors import CryptmailError


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
