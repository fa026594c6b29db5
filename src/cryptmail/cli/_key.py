"""`cryptmail key`: a user's key pairs (list, rotate, export); `key recovery-code` is
`user recovery-code` under this noun too.

Everything but `list` needs the user's login password on standard input (an app password
is refused, see `_unlock`): the private keys are locked under it, and the admin holds no
key that opens them.
"""

from __future__ import annotations

import argparse
import sys
import typing

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import (
    SubParsers,
    print_table,
    read_secrets,
    run_with_engine,
    say,
    when,
)
from cryptmail.cli._unlock import KEY_CREDENTIAL, unlock_user
from cryptmail.cli._user import register_recovery_code
from cryptmail.config import Config, Curve
from cryptmail.keys import (
    KEY_ROTATED,
    export_private_keys,
    list_key_pairs,
    record_event,
    rotate_key_pair,
)
from cryptmail.users import get_user, normalize_address

_STDIN_HELP = "read the user's login password (not an app password) from the first line of stdin"


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("key", help="list, rotate and export a user's keys")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="list a user's key pairs (nothing secret)")
    listing.add_argument("address")
    listing.set_defaults(handler=_list)

    rotate = verbs.add_parser(
        "rotate",
        help="make a new active key pair (old ones stay, so old mail stays readable)",
    )
    rotate.add_argument("address")
    rotate.add_argument("--password-stdin", action="store_true", help=_STDIN_HELP)
    rotate.add_argument(
        "--curve",
        choices=typing.get_args(Curve),
        default=None,
        help="curve of the new key pair; default: crypto.curve of the configuration",
    )
    rotate.set_defaults(handler=_rotate)

    export = verbs.add_parser(
        "export",
        help="write every private key of a user as PKCS#8 PEM to stdout",
        description="Write every private key of the user as PKCS#8 PEM to stdout. Standard "
        f"input: {KEY_CREDENTIAL}, then (with --passphrase-stdin) a passphrase that "
        "encrypts the PEM. Without a passphrase the keys are written in the clear.",
    )
    export.add_argument("address")
    export.add_argument("--password-stdin", action="store_true", help=_STDIN_HELP)
    export.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="read a passphrase for the PEM from the second line of standard input",
    )
    export.set_defaults(handler=_export)

    register_recovery_code(verbs, alias=True)


def _list(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)

    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            user = await get_user(conn, email)
            pairs = await list_key_pairs(conn, user.id)
        print_table(
            ["id", "curve", "created", "active"],
            [
                [p.fingerprint, p.curve, when(p.created_at), "yes" if p.active else "no"]
                for p in pairs
            ],
        )
        if not pairs:
            say(f"{email} has no key pair yet; it is made at the first login")
        return 0

    return run_with_engine(args, work)


def _rotate(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)
    (password,) = read_secrets(args, "password_stdin", ["the password"])

    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await unlock_user(engine, config, email, password, app_password=False)
        curve: Curve = args.curve or config.crypto.curve
        async with engine.begin() as conn:
            info = await rotate_key_pair(conn, account, curve)
            await record_event(conn, account.user.id, KEY_ROTATED)
        say(f"new active key of {email}: {info.key_id.hex()[:16]} {info.curve}")
        return 0

    return run_with_engine(args, work)


def _export(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)
    prompts = ["the password"]
    if args.passphrase_stdin:
        prompts.append("the export passphrase")
    secrets = read_secrets(args, "password_stdin", prompts, confirm_last=len(prompts) > 1)
    passphrase = secrets[1].reveal() if len(secrets) > 1 else None

    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await unlock_user(engine, config, email, secrets[0], app_password=False)
        pems = export_private_keys(account, passphrase)
        if passphrase is None:
            say(
                f"warning: the {len(pems)} private key(s) of {email} are written UNENCRYPTED; "
                "anyone who reads them can read this user's mail. Use --passphrase-stdin."
            )
        for pem in pems:
            sys.stdout.buffer.write(pem)
        sys.stdout.buffer.flush()
        return 0

    return run_with_engine(args, work)
