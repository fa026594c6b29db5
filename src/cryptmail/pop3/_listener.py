"""The POP3 listener: plain (STLS offered) or implicit TLS (port 995), with the caps and
the stop of `cryptmail.listening`; a stop ends every session without changing its
maildrop (only QUIT does)."""

from __future__ import annotations

import asyncio
import ssl

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.listening import ConnectionLimits, Refusal, SessionListener
from cryptmail.pop3._session import Pop3Context, Session
from cryptmail.pop3._wire import err
from cryptmail.store import ChangeBus, FirstLoginImports
from cryptmail.store.blobs import BlobStore
from cryptmail.tls import make_ssl_context


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


class Pop3Listener(SessionListener):
    """POP3 on `host:port` (implicit TLS when `implicit_tls`). A stop ends every session
    without changing its maildrop: only QUIT does, and a session in the middle of QUIT's
    update finishes it (the update is shielded)."""

    def __init__(self, context: Pop3Context, host: str, port: int, *, implicit_tls: bool) -> None:
        super().__init__(
            "POP3S" if implicit_tls else "POP3",
            host,
            port,
            context.connections,
            ssl_context=context.ssl_context if implicit_tls else None,
        )
        self._context = context
        self._implicit_tls = implicit_tls

    @property
    def context(self) -> Pop3Context:
        return self._context

    def limits(self) -> ConnectionLimits:
        pop3 = self._context.config.pop3
        return ConnectionLimits("pop3", pop3.max_connections, pop3.max_connections_per_ip)

    def refusal(self, why: Refusal) -> bytes:
        if why == "server":
            return err("Too many connections to this server; try again later.", "SYS/TEMP")
        return err("Too many connections from your address.", "SYS/TEMP")

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        session = Session(self._context, reader, writer, peer_ip=ip, tls_active=self._implicit_tls)
        await session.run()
