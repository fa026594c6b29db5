"""Database servers for tests: connection details, and what MariaDB and PostgreSQL share."""

from __future__ import annotations

import re
import secrets
import signal
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import quote

from ._ports import LOOPBACK, free_port
from ._process import PrivateServer


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


class DatabaseServer(PrivateServer):
    """A database server on loopback that makes :attr:`database` when it starts.

    A subclass sets the name pattern and the stop signal, implements ``start()``
    (ending with ``self._database = self.create_database("cryptmail")``) and
    :meth:`_create_owned_database`.
    """

    host = LOOPBACK
    _name_pattern: ClassVar[re.Pattern[str]]
    _stop_signal: ClassVar[signal.Signals]

    def __init__(self, *, port: int | None = None, start_timeout: float = 30.0) -> None:
        self.port = port if port is not None else free_port()
        self.start_timeout = start_timeout
        self.start_seconds: float | None = None
        """Wall time the last ``start()`` took, including initialization."""
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        """The database made by ``start()``, named ``cryptmail``."""
        if self._database is None:
            raise RuntimeError(
                f"{type(self).__name__}.database is set by start(); the server is not running"
            )
        return self._database

    def create_database(self, name: str | None = None) -> Database:
        """Create a database and a same-named user with a random password that owns it.

        ``name`` defaults to a fresh random one; it must match ``[a-z_][a-z0-9_]*``.
        """
        name = name if name is not None else f"t_{secrets.token_hex(6)}"
        if not self._name_pattern.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {self._name_pattern.pattern}")
        return self._create_owned_database(name, secrets.token_urlsafe(18))

    def _create_owned_database(self, name: str, password: str) -> Database:
        """Create database ``name`` and its owner ``name`` with ``password``."""
        raise NotImplementedError

    def stop(self) -> None:
        """Shut the server down (its stop signal, SIGKILL after 20 s) and delete its folder."""
        self._discard(self._stop_signal)
        self._database = None
