"""The accept loop IMAP, POP3 and ManageSieve share: bind, cap connections in all and
per client address, run one session per connection as a task, and a stop that ends
every session within a grace period.

Each protocol's listener subclasses `SessionListener` with what differs: its caps (from
its config section), the line that refuses a connection over a cap, and the session
it runs. The plain and the TLS listener of one protocol share a `ConnectionCounts`, so
the caps hold whichever port a client came to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Final, Literal

log = logging.getLogger(__name__)

STOP_GRACE_S: Final = 5.0
"""The most a stop waits for the sessions it ended, whatever grace the caller gives."""
_READ_LIMIT: Final = 1 << 16

# The session limits POP3 and ManageSieve share (a line protocol with a login).
PREAUTH_TIMEOUT_S: Final = 60.0
"""Seconds a connection may wait before it logs in."""
MAX_BAD_COMMANDS: Final = 20
"""Bad commands in a row before the connection is closed (Dovecot's limit)."""
MAX_FAILED_LOGINS: Final = 3
"""Wrong passwords on one connection before it is closed (the throttle counts them too)."""
READ_SIZE: Final = 1 << 16
"""Bytes a session reads at once, and the output it lets queue before it waits."""

Refusal = Literal["server", "address"]
"""Why a connection is refused: the service's cap in all, or its cap per address."""


@dataclass
class ConnectionCounts:
    """Open connections of one protocol, in all and per client address."""

    per_ip: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def add(self, ip: str) -> None:
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        self.total += 1

    def remove(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if not self.per_ip[ip]:
            del self.per_ip[ip]


@dataclass(frozen=True)
class ConnectionLimits:
    """A protocol's caps and the config section that sets them (named in the log)."""

    section: str
    max_connections: int
    max_connections_per_ip: int


class SessionListener(ABC):
    """One protocol on `host:port` (implicit TLS when given `ssl_context`): the listener
    shape `serve` runs (start, wait_closed, stop with a grace period). Port 0 picks a
    free port; `port` tells which once started."""

    def __init__(
        self,
        kind: str,
        host: str,
        port: int,
        counts: ConnectionCounts,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._kind = kind
        self._host = host
        self._requested_port = port
        self._counts = counts
        self._ssl_context = ssl_context
        self._closed = asyncio.Event()
        self._sessions: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def name(self) -> str:
        return f"{self._kind} on {self._host}:{self._requested_port}"

    @property
    def port(self) -> int:
        assert self._server is not None  # noqa: S101 - only after start()
        return int(self._server.sockets[0].getsockname()[1])

    @abstractmethod
    def limits(self) -> ConnectionLimits:
        """The caps now (read at each connection: the config object may be replaced)."""

    @abstractmethod
    def refusal(self, why: Refusal) -> bytes:
        """What a refused client reads before the connection closes."""

    @abstractmethod
    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        """Run one connection's session to its end."""

    async def closing(self) -> None:  # noqa: B027 - a hook; most listeners need none
        """After the sessions ended, before `wait_closed` returns: the subclass's own
        clean-up."""

    async def start(self) -> None:
        """Bind and accept. Raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._accept,
            self._host,
            self._requested_port,
            ssl=self._ssl_context,
            reuse_address=True,
            limit=_READ_LIMIT,
        )
        log.info("%s listening on port %d", self.name, self.port)

    async def wait_closed(self) -> None:
        """Return once `stop` has finished."""
        await self._closed.wait()

    def _over_cap(self, ip: str) -> Refusal | None:
        limits = self.limits()
        if self._counts.total >= limits.max_connections:
            log.warning(
                "%s connection refused: %s.max_connections reached", self._kind, limits.section
            )
            return "server"
        if self._counts.per_ip.get(ip, 0) >= limits.max_connections_per_ip:
            log.info(
                "%s connection refused: %s.max_connections_per_ip reached",
                self._kind,
                limits.section,
            )
            return "address"
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else "local"
        why = self._over_cap(ip)
        if why is not None:
            with contextlib.suppress(OSError):
                writer.write(self.refusal(why))
                await writer.drain()
            writer.close()
            return
        self._counts.add(ip)
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        self._sessions.add(task)
        try:
            await self.serve(reader, writer, ip)
        except asyncio.CancelledError:
            pass
        except Exception:  # one connection's bug must not reach the loop
            log.exception("%s connection from a client failed", self._kind)
        finally:
            self._sessions.discard(task)
            self._counts.remove(ip)
            writer.close()  # a session that failed has not closed its connection

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Close the socket and end every session (cancelled: each protocol's session
        says goodbye its own way), waiting at most `grace_s` (and STOP_GRACE_S)."""
        grace_s = min(grace_s, STOP_GRACE_S)
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=grace_s)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), grace_s)
        await self.closing()
        self._closed.set()
        log.info("%s stopped", self.name)
