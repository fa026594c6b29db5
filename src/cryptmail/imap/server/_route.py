"""The connection states of RFC 3501 and :class:`Route`: which handler answers a command,
in which states, and whether mailbox updates go out before its tagged reply.

The command table (:mod:`cryptmail.imap.server.commands`) is built from these; the session
reads it. Handlers never import the session at run time, so there is no import circle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

State = Literal["nonauth", "auth", "selected"]

ANY: Final[frozenset[State]] = frozenset({"nonauth", "auth", "selected"})
NONAUTH: Final[frozenset[State]] = frozenset({"nonauth"})
AUTH: Final[frozenset[State]] = frozenset({"auth", "selected"})
SELECTED: Final[frozenset[State]] = frozenset({"selected"})

Handler = Callable[["Session", Any], Awaitable[bytes]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    states: frozenset[State]
    refresh: bool = True
    """Send pending mailbox updates (EXISTS, EXPUNGE, FETCH FLAGS) before the tagged reply."""
