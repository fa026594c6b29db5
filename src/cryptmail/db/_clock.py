"""The one clock for stored times: UTC, naive (portable across SQLite, MariaDB,
PostgreSQL), whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
