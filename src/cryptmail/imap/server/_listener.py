"""The IMAP listener: plain (STARTTLS offered) or implicit TLS, with the caps and the
graceful stop of `cryptmail.listening`.

The TLS context (the configured certificate, or a self-signed one made once in the
data directory) comes from `cryptmail.tls`, which POP3 shares.
"""

from __future__ import annotations

import asyncio
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
from cryptmail.listening import ConnectionCounts, ConnectionLimits, Refusal, SessionListener
from cryptmail.store import ChangeBus, FirstLoginImports
from cryptmail.store.blobs import BlobStore
from cryptmail.tls import make_ssl_context


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
    owns_watcher: bool = False
    """`watcher` was made here (not given by `serve`), so the listeners stop its poll."""


class ImapListener(SessionListener):
    """IMAP on `host:port` (implicit TLS when `implicit_tls`) and its sessions, each of
    which says BYE at a stop. Port 0 picks a free port; `port` tells which once
    started."""

    def __init__(self, context: ServerContext, host: str, port: int, *, implicit_tls: bool) -> None:
        # The counts are shared by the plain and the TLS listener of one engine: the
        # caps count connections whichever port they came to.
        super().__init__(
            "IMAPS" if implicit_tls else "IMAP",
            host,
            port,
            _shared_counts(context.engine),
            ssl_context=context.ssl_context if implicit_tls else None,
        )
        self._context = context
        self._implicit_tls = implicit_tls

    @property
    def context(self) -> ServerContext:
        return self._context

    def limits(self) -> ConnectionLimits:
        imap = self._context.config.imap
        return ConnectionLimits("imap", imap.max_connections, imap.max_connections_per_ip)

    def refusal(self, why: Refusal) -> bytes:
        if why == "server":
            return b"* BYE Too many connections to this server; try again later.\r\n"
        return b"* BYE Too many connections from your address.\r\n"

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        session = Session(self._context, reader, writer, peer_ip=ip, tls_active=self._implicit_tls)
        await session.run()

    async def closing(self) -> None:
        context = self._context
        if context.learner is not None:  # what is still queued is not learned: a hint
            await context.learner.close()
        # Their tasks would outlive the listener (and hold the engine) otherwise. Both
        # are shared, but a close only stops what runs now: a later session restarts it.
        if context.fulltext is not None:
            await context.fulltext.close()
        if context.owns_watcher:
            await context.watcher.close()


# What the listeners of one engine share, for as long as a context holds it. Weak
# values: each holds its engine, which as a weak key it would keep alive for good. (An
# engine collected this way once left aiosqlite connections of sessions still running
# after their stop to be closed on a closed loop; the stop now waits for them.)
_ACCOUNTS: weakref.WeakValueDictionary[AsyncEngine, UnlockedAccounts]
_ACCOUNTS = weakref.WeakValueDictionary()
_WATCHERS: weakref.WeakValueDictionary[AsyncEngine, CredentialWatcher]
_WATCHERS = weakref.WeakValueDictionary()
_FULLTEXT: weakref.WeakValueDictionary[AsyncEngine, FullTextIndexes]
_FULLTEXT = weakref.WeakValueDictionary()

# Counts hold no engine: a weak key is enough.
_CONNECTIONS: weakref.WeakKeyDictionary[AsyncEngine, ConnectionCounts]
_CONNECTIONS = weakref.WeakKeyDictionary()


def _shared_counts(engine: AsyncEngine) -> ConnectionCounts:
    return _CONNECTIONS.setdefault(engine, ConnectionCounts())


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
        owns_watcher=watcher is None,
        idle_poll_s=idle_poll_s,
        learner=SpamLearner(config.spam, blobs)
        if config.spam.learn_spam or config.spam.learn_ham
        else None,
        imports=imports,
        fulltext=_shared_fulltext(engine, config, blobs) if config.imap.fts_index else None,
    )
