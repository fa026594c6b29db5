"""The IMAP listener: plain (STARTTLS offered) or implicit TLS, a per-address and a
global connection cap, and a graceful stop when the shutdown event is set.

The TLS context (the configured certificate, or a self-signed one made once in the
data directory) comes from `cryptmail.tls`, which POP3 shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import weakref
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.imap.server._fulltext import FullTextIndexes
from cryptmail.imap.server._learning import SpamLearner
from cryptmail.imap.server._session import Session
from cryptmail.keys import CredentialWatcher, LoginThrottle, UnlockedAccounts
from cryptmail.store import ChangeBus, FirstLoginImports
from cryptmail.store.blobs import BlobStore
from cryptmail.tls import make_ssl_context

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE_S = 5.0


@dataclass
class ServerContext:
    """What every session of one listener shares."""

    config: Config
    engine: AsyncEngine
    blobs: BlobStore
    bus: ChangeBus
    throttle: LoginThrottle
    accounts: UnlockedAccounts
    ssl_context: ssl.SSLContext | None
    # Ends sessions whose credentials changed; shared per engine like `accounts`.
    watcher: CredentialWatcher
    hostname: str = field(default_factory=socket.gethostname)
    learner: SpamLearner | None = None
    imports: FirstLoginImports | None = None
    """Spam learning on moves into and out of Junk; None when `spam` is not configured."""
    idle_poll_s: float | None = 2.0
    """Seconds between IDLE's own reads of the selected mailbox; None: never. `serve`
    lengthens it when the change feed carries other processes' changes to the bus."""
    fulltext: FullTextIndexes | None = None
    """The users' search indexes (shared per engine like `accounts`); None: off."""


class ImapListener:
    """IMAP on `host:port` (implicit TLS when `implicit_tls`) and its sessions: the
    listener shape `serve` runs (start, wait_closed, stop with a grace period). Port 0
    picks a free port; `port` tells which once started."""

    def __init__(self, context: ServerContext, host: str, port: int, *, implicit_tls: bool) -> None:
        self._context = context
        self._host = host
        self._requested_port = port
        self._implicit_tls = implicit_tls
        self._closed = asyncio.Event()
        # Shared by the plain and the TLS listener of one engine: the caps count
        # connections whichever port they came to.
        self._counts = _shared_counts(context.engine)
        self._sessions: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def context(self) -> ServerContext:
        return self._context

    @property
    def name(self) -> str:
        kind = "IMAPS" if self._implicit_tls else "IMAP"
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
        log.info(
            "IMAP%s listening on %s:%d", "S" if self._implicit_tls else "", self._host, self.port
        )

    async def wait_closed(self) -> None:
        """Return once `stop` has finished."""
        await self._closed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:

        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else "local"
        counts, limits = self._counts, self._context.config.imap
        refusal = None
        if counts.total >= limits.max_connections:
            refusal = b"* BYE Too many connections to this server; try again later.\r\n"
            log.warning("IMAP connection refused: imap.max_connections reached")
        elif counts.per_ip.get(ip, 0) >= limits.max_connections_per_ip:
            refusal = b"* BYE Too many connections from your address.\r\n"
        if refusal is not None:
            with contextlib.suppress(OSError):
                writer.write(refusal)
                await writer.drain()
            writer.close()
            return
        counts.per_ip[ip] = counts.per_ip.get(ip, 0) + 1
        counts.total += 1
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
            log.exception("IMAP connection from a client failed")
        finally:
            self._sessions.discard(task)
            counts.total -= 1
            counts.per_ip[ip] -= 1
            if not counts.per_ip[ip]:
                del counts.per_ip[ip]

    async def stop(self, grace_s: float = _SHUTDOWN_GRACE_S) -> None:
        """Close the socket and end every session (each says BYE), waiting at most
        `grace_s` (and _SHUTDOWN_GRACE_S) for them."""
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
        learner = self.context.learner
        if learner is not None:  # what is still queued is not learned: training is a hint
            await learner.close()
        self._closed.set()
        log.info("%s stopped", self.name)


_ACCOUNTS: weakref.WeakKeyDictionary[AsyncEngine, UnlockedAccounts] = weakref.WeakKeyDictionary()
_WATCHERS: weakref.WeakKeyDictionary[AsyncEngine, CredentialWatcher] = weakref.WeakKeyDictionary()
_FULLTEXT: weakref.WeakKeyDictionary[AsyncEngine, FullTextIndexes] = weakref.WeakKeyDictionary()


@dataclass
class _Connections:
    per_ip: dict[str, int] = field(default_factory=dict)
    total: int = 0


_CONNECTIONS: weakref.WeakKeyDictionary[AsyncEngine, _Connections] = weakref.WeakKeyDictionary()


def _shared_counts(engine: AsyncEngine) -> _Connections:
    return _CONNECTIONS.setdefault(engine, _Connections())


def _shared_accounts(engine: AsyncEngine, config: Config) -> UnlockedAccounts:
    # The plain and the TLS listener share unlocked keys, so Argon2 runs once per user.
    accounts = _ACCOUNTS.get(engine)
    if accounts is None:
        accounts = _ACCOUNTS[engine] = UnlockedAccounts.from_config(engine, config)
    return accounts


def _shared_watcher(engine: AsyncEngine) -> CredentialWatcher:
    # One poll per process for every listener's sessions.
    watcher = _WATCHERS.get(engine)
    if watcher is None:
        watcher = _WATCHERS[engine] = CredentialWatcher(engine)
    return watcher


def _shared_fulltext(engine: AsyncEngine, config: Config, blobs: BlobStore) -> FullTextIndexes:
    # One per process and engine: a user's sessions on either listener share the index.
    indexes = _FULLTEXT.get(engine)
    if indexes is None:
        indexes = _FULLTEXT[engine] = FullTextIndexes(config.imap, engine, blobs)
    return indexes


def make_context(
    config: Config,
    *,
    engine: AsyncEngine,
    blobs: BlobStore,
    bus: ChangeBus,
    throttle: LoginThrottle,
    accounts: UnlockedAccounts | None = None,
    watcher: CredentialWatcher | None = None,
    imports: FirstLoginImports | None = None,
    idle_poll_s: float | None = 2.0,
    ssl_context: ssl.SSLContext | None = None,
) -> ServerContext:
    return ServerContext(
        config=config,
        engine=engine,
        blobs=blobs,
        bus=bus,
        throttle=throttle,
        accounts=accounts or _shared_accounts(engine, config),
        # serve passes the one context IMAP and POP3 share (and SIGHUP reloads).
        ssl_context=ssl_context or make_ssl_context(config),
        watcher=watcher or _shared_watcher(engine),
        idle_poll_s=idle_poll_s,
        learner=SpamLearner(config.spam, blobs)
        if config.spam.learn_spam or config.spam.learn_ham
        else None,
        imports=imports,
        fulltext=_shared_fulltext(engine, config, blobs) if config.imap.fts_index else None,
    )
