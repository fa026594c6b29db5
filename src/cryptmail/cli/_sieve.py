"""`cryptmail sieve`: a user's Sieve scripts, as ManageSieve keeps them.

Scripts are sealed under the server key, so the admin needs no password of the user's.
`put` reads the script from a file (or standard input with `-`) and checks it as
PUTSCRIPT does; `get` writes it to standard output or a file. No script text or name
is logged: only user ids, sizes and outcomes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import SubParsers, print_table, run_with_engine, say, when
from cryptmail.concurrency import run_blocking
from cryptmail.config import Config
from cryptmail.db import UserId
from cryptmail.errors import ConfigError
from cryptmail.sieve import (
    ScriptLimits,
    compile_script,
    delete_script,
    get_script,
    list_scripts,
    put_script,
    set_active,
)
from cryptmail.users import get_user


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("sieve", help="list, read, store and activate users' Sieve scripts")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="list the user's scripts")
    listing.add_argument("user", help="the user's address")
    listing.set_defaults(handler=_list)

    get = verbs.add_parser("get", help="write a script to standard output or a file")
    get.add_argument("user")
    get.add_argument("name", help="the script's name")
    get.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    get.set_defaults(handler=_get)

    put = verbs.add_parser("put", help="store a script read from FILE (checked first)")
    put.add_argument("user")
    put.add_argument("name")
    put.add_argument("file", help="the script, UTF-8; - for standard input")
    put.add_argument("--activate", action="store_true", help="make it the active script")
    put.set_defaults(handler=_put)

    activate = verbs.add_parser("activate", help="make NAME the active script")
    activate.add_argument("user")
    activate.add_argument("name", help='the script; "" leaves none active')
    activate.set_defaults(handler=_activate)

    delete = verbs.add_parser("delete", help="delete a script (not the active one)")
    delete.add_argument("user")
    delete.add_argument("name")
    delete.set_defaults(handler=_delete)


async def _user_id(engine: AsyncEngine, address: str) -> UserId:
    async with engine.connect() as conn:
        return (await get_user(conn, address)).id


def _list(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        scripts = await list_scripts(engine, await _user_id(engine, args.user))
        rows = [[s.name, "yes" if s.active else "", s.size, when(s.modified_at)] for s in scripts]
        print_table(["name", "active", "bytes", "modified"], rows)
        return 0

    return run_with_engine(args, work)


def _get(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        text = await get_script(engine, await _user_id(engine, args.user), args.name)
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text, encoding="utf-8", newline="")
        return 0

    return run_with_engine(args, work)


def _read(file: str) -> str:
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: a Sieve script must be UTF-8") from None


def _put(args: argparse.Namespace) -> int:
    async def work(config: Config, engine: AsyncEngine) -> int:
        text = _read(args.file)
        limits = ScriptLimits.from_config(config)
        # The check PUTSCRIPT makes: SieveSyntaxError names the line.
        await run_blocking(
            compile_script,
            text,
            name=args.name,
            max_size=limits.max_script_size,
            max_commands=config.sieve.max_commands,
        )
        user_id = await _user_id(engine, args.user)
        await put_script(engine, user_id, args.name, text, limits)
        if args.activate:
            await set_active(engine, user_id, args.name)
        say(f"script stored for {args.user}{' and made active' if args.activate else ''}")
        return 0

    return run_with_engine(args, work)


def _activate(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        await set_active(engine, await _user_id(engine, args.user), args.name)
        say(
            f"active script of {args.user} set"
            if args.name
            else f"no script of {args.user} is active now"
        )
        return 0

    return run_with_engine(args, work)


def _delete(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        await delete_script(engine, await _user_id(engine, args.user), args.name)
        say(f"script of {args.user} deleted")
        return 0

    return run_with_engine(args, work)
