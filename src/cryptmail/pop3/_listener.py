"""The POP3 listener: plain (STLS offered) or implicit TLS (port 995), a per-address and
a global connection cap shared by both, and a stop that ends every session without
changing its maildrop (only QUIT does)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.pop3._session import Pop3Context, Session
from cryptmail.pop3._wire import err
from cryptmail.store import ChangeBus, FirstLoginImports
from cryptmail.store.blobs import BlobStore
from cryptmail.tls import make_ssl_context

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE_S: Final = 5.0


def make_pop3_context(
    config: Config,
    *,
    engine: AsyncEngine,
    blobs: BlobStore,
    bus: ChangeBus,
    throttle: LoginThrottle,
    accounts: UnlockedAccounts,
    imports: FirstLoginImports | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Pop3Context:
    """What the plain and the TLS listener share; the certificate is IMAP's."""
    return Pop3Context(
        config=config,
        engine=engine,
        blobs=blobs,
        bus=bus,
        throttle=throttle,
        accounts=accounts,
        ssl_context=ssl_context or make_ssl_context(config),
        imports=imports,
    )


class Pop3Listener:
    """POP3 on `host:port` (implicit TLS when `implicit_tls`): the listener shape `serve`
    runs. Port 0 picks a free port; `port` tells which once started."""

    def __init__(self, context: Pop3Context, host: str, port: int, *, implicit_tls: bool) -> None:
        self._context = context
        self._host = host
        self._requested_port = port
        self._implicit_tls = implicit_tls
        self._closed = asyncio.Event()
        self._sessions: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def context(self) -> Pop3Context:
        return self._context

    @property
    def name(self) -> str:
        kind = "POP3S" if self._implicit_tls else "POP3"
        return f"{kind} on {self._host}:{self._requested_port}"

    @property
    def port(self) -> int:
        assert self._server is not None  # noqa: S101 - only after start()
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and accept. Raises OSError when the address cannot be bound."""
        ssl_context = self._context.ssl_context if self._implicit_tls else None
        self._server = await asyncio.start_server(
            self._accept,
            self._host,
            self._requested_port,
            ssl=ssl_context,
            reuse_address=True,
            limit=1 << 16,
        )
        log.info("%s listening on port %d", self.name, self.port)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _refusal(self, ip: str) -> bytes | None:
        counts, limits = self._context.connections, self._context.config.pop3
        if sum(counts.values()) >= limits.max_connections:
            log.warning("POP3 connection refused: pop3.max_connections reached")
            return err("Too many connections to this server; try again later.", "SYS/TEMP")
        if counts.get(ip, 0) >= limits.max_connections_per_ip:
            log.info("POP3 connection refused: pop3.max_connections_per_ip reached")
            return err("Too many connections from your address.", "SYS/TEMP")
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
            session = Session(
                self._context, reader, writer, peer_ip=ip, tls_active=self._implicit_tls
            )
            await session.run()
        except asyncio.CancelledError:
            pass
        except Exception:  # one connection's bug must not reach the loop
            log.exception("POP3 connection from a client failed")
        finally:
            self._sessions.discard(task)
            counts[ip] -= 1
            if not counts[ip]:
                del counts[ip]

    async def stop(self, grace_s: float = _SHUTDOWN_GRACE_S) -> None:
        """Close the socket and end every session, waiting at most `grace_s` (and
        _SHUTDOWN_GRACE_S) for them. A session in the middle of QUIT's update finishes it
        (the update is shielded); any other session ends with nothing changed."""
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
