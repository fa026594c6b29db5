"""Schema migrations (Alembic), run on our async engine.

`upgrade` adds our tables next to existing ISPmail ones and leaves existing rows as
they are; on an empty database it creates the ISPmail tables too.

Alembic (with Mako and Pygments behind it, about 8 MB) is imported by the functions
that run it, not with the module: an LMTP worker process imports `cryptmail.db` and
never migrates, and `schema_is_current` lets a server whose schema is up to date (every
start but the first after an upgrade) check that without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection: Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest)."""
    from alembic import command

    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


_REVISION = re.compile(r'^revision(?:: [^=]+)? = "([^"]+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision(?:: [^=]+)? = (None|"[^"]+")$', re.MULTILINE)


def listed_head() -> str | None:
    """The newest revision, read from the scripts' own `revision = "..."` and
    `down_revision = ...` lines without importing Alembic; None when a script does not
    state both in that plain form once, or the chain has no single head (Alembic then
    decides: `head_revision`)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(found) != 1 or len(down) != 1:
            return None
        revisions.add(found[0])
        if down[0] != "None":
            downs.add(down[0].strip('"'))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


async def schema_is_current(engine: AsyncEngine) -> bool:
    """True when the database is at the newest revision, checked without Alembic where
    the scripts allow (`listed_head`); False means "ask Alembic", not "outdated"."""
    head = listed_head()
    if head is None:
        return False
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception:  # no table, no database: Alembic's path reports it
        return False
    return [row[0] for row in rows] == [head]


def head_revision() -> str | None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
