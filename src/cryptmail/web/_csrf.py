"""CSRF protection for every form: a synchronizer token, used once.

Each rendered form carries a fresh random token that the server-side session remembers
(`SessionStore.issue_csrf`). A state-changing request to any page (everything but
GET/HEAD/OPTIONS outside `/api/`) must be a URL-encoded form whose `csrf_token` field is
one of its session's outstanding tokens; the token is then used up. A token of another
session, a replayed one, a missing one, or a request without a session cookie gets a
403 page before any route runs, so a new form route is protected without opting in.

The JSON API under `/api/` takes its credentials in each request and never reads the
cookie, so a forged cross-site request carries nothing that authenticates it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cryptmail.web._sessions import slot_of

log = logging.getLogger(__name__)

FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FIELDS = 32

RejectPage = Callable[[Request], Response]


class CsrfMiddleware:
    def __init__(self, app: ASGIApp, reject: RejectPage) -> None:
        self.app = app
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in _SAFE_METHODS
            or scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if not self._token_ok(scope, body):
            log.info("form refused: missing, foreign or used CSRF token on %s", scope["path"])
            await self.reject(Request(scope))(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _token_ok(self, scope: Scope, body: bytes) -> bool:
        content_type = Headers(scope=scope).get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != _FORM_TYPE:
            return False
        try:
            fields = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, max_num_fields=_MAX_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            return False
        tokens = [value for name, value in fields if name == FIELD]
        slot = slot_of(scope)
        if len(tokens) != 1 or slot.current is None:
            return False
        return slot.store.consume_csrf(slot.current, tokens[0])


async def _read_body(receive: Receive) -> bytes:
    # The body-size middleware in front bounds what this may collect.
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
