"""`cryptmail alias`: forwardings in the ISPmail virtual_aliases table.

A source may have several destinations (one row each); `@example.org` as the source
is a catch-all for addresses of that domain that are neither a user nor an alias.
"""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import SubParsers, print_table, run_with_engine, say
from cryptmail.config import Config
from cryptmail.users import add_alias, list_aliases, remove_alias


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("alias", help="add, list and remove aliases")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    add = verbs.add_parser("add", help="forward SOURCE to DESTINATION")
    add.add_argument("source", help="address, or @domain for a catch-all")
    add.add_argument("destination", help="address that receives the mail")
    add.set_defaults(handler=_add)

    listing = verbs.add_parser("list", help="list the aliases")
    listing.set_defaults(handler=_list)

    remove = verbs.add_parser("remove", help="remove one SOURCE -> DESTINATION alias")
    remove.add_argument("source")
    remove.add_argument("destination")
    remove.set_defaults(handler=_remove)


def _add(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.begin() as conn:
            alias = await add_alias(conn, args.source, args.destination)
        say(f"alias {alias.source} -> {alias.destination} added")
        return 0

    return run_with_engine(args, work)


def _list(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            aliases = await list_aliases(conn)
        print_table(["source", "destination"], [[a.source, a.destination] for a in aliases])
        return 0

    return run_with_engine(args, work)


def _remove(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.begin() as conn:
            await remove_alias(conn, args.source, args.destination)
        say(f"alias {args.source.strip().lower()} -> {args.destination.strip().lower()} removed")
        return 0

    return run_with_engine(args, work)
