"""`cryptmail db`: schema migrations.

`db upgrade` adds cryptmail's tables next to an existing ISPmail schema (its rows stay
as they are) or creates everything in an empty database. MariaDB and PostgreSQL
databases must be upgraded with it before other commands run; the embedded SQLite
database is upgraded automatically.
"""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import SubParsers, run_with_engine, say
from cryptmail.config import Config
from cryptmail.db import current_revision, head_revision, upgrade


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("db", help="database schema migrations")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    up = verbs.add_parser(
        "upgrade",
        help="migrate the database schema to this version of cryptmail",
        description="Migrate the schema (Alembic) and print the current revision. Existing "
        "ISPmail tables and rows are kept.",
    )
    up.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        before = await current_revision(engine)
        await upgrade(engine)
        after = await current_revision(engine)
        if before == after:
            say(f"the schema was up to date (head {head_revision()})")
        else:
            say(f"schema migrated from {before or 'nothing'} to {after}")
        print(after)
        return 0

    return run_with_engine(args, work, check_schema=False)
