"""Looks up the session named by the cookie and sets or clears the cookie on the way out.

The cookie is HttpOnly, SameSite=Strict, Path=/, without Domain, and Secure unless
`web.secure_cookies` is off; with Secure it uses the `__Host-` name prefix, so a
sibling subdomain cannot plant it. It has no Max-Age: it ends with the browser, and
the server ends it sooner (see `_sessions`). The JSON API never reads it.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cryptmail.web._sessions import SCOPE_KEY, SessionSlot, SessionStore

_MAX_COOKIE_ID = 128


def cookie_name(secure: bool) -> str:
    return "__Host-cryptmail" if secure else "cryptmail"


class SessionMiddleware:
    def __init__(self, app: ASGIApp, store: SessionStore, *, secure: bool) -> None:
        self.app = app
        self.store = store
        self.secure = secure
        self.name = cookie_name(secure)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        cookie_id = self._cookie_id(scope)
        current = self.store.get(cookie_id) if cookie_id else None
        slot = SessionSlot(self.store, cookie_id, current)
        scope[SCOPE_KEY] = slot

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = self._set_cookie(slot)
                if header is not None:
                    MutableHeaders(scope=message).append("set-cookie", header)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie_id(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name != b"cookie":
                continue
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue  # a garbled cookie header counts as none
            morsel = jar.get(self.name)
            if morsel is not None and 0 < len(morsel.value) <= _MAX_COOKIE_ID:
                return morsel.value
        return None

    def _set_cookie(self, slot: SessionSlot) -> str | None:
        current = slot.current
        if current is not None and current.id == slot.cookie_id:
            return None
        if current is None and slot.cookie_id is None:
            return None
        value = current.id if current is not None else ""
        parts = [f"{self.name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if current is None:
            parts.append("Max-Age=0")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)
