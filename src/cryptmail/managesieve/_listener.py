"""The ManageSieve listener: STARTTLS offered on a plain port (4190), a per-address and
a global connection cap, and a stop that ends every session (a script change in flight
is one transaction: it commits whole or not at all)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.keys import CredentialWatcher, LoginThrottle
from cryptmail.managesieve._session import ManagesieveContext, Session
from cryptmail.managesieve._wire import bye
from cryptmail.tls import make_ssl_context

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE_S: Final = 5.0


def make_managesieve_context(
    config: Config,
    *,
    engine: AsyncEngine,
    throttle: LoginThrottle,
    watcher: CredentialWatcher | None = None,
) -> ManagesieveContext:
    """What the sessions share; the certificate is IMAP's, the credential watcher the
    one of the process (sessions end when their password changes)."""
    return ManagesieveContext(
        config=config,
        engine=engine,
        throttle=throttle,
        ssl_context=make_ssl_context(config),
        watcher=watcher,
    )


class ManagesieveListener:
    """ManageSieve on `host:port`: the listener shape `serve` runs. Port 0 picks a free
    port; `port` tells which once started."""

    def __init__(self, context: ManagesieveContext, host: str, port: int) -> None:
        self._context = context
        self._host = host
        self._requested_port = port
        self._closed = asyncio.Event()
        self._sessions: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def context(self) -> ManagesieveContext:
        return self._context

    @property
    def name(self) -> str:
        return f"ManageSieve on {self._host}:{self._requested_port}"

    @property
    def port(self) -> int:
        assert self._server is not None  # noqa: S101 - only after start()
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and accept. Raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._accept, self._host, self._requested_port, reuse_address=True, limit=1 << 16
        )
        log.info("%s listening on port %d", self.name, self.port)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _refusal(self, ip: str) -> bytes | None:
        counts, limits = self._context.connections, self._context.config.managesieve
        if sum(counts.values()) >= limits.max_connections:
            log.warning("ManageSieve connection refused: managesieve.max_connections reached")
            return bye("Too many connections to this server; try again later.", "TRYLATER")
        if counts.get(ip, 0) >= limits.max_connections_per_ip:
            log.info("ManageSieve connection refused: managesieve.max_connections_per_ip reached")
            return bye("Too many connections from your address.", "TRYLATER")
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else "local"
        refusal = self._refusal(ip)
        if refusal is not None:
            with contextlib.suppress(OSError):
                writer.write(refusal)
                await writer.drain()
            writer.close()
            return
        counts = self._context.connections
        counts[ip] = counts.get(ip, 0) + 1
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        self._sessions.add(task)
        try:
            await Session(self._context, reader, writer, peer_ip=ip).run()
        except asyncio.CancelledError:
            pass
        except Exception:  # one connection's bug must not reach the loop
            log.exception("ManageSieve connection from a client failed")
        finally:
            self._sessions.discard(task)
            counts[ip] -= 1
            if not counts[ip]:
                del counts[ip]

    async def stop(self, grace_s: float = _SHUTDOWN_GRACE_S) -> None:
        """Close the socket and end every session, waiting at most `grace_s` (and
        _SHUTDOWN_GRACE_S) for them."""
        grace_s = min(grace_s, _SHUTDOWN_GRACE_S)
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=grace_s)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), grace_s)
        self._closed.set()
        log.info("%s stopped", self.name)
