"""Running the web app under uvicorn inside `cryptmail serve`.

HTTPS: put a TLS reverse proxy in front (the usual setup; set `web.trusted_proxies` to
its address so the client address and scheme come from its X-Forwarded-* headers), or
give `web.tls_cert` and `web.tls_key` and cryptmail speaks TLS itself. Either way keep
`web.secure_cookies` on; turn it off only for plain HTTP on loopback in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator
from typing import Final

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import ConfigError
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.web._app import create_app

log = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 512
"""Concurrent connections; more get 503 (throttled logins hold theirs while waiting)."""
KEEP_ALIVE_S: Final = 5
GRACEFUL_SHUTDOWN_S: Final = 10


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `cryptmail serve` owns the signals and
    sets the shutdown event."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def uvicorn_config(
    config: Config,
    host: str,
    port: int,
    *,
    engine: AsyncEngine | None = None,
    throttle: LoginThrottle | None = None,
    accounts: UnlockedAccounts | None = None,
) -> uvicorn.Config:
    """The uvicorn settings for the web listener, with the app made by `create_app`."""
    web = config.web
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("web.tls_cert and web.tls_key go together: give both or neither")
    app = create_app(config, engine=engine, throttle=throttle, accounts=accounts)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        # Proxy headers are handled inside the app, and only from web.trusted_proxies.
        proxy_headers=False,
        server_header=False,
        log_config=None,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ssl_certfile=web.tls_cert or None,
        ssl_keyfile=web.tls_key or None,
    )


async def serve_web(
    config: Config,
    host: str,
    port: int,
    *,
    engine: AsyncEngine,
    throttle: LoginThrottle,
    shutdown_event: asyncio.Event,
    accounts: UnlockedAccounts | None = None,
) -> None:
    """Serve the pages and the API on `host:port` until `shutdown_event` is set.

    `engine` (migrated schema), `throttle` and `accounts` (IMAP's unlocked accounts, whose
    cached credentials a password change here drops) are shared with the other listeners
    and stay open afterwards. Returns once open requests have finished (at most
    GRACEFUL_SHUTDOWN_S). Raises ConfigError when the listener cannot start (address in
    use, no permission, unreadable certificate) or the web config is inconsistent.
    """
    server = _Server(
        uvicorn_config(config, host, port, engine=engine, throttle=throttle, accounts=accounts)
    )
    if not config.web.tls_cert and not config.web.trusted_proxies:
        log.warning(
            "the web listener on %s:%d speaks plain HTTP and trusts no proxy: set "
            "web.trusted_proxies to the TLS reverse proxy in front, or web.tls_cert/tls_key",
            host,
            port,
        )

    async def stop_when_asked() -> None:
        await shutdown_event.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve()
    except (SystemExit, OSError) as exc:
        # uvicorn leaves with sys.exit() when it cannot bind or its startup fails; an
        # unreadable certificate is an OSError (ssl.SSLError) from loading its config.
        raise ConfigError(
            f"the web listener on {host}:{port} did not start; the log above says why "
            "(address in use, no permission, or an unreadable web.tls_cert/tls_key)"
        ) from exc
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if not server.started:
        raise ConfigError(f"the web listener on {host}:{port} did not start; see the log above")
    log.info("web listener on %s:%d stopped", host, port)
