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
ABORT_WAIT_S: Final = 1.0
"""After the grace, how long a stop waits for sessions whose connections it aborted."""
CLOSE_FLUSH_S: Final = 2.0
"""How long a closed connection may take to hand the client what was written to it."""
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
        self._sessions: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._ending: set[asyncio.Task[None]] = set()  # sessions hanging up
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
        self._sessions[task] = writer
        try:
            await self.serve(reader, writer, ip)
        except asyncio.CancelledError:
            pass
        except Exception:  # one connection's bug must not reach the loop
            log.exception("%s connection from a client failed", self._kind)
        finally:
            self._ending.add(task)  # a stop lets it hang up in peace
            try:
                await _hang_up(writer)  # a session that failed has not closed its connection
            finally:
                del self._sessions[task]
                self._ending.discard(task)
                self._counts.remove(ip)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Close the socket and end every session (cancelled: each protocol's session
        says goodbye its own way), waiting at most `grace_s` (and STOP_GRACE_S) for
        them to end, then up to ABORT_WAIT_S more for those whose connections it cut."""
        grace_s = min(grace_s, STOP_GRACE_S)
        if self._server is not None:
            self._server.close()
        await self._end_sessions(grace_s)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), grace_s)
        await self.closing()
        self._closed.set()
        log.info("%s stopped", self.name)

    async def _end_sessions(self, grace_s: float) -> None:
        """Cancel the sessions and wait until each has ended, its clean-up included.

        Only then may the caller dispose the engine: a session still running would be
        inside a query on a disposed engine, or on a closed event loop. Once: a second
        cancel would cut short the database driver's own clean-up of the query it broke
        off (SQLAlchemy's graceful close, left running alone). At the end of the grace
        the connections still open are aborted and their sessions cancelled again (one
        that swallowed the first cancel, or is blocked on its client, then ends)."""
        for task in self._sessions:
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=grace_s)
        if not self._sessions:
            return
        for task, writer in self._sessions.items():
            writer.transport.abort()
            if task not in self._ending:
                task.cancel()
        await asyncio.wait(list(self._sessions), timeout=ABORT_WAIT_S)
        if self._sessions:
            log.warning(
                "%s: %d sessions did not end within %.0f s of the stop; left running",
                self.name,
                len(self._sessions),
                grace_s + ABORT_WAIT_S,
            )


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    """Close a session's connection: what it wrote goes out first, for up to
    CLOSE_FLUSH_S; a client that stopped reading gets the connection cut (else its
    transport stayed open, holding its descriptor, for as long as the client lived)."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_FLUSH_S):
            await writer.wait_closed()
    except Exception:  # noqa: S110 - whatever the reason, the abort below ends it
        pass
    finally:
        writer.transport.abort()
