"""`cryptmail app-password`: named extra passwords for phones and mail clients.

Each app password locks the user's account key in its own slot; making one needs the
account key, so `add` needs the user's password. Revoking deletes the slot and works
without it.
"""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import (
    SubParsers,
    print_table,
    read_secrets,
    run_with_engine,
    say,
    show_secret,
    when,
)
from cryptmail.cli._unlock import unlock_user
from cryptmail.config import Config
from cryptmail.keys import add_app_password, list_app_passwords, revoke_app_password
from cryptmail.users import get_user, normalize_address

_APP_WARNING = (
    "Enter it in the device now; it cannot be shown again. It opens the whole mailbox "
    "over IMAP: revoke it with `cryptmail app-password revoke` when the device is gone."
)


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "app-password", help="add, list and revoke app passwords (per-device passwords)"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    add = verbs.add_parser(
        "add",
        help="make a new app password and print it once (needs the user's password)",
        description="Make a new app password for a device and print it once. The app "
        "password locks the user's key in a slot of its own, and only the unlocked key "
        "can be locked again, so the user's login password is required on standard "
        "input (--password-stdin); an app password is refused.",
    )
    add.add_argument("address")
    add.add_argument("--name", required=True, help="a name for the device, e.g. phone")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the user's login password from the first line of standard input",
    )
    add.set_defaults(handler=_add)

    listing = verbs.add_parser("list", help="list a user's app passwords by name")
    listing.add_argument("address")
    listing.set_defaults(handler=_list)

    revoke = verbs.add_parser("revoke", help="revoke an app password at once")
    revoke.add_argument("address")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)


def _add(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)
    (password,) = read_secrets(args, "password_stdin", ["the user's password"])

    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await unlock_user(engine, config, email, password, app_password=False)
        secret = await add_app_password(engine, account, args.name, config.crypto)
        say(f"app password {args.name.strip()!r} added for {email}")
        show_secret(secret, f"App password {args.name.strip()!r}", _APP_WARNING)
        return 0

    return run_with_engine(args, work)


def _list(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)

    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            user = await get_user(conn, email)
        infos = await list_app_passwords(engine, user.id)
        print_table(["name", "created"], [[i.name, when(i.created_at)] for i in infos])
        return 0

    return run_with_engine(args, work)


def _revoke(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)

    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            user = await get_user(conn, email)
        await revoke_app_password(engine, user.id, args.name)
        say(f"app password {args.name.strip()!r} of {email} revoked")
        # Without the user's key there is no re-key now (keys/_app_passwords.py).
        say(
            "its sessions end now; the mail key is replaced at the user's next login, and "
            "until then a backup copy of the revoked slot still opens mail delivered meanwhile"
        )
        return 0

    return run_with_engine(args, work)
