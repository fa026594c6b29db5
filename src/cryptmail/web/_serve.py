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
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Final

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import ConfigError
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.tls import reload_certificate
from cryptmail.web._app import create_app
from cryptmail.web._context import Readiness, StagedImports

log = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 512
"""Concurrent connections; more get 503."""
KEEP_ALIVE_S: Final = 5
GRACEFUL_SHUTDOWN_S: Final = 10


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `cryptmail serve` owns the signals and
    sets the shutdown event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.up.set()


def uvicorn_config(
    config: Config,
    host: str,
    port: int,
    *,
    engine: AsyncEngine | None = None,
    throttle: LoginThrottle | None = None,
    accounts: UnlockedAccounts | None = None,
    readiness: Readiness | None = None,
    imports: StagedImports | None = None,
) -> uvicorn.Config:
    """The uvicorn settings for the web listener, with the app made by `create_app`."""
    web = config.web
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("web.tls_cert and web.tls_key go together: give both or neither")
    app = create_app(
        config,
        engine=engine,
        throttle=throttle,
        accounts=accounts,
        readiness=readiness,
        imports=imports,
    )
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


class WebServer:
    """The pages and the API on `host:port` under uvicorn: the listener shape `serve`
    runs (start, wait_closed, stop with a grace period).

    `engine` (migrated schema), `throttle` and `accounts` (IMAP's unlocked accounts, whose
    cached credentials a password change here drops) are shared with the other listeners
    and stay open after the stop. Raises ConfigError (at construction or at `start`) when
    the web config is inconsistent or the listener cannot start (address in use, no
    permission, unreadable certificate).
    """

    def __init__(
        self,
        config: Config,
        host: str,
        port: int,
        *,
        engine: AsyncEngine,
        throttle: LoginThrottle,
        accounts: UnlockedAccounts | None = None,
        readiness: Readiness | None = None,
        imports: StagedImports | None = None,
    ) -> None:
        self.throttle = throttle
        self.accounts = accounts
        self._config = config
        self._host = host
        self._port = port
        self._server = _Server(
            uvicorn_config(
                config,
                host,
                port,
                engine=engine,
                throttle=throttle,
                accounts=accounts,
                readiness=readiness,
                imports=imports,
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"web on {self._host}:{self._port}"

    def reload_tls(self) -> bool:
        """SIGHUP: load `web.tls_cert`/`web.tls_key` again into the context uvicorn
        serves with (new handshakes get the renewal); False when the web speaks plain
        HTTP or has not started. Raises ConfigError, keeping the old certificate."""
        web = self._config.web
        context = getattr(self._server.config, "ssl", None)  # set by uvicorn at start
        if not web.tls_cert or context is None:
            return False
        reload_certificate(context, Path(web.tls_cert), Path(web.tls_key))
        return True

    async def start(self) -> None:
        """Return once uvicorn accepts connections."""
        if not self._config.web.tls_cert and not self._config.web.trusted_proxies:
            log.warning(
                "the web listener on %s:%d speaks plain HTTP and trusts no proxy: set "
                "web.trusted_proxies to the TLS reverse proxy in front, or web.tls_cert/tls_key",
                self._host,
                self._port,
            )
        self._task = asyncio.create_task(self._serve())
        up = asyncio.create_task(self._server.up.wait())
        await asyncio.wait([up, self._task], return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        if not self._server.started:
            await self._task  # raises its ConfigError
            raise ConfigError(
                f"the web listener on {self._host}:{self._port} did not start; see the log above"
            )

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except (SystemExit, OSError) as exc:
            # uvicorn leaves with sys.exit() when it cannot bind or its startup fails; an
            # unreadable certificate is an OSError (ssl.SSLError) from loading its config.
            raise ConfigError(
                f"the web listener on {self._host}:{self._port} did not start; the log above "
                "says why (address in use, no permission, or an unreadable "
                "web.tls_cert/tls_key)"
            ) from exc
        if not self._server.started:
            raise ConfigError(
                f"the web listener on {self._host}:{self._port} did not start; see the log above"
            )

    async def wait_closed(self) -> None:
        if self._task is not None:
            await self._task

    async def stop(self, grace_s: float) -> None:
        """Let open requests finish (at most `grace_s`, and uvicorn's own
        GRACEFUL_SHUTDOWN_S), then close."""
        self._server.should_exit = True
        if self._task is None:
            return
        done, _ = await asyncio.wait([self._task], timeout=grace_s)
        if not done:
            self._server.force_exit = True
            await asyncio.wait([self._task], timeout=5)
        log.info("web listener on %s:%d stopped", self._host, self._port)
