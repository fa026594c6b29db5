"""`cryptmail mailbox list|export|encrypt USER`: folders, counts, export, sealing.

`encrypt` seals a user's plain mail (stored while crypt was 0, or imported plain) with
only the public key; it shows progress, stops cleanly on Ctrl-C, and continues where it
stopped when run again.

Export writes every folder with the bytes exactly as stored (see `_export`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._export import Exporter
from cryptmail.cli._progress import ProgressDisplay
from cryptmail.cli._runtime import (
    SubParsers,
    print_table,
    read_secrets,
    run_with_engine,
    say,
)
from cryptmail.cli._unlock import MAIL_CREDENTIAL, unlock_user
from cryptmail.config import Config
from cryptmail.db import UserId
from cryptmail.errors import ConfigError, KeyLocked
from cryptmail.keys import UnlockedAccount, active_public_key
from cryptmail.store import (
    apply_filing_notes,
    encrypt_mailboxes,
    list_mailboxes,
    list_subscriptions,
    load_messages,
    mailbox_counts,
)
from cryptmail.store.blobs import BlobStore, open_blob_store
from cryptmail.users import get_user, list_users, normalize_address

_PASSWORD_HELP = f"read {MAIL_CREDENTIAL} from standard input"


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("mailbox", help="list and export a user's folders")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="folders with message counts")
    listing.add_argument("user", help="email address")
    listing.add_argument("--password-stdin", action="store_true", help=_PASSWORD_HELP)
    listing.set_defaults(handler=_list)

    export = verbs.add_parser(
        "export",
        help="every folder as Maildir or mbox",
        description="Write every folder of the user as Maildir or mbox. It reads mail as "
        f"IMAP does, so it takes {MAIL_CREDENTIAL}. Private keys are exported by "
        "`key export`, which needs the login password.",
    )
    export.add_argument("user", help="email address")
    export.add_argument("out", help="output directory (must not exist or be empty)")
    export.add_argument("--format", choices=("maildir", "mbox"), default="maildir")
    export.add_argument("--password-stdin", action="store_true", help=_PASSWORD_HELP)
    export.set_defaults(handler=_export)

    encrypt = verbs.add_parser(
        "encrypt",
        help="seal a user's plain mail (after `user crypt USER 2`)",
        description="Seal every plain message of USER (or of every user with crypt = 2) "
        "to the user's public key. No password is needed when the user has a key pair; "
        "with --password-stdin a user without one gets it now (first login). Ctrl-C "
        "stops it; run it again to continue.",
    )
    encrypt.add_argument("user", nargs="?", help="email address")
    encrypt.add_argument("--all", action="store_true", help="every user with crypt = 2")
    encrypt.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read {MAIL_CREDENTIAL} (makes the key pair if the user has none yet)",
    )
    encrypt.set_defaults(handler=_encrypt)


async def _unlock(config: Config, engine: AsyncEngine, args: argparse.Namespace) -> UnlockedAccount:
    # Reading mail: an app password will do, as over IMAP (see `_unlock`).
    (password,) = read_secrets(args, "password_stdin", ["password"])
    email = normalize_address(args.user)
    account = await unlock_user(engine, config, email, password, app_password=True)
    # The key is open, as at a login: file what Sieve filed while nobody held it, so
    # the folder list and an export see those messages where they belong.
    await apply_filing_notes(engine, account)
    return account


def _list(args: argparse.Namespace) -> int:
    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await _unlock(config, engine, args)
        rows = []
        async with engine.connect() as conn:
            for box in await list_mailboxes(conn, account.user.id, account):
                total, _new = await mailbox_counts(conn, box.id)
                rows.append([box.name, total])
        print_table(["folder", "messages"], rows)
        return 0

    return run_with_engine(args, work)


def _encrypt(args: argparse.Namespace) -> int:
    if bool(args.all) == bool(args.user):
        raise ConfigError("give either one USER or --all")
    if args.all and args.password_stdin:
        raise ConfigError("--password-stdin needs one USER, not --all")
    password = (
        read_secrets(args, "password_stdin", ["the password"])[0] if args.password_stdin else None
    )

    async def work(config: Config, engine: AsyncEngine) -> int:
        blobs = open_blob_store(config)
        async with engine.connect() as conn:
            if args.all:
                users = [u for u in await list_users(conn) if u.crypt == 2]
            else:
                users = [await get_user(conn, normalize_address(args.user))]
        if password is not None:
            await unlock_user(engine, config, users[0].email, password, app_password=True)
        waiting = 0
        for user in users:
            async with engine.connect() as conn:
                if await active_public_key(conn, user.id) is None:
                    if not args.all:
                        raise KeyLocked(
                            f"{user.email} has no key pair yet; it is made at the first "
                            "login, or give the password with --password-stdin"
                        )
                    say(f"{user.email}: skipped, no key pair yet (made at the first login)")
                    waiting += 1
                    continue
            await encrypt_with_progress(engine, blobs, user.id, user.email)
        if waiting:
            say(f"{waiting} user(s) skipped: they get a key pair at their first login")
        return 0

    try:
        return run_with_engine(args, work)
    except KeyboardInterrupt:
        say("interrupted; nothing is lost: run the same command again to continue")
        return 130


async def encrypt_with_progress(
    engine: AsyncEngine, blobs: BlobStore, user_id: UserId, email: str
) -> None:
    display = ProgressDisplay(f"encrypt {email}", 0, 0)
    done = 0
    try:
        async for step in encrypt_mailboxes(engine, blobs, user_id):
            display.set_totals(step.total_messages, step.total_bytes)
            display.update(step.done_messages, step.done_bytes)
            done = step.done_messages
    except BaseException:
        display.abandon()
        raise
    if done:
        display.finish()
    else:
        say(f"{email}: nothing to seal, every message is sealed already")


def _export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; export into a new or empty directory")

    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await _unlock(config, engine, args)
        blobs = open_blob_store(config)
        out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a CLI run
        async with engine.connect() as conn:
            boxes = await list_mailboxes(conn, account.user.id, account)
            folders = [(box, await load_messages(conn, account, box.id)) for box in boxes]
            subscribed = await list_subscriptions(conn, account)
        display = ProgressDisplay(f"export {account.user.email}", 0, 0)
        display.set_totals(
            sum(len(rows) for _box, rows in folders),
            sum(row.size_rounded for _box, rows in folders for row in rows),
        )
        exporter = Exporter(out, account, blobs, display)
        try:
            for box, rows in folders:
                if args.format == "maildir":
                    await exporter.maildir_folder(box, rows)
                else:
                    await exporter.mbox_folder(box, rows)
            if args.format == "maildir":
                names = {box.name for box in boxes}
                exporter.subscriptions([n for n in subscribed if n in names])
        except BaseException:
            display.abandon()
            raise
        display.finish()
        say(f"exported {exporter.messages} message(s) from {len(boxes)} folder(s) to {out}")
        return 0

    return run_with_engine(args, work)
