"""What every route needs, made once per app: config, engine, throttle, unlocked-account
cache, sessions, pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from cryptmail.config import Config
from cryptmail.db import UserId
from cryptmail.keys import LoginThrottle, UnlockedAccount, UnlockedAccounts
from cryptmail.secret import Password, SecretBytes
from cryptmail.web._render import Pages
from cryptmail.web._sessions import SessionStore

STATE_KEY = "cryptmail_web"
"""Name of the WebContext in `app.state`, set by the app's lifespan."""


Readiness = Callable[[], Awaitable[list[str]]]
"""Names of the parts that are not ready (empty: all are); `serve` gives one for the
blob store, which the web package does not know."""


class ImportState(Protocol):
    """How far the import of a user's old mail is: `done` of `total` messages."""

    @property
    def done(self) -> int: ...

    @property
    def total(self) -> int: ...


class StagedImports(Protocol):
    """Where a sign-in starts the user's staged import of old mail and the account page
    reads its progress (`serve` passes store.FirstLoginImports; the web does not reach
    down to the store itself)."""

    async def after_login(
        self, account: UnlockedAccount, password: Password
    ) -> ImportState | None: ...

    async def running(self, user_id: UserId) -> ImportState | None: ...


@dataclass(frozen=True, repr=False)
class WebContext:
    config: Config
    engine: AsyncEngine
    throttle: LoginThrottle
    accounts: UnlockedAccounts
    """IMAP's unlocked accounts in this process: a password change or recovery here drops
    their cached credentials (the web itself never keeps an unlocked key)."""
    sessions: SessionStore
    pages: Pages
    admin_token: SecretBytes | None
    readiness: Readiness | None = None
    """What `/readyz` checks beyond the database (the blob store, under `serve`)."""
    imports: StagedImports | None = None
    """Staged imports of old mail (None: a sign-in starts none)."""

    def __repr__(self) -> str:
        return f"WebContext(sessions={len(self.sessions)})"


def web_context(conn: HTTPConnection) -> WebContext:
    """The app's WebContext. Raises RuntimeError outside the app's lifespan."""
    context = getattr(conn.app.state, STATE_KEY, None)
    if not isinstance(context, WebContext):
        raise RuntimeError("the web app's lifespan did not run; start it with its lifespan")
    return context


def client_ip(conn: HTTPConnection) -> str:
    """The client's address: the connection's, or the one a trusted proxy named (see
    web.trusted_proxies; the proxy middleware has put it into the scope)."""
    return conn.client.host if conn.client is not None else ""
