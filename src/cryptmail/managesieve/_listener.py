"""The ManageSieve listener: STARTTLS offered on a plain port (4190), with the caps and
the stop of `cryptmail.listening`; a stop ends every session (a script change in flight
is one transaction: it commits whole or not at all)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.keys import CredentialWatcher, LoginThrottle
from cryptmail.listening import ConnectionLimits, Refusal, SessionListener
from cryptmail.managesieve._session import ManagesieveContext, Session
from cryptmail.managesieve._wire import bye
from cryptmail.tls import make_ssl_context


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


class ManagesieveListener(SessionListener):
    """ManageSieve on `host:port` (STARTTLS offered). Port 0 picks a free port; `port`
    tells which once started."""

    def __init__(self, context: ManagesieveContext, host: str, port: int) -> None:
        super().__init__("ManageSieve", host, port, context.connections)
        self._context = context

    @property
    def context(self) -> ManagesieveContext:
        return self._context

    def limits(self) -> ConnectionLimits:
        limits = self._context.config.managesieve
        return ConnectionLimits(
            "managesieve", limits.max_connections, limits.max_connections_per_ip
        )

    def refusal(self, why: Refusal) -> bytes:
        if why == "server":
            return bye("Too many connections to this server; try again later.", "TRYLATER")
        return bye("Too many connections from your address.", "TRYLATER")

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        await Session(self._context, reader, writer, peer_ip=ip).run()
