"""PostgreSQL LISTEN: one connection per node that hears the change log's NOTIFYs.

A connection of its own (asyncpg, the driver the engine uses), not one from the pool:
it stays open for the life of the node and is named `cryptmail-events` in
pg_stat_activity, so an operator can tell it from the pool's. When it is lost (the
server restarted, a network cut, `pg_terminate_backend`), `lost` is set; the caller
reconnects and catches up from the log (`_changes.read_changes`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy.engine import URL

from cryptmail.db._changes import CHANNEL
from cryptmail.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

APPLICATION_NAME: Final = "cryptmail-events"
CONNECT_TIMEOUT_S: Final = 10.0


class ChangeListener:
    """An open LISTEN connection; `open` makes one."""

    def __init__(self, connection: Any, lost: asyncio.Event) -> None:
        self._connection = connection
        self.lost = lost
        """Set when the connection is gone; no payload comes after it."""

    @classmethod
    async def open(cls, url: URL, on_payload: Callable[[str], None]) -> ChangeListener:
        """Connect to the database at `url` and LISTEN; `on_payload` gets each NOTIFY's
        payload on the running loop. Raises DatabaseUnavailable."""
        import asyncpg  # the postgresql extra; only a PostgreSQL node gets here

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(
                dsn,
                timeout=CONNECT_TIMEOUT_S,
                server_settings={"application_name": APPLICATION_NAME},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise DatabaseUnavailable(
                f"cannot open the change listener's connection to PostgreSQL "
                f"({type(exc).__name__}); is the database up?"
            ) from exc

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_payload(payload)

        connection.add_termination_listener(lambda _conn: lost.set())
        try:
            await connection.add_listener(CHANNEL, notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            connection.terminate()
            raise DatabaseUnavailable(f"LISTEN {CHANNEL} failed ({type(exc).__name__})") from exc
        return cls(connection, lost)

    @property
    def backend_pid(self) -> int:
        """The server process of this connection (pg_stat_activity.pid)."""
        return int(self._connection.get_server_pid())

    async def ping(self, timeout_s: float) -> None:
        """One round trip; raises DatabaseUnavailable (and sets `lost`) when it fails,
        so a connection that died without a word (a cut network) is noticed."""
        import asyncpg

        try:
            await self._connection.fetchval("SELECT 1", timeout=timeout_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self.lost.set()
            raise DatabaseUnavailable(
                f"the change listener's connection failed ({type(exc).__name__})"
            ) from exc

    async def close(self) -> None:
        if self._connection.is_closed():
            return
        try:
            await asyncio.wait_for(self._connection.close(), timeout=5.0)
        except Exception:  # a broken connection cannot close politely
            self._connection.terminate()
