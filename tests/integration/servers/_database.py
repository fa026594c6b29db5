"""Connection details for one database on a test server."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass(frozen=True)
class Database:
    """A database plus a user that owns it, with a password, reachable over TCP on loopback.

    ``async_url`` and ``sync_url`` are SQLAlchemy URLs; ``url`` has no driver
    name (``mysql://`` or ``postgresql://``), the form libpq and most CLIs take.
    """

    dialect: str
    async_driver: str
    sync_driver: str
    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)
    query: str = ""

    def _url(self, scheme: str) -> str:
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        suffix = f"?{self.query}" if self.query else ""
        return f"{scheme}://{auth}@{self.host}:{self.port}/{self.name}{suffix}"

    @property
    def url(self) -> str:
        """Driverless URL, e.g. ``postgresql://user:pw@127.0.0.1:5432/db``."""
        return self._url(self.dialect)

    @property
    def async_url(self) -> str:
        """SQLAlchemy URL with the asyncio driver (aiomysql or asyncpg)."""
        return self._url(f"{self.dialect}+{self.async_driver}")

    @property
    def sync_url(self) -> str:
        """SQLAlchemy URL with the blocking driver (pymysql or psycopg)."""
        return self._url(f"{self.dialect}+{self.sync_driver}")
