"""The web app: routes, middleware, error table, and a lifespan that owns the engine.

Middleware, outermost first: trusted-proxy headers (only when `web.trusted_proxies` is
set), security headers, request-body limit, session cookie, CSRF check.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from cryptmail.config import Config
from cryptmail.db import create_engine
from cryptmail.errors import ConfigError
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.secret import SecretBytes
from cryptmail.web._context import STATE_KEY, Readiness, StagedImports, WebContext
from cryptmail.web._csrf import CsrfMiddleware
from cryptmail.web._failures import EXCEPTION_HANDLERS
from cryptmail.web._headers import SecurityHeadersMiddleware
from cryptmail.web._render import Pages
from cryptmail.web._routes import ROUTES
from cryptmail.web._session_middleware import SessionMiddleware
from cryptmail.web._sessions import SessionStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest request body; every form and API call fits in a few KiB."""
MIN_ADMIN_TOKEN: Final = 16


def read_admin_token(path: str) -> SecretBytes | None:
    """The admin API token from `web.admin_token_file`, or None when it is not set.

    Raises ConfigError if the file cannot be read or holds less than 16 characters.
    """
    if not path:
        return None
    file = Path(path)
    try:
        token = file.read_bytes().strip()
        mode = file.stat().st_mode
    except OSError as exc:
        raise ConfigError(
            f"web.admin_token_file = {path!r} cannot be read ({type(exc).__name__}); "
            "create it with a long random token, readable by cryptmail only"
        ) from exc
    if len(token) < MIN_ADMIN_TOKEN or b"\n" in token:
        raise ConfigError(
            f"web.admin_token_file = {path!r} must hold one token of at least "
            f"{MIN_ADMIN_TOKEN} characters on one line (e.g. `openssl rand -hex 32`)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("web.admin_token_file %s is readable by others; chmod 600 it", path)
    return SecretBytes(token)


def create_app(
    config: Config,
    engine: AsyncEngine | None = None,
    throttle: LoginThrottle | None = None,
    accounts: UnlockedAccounts | None = None,
    readiness: Readiness | None = None,
    imports: StagedImports | None = None,
) -> Starlette:
    """The self-service pages and the JSON API as one ASGI app.

    `engine`: the caller's engine (kept open at shutdown); None makes one from
    `config.database_url` in the lifespan and disposes of it afterwards. The schema must
    be migrated already. `throttle`: the LoginThrottle shared with IMAP; None makes one.
    `accounts`: IMAP's UnlockedAccounts, so a password change or recovery here drops its
    cached credentials at once; None makes an empty one (no IMAP in this process).
    `readiness`: what `/readyz` checks besides the database (see `_health`).
    `imports`: where a sign-in starts the user's staged import of old mail.
    Raises ConfigError for an unusable admin token file.
    """
    sessions = SessionStore()
    pages = Pages(min_password_length=config.web.min_password_length)
    shared_throttle = throttle if throttle is not None else LoginThrottle.from_config(config)
    admin_token = read_admin_token(config.web.admin_token_file)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        active = engine if engine is not None else create_engine(config.database_url)
        cache = accounts if accounts is not None else UnlockedAccounts.from_config(active, config)
        context = WebContext(
            config, active, shared_throttle, cache, sessions, pages, admin_token, readiness, imports
        )
        setattr(app.state, STATE_KEY, context)
        try:
            yield
        finally:
            setattr(app.state, STATE_KEY, None)
            if engine is None:
                await active.dispose()

    middleware: list[Middleware] = []
    if config.web.trusted_proxies:
        proxies = [p.strip() for p in config.web.trusted_proxies.split(",") if p.strip()]
        middleware.append(Middleware(ProxyHeadersMiddleware, trusted_hosts=proxies))
    middleware += [
        Middleware(SecurityHeadersMiddleware),
        Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES),
        Middleware(SessionMiddleware, store=sessions, secure=config.web.secure_cookies),
        Middleware(CsrfMiddleware, reject=pages.reject_form),
    ]
    return Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
