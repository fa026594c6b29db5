"""`cryptmail domain`: the mail domains this server accepts (ISPmail virtual_domains)."""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import SubParsers, print_table, run_with_engine, say
from cryptmail.config import Config
from cryptmail.users import add_domain, list_domains


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("domain", help="add and list mail domains")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    add = verbs.add_parser("add", help="accept mail for a domain")
    add.add_argument("name", help="domain name, e.g. example.org")
    add.set_defaults(handler=_add)

    listing = verbs.add_parser("list", help="list the domains")
    listing.set_defaults(handler=_list)


def _add(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.begin() as conn:
            await add_domain(conn, args.name)
        say(f"domain {args.name.strip().lower()} added")
        return 0

    return run_with_engine(args, work)


def _list(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            names = await list_domains(conn)
        print_table(["domain"], [[name] for name in names])
        return 0

    return run_with_engine(args, work)
