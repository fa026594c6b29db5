"""The async engine: one per process, made from the configured URL.

Users give plain SQLAlchemy URLs (`sqlite:///…`, `mysql+pymysql://…`,
`postgresql://…`); we swap in the async driver of each dialect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cryptmail.errors import ConfigError

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "postgresql": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """The same URL with the async driver of its dialect."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from exc
    dialect = parsed.get_backend_name()
    if dialect not in _ASYNC_DRIVERS:
        raise ConfigError(
            f"database dialect {dialect!r} is not supported; use sqlite, mysql or postgresql"
        )
    return parsed.set(drivername=_ASYNC_DRIVERS[dialect]).render_as_string(hide_password=False)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for `url`. For SQLite: WAL, synchronous=FULL, foreign keys on."""
    target = async_url(url)
    parsed = make_url(target)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "mysql":
        kwargs.setdefault("pool_recycle", 3600)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(target, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # synchronous=FULL: a committed delivery survives power loss, not only a crash.
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=30000",
    ):
        cursor.execute(pragma)
    cursor.close()
