"""`cryptmail mailbox list|export|encrypt USER`: folders, counts, export, sealing.

`encrypt` seals a user's plain mail (stored while crypt was 0, or imported plain) with
only the public key; it shows progress, stops cleanly on Ctrl-C, and continues where it
stopped when run again.

Export writes every folder with the bytes exactly as delivered. Maildir: Dovecot's
Maildir++ layout (`cur/new/tmp`, sub-folders as `.Parent.Child` in modified UTF-7),
flags in the `:2,` info part. mbox: mboxrd (`>From ` quoting, reversible), one file
per folder; mbox has no place for IMAP flags, so they are not kept there.
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._progress import ProgressDisplay
from cryptmail.cli._runtime import (
    SubParsers,
    print_table,
    read_secrets,
    run_with_engine,
    say,
    wrong_credential,
)
from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed, ConfigError, KeyLocked
from cryptmail.keys import UnlockedAccount, active_public_key, unlock_account
from cryptmail.store import (
    DELIMITER,
    Mailbox,
    MessageRow,
    encrypt_mailboxes,
    list_mailboxes,
    load_messages,
    mailbox_counts,
    open_blob,
    stream_plaintext,
)
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user, list_users, normalize_address

_MAILDIR_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}
_DELETED = "T"


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("mailbox", help="list and export a user's folders")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    listing = verbs.add_parser("list", help="folders with message counts")
    listing.add_argument("user", help="email address")
    listing.add_argument("--password-stdin", action="store_true", help="password on stdin")
    listing.set_defaults(handler=_list)

    export = verbs.add_parser("export", help="every folder as Maildir or mbox")
    export.add_argument("user", help="email address")
    export.add_argument("out", help="output directory (must not exist or be empty)")
    export.add_argument("--format", choices=("maildir", "mbox"), default="maildir")
    export.add_argument("--password-stdin", action="store_true", help="password on stdin")
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
        help="read the user's password (makes the key pair if the user has none yet)",
    )
    encrypt.set_defaults(handler=_encrypt)


def encode_utf7(name: str) -> str:
    """RFC 3501 modified UTF-7, as Dovecot names Maildir++ folders."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def maildir_folder(name: str, role: str | None) -> str:
    """The Maildir++ directory for a folder: '' for INBOX, `.A.B` for `A/B`."""
    if role == "inbox":
        return ""
    return "." + ".".join(encode_utf7(part) for part in name.split(DELIMITER))


def maildir_info(flags: frozenset[str]) -> str:
    letters = {_MAILDIR_FLAGS[f] for f in flags if f in _MAILDIR_FLAGS}
    if "\\Deleted" in flags:
        letters.add(_DELETED)
    return ":2," + "".join(sorted(letters))


async def _unlock(config: Config, engine: AsyncEngine, args: argparse.Namespace) -> UnlockedAccount:
    (password,) = read_secrets(args, "password_stdin", ["password"])
    try:
        account, _slot = await unlock_account(engine, args.user, password, config.crypto)
    except AuthenticationFailed as exc:
        raise wrong_credential("the password", args.user) from exc
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
        blobs = LocalBlobStore(config.blob_path)
        async with engine.connect() as conn:
            if args.all:
                users = [u for u in await list_users(conn) if u.crypt == 2]
            else:
                users = [await get_user(conn, normalize_address(args.user))]
        if password is not None:
            try:
                await unlock_account(engine, users[0].email, password, config.crypto)
            except AuthenticationFailed as exc:
                raise wrong_credential("the password", users[0].email) from exc
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
    engine: AsyncEngine, blobs: LocalBlobStore, user_id: int, email: str
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


def _mbox_lines(data: bytes, at_line_start: bool) -> Iterator[bytes]:
    """mboxrd quoting of one piece: `>*From ` at a line start gets one more `>`."""
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        start = at_line_start if index == 0 else True
        if start and line.lstrip(b">").startswith(b"From "):
            line = b">" + line
        yield line + (b"\n" if index < len(lines) - 1 else b"")


def _export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; export into a new or empty directory")

    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await _unlock(config, engine, args)
        blobs = LocalBlobStore(config.blob_path)
        out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a CLI run
        async with engine.connect() as conn:
            boxes = await list_mailboxes(conn, account.user.id, account)
        count = 0
        for box in boxes:
            async with engine.connect() as conn:
                rows = await load_messages(conn, account, box.id)
            if args.format == "maildir":
                count += await _maildir_folder(out, box, rows, account, blobs)
            else:
                count += await _mbox_folder(out, box, rows, account, blobs)
        say(f"exported {count} message(s) from {len(boxes)} folder(s) to {out}")
        return 0

    return run_with_engine(args, work)


async def _copy(
    target: BinaryIO, account: UnlockedAccount, blobs: LocalBlobStore, row: MessageRow, mbox: bool
) -> None:
    opened = await open_blob(blobs, account, row.blob_id, expect_sealed=row.sealed)
    at_start = True
    async for piece in stream_plaintext(blobs, opened):
        if mbox:
            for line in _mbox_lines(piece, at_start):
                target.write(line)
            at_start = piece.endswith(b"\n")
        else:
            target.write(piece)


async def _maildir_folder(
    out: Path, box: Mailbox, rows: list[MessageRow], account: UnlockedAccount, blobs: LocalBlobStore
) -> int:
    folder = out / maildir_folder(box.name, box.role)
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if box.role != "inbox":
        (folder / "maildirfolder").touch()
    lines = [f"3 V{box.uidvalidity} N{box.uidnext}"]
    for row in rows:
        uid = row.uid
        stamp = int(row.internal_date.timestamp())
        base = f"{stamp}.M{uid}P{os.getpid()}.cryptmail"
        tmp = folder / "tmp" / base
        with open(tmp, "wb") as target:  # noqa: ASYNC230 - a CLI run, one user
            await _copy(target, account, blobs, row, mbox=False)
        size = tmp.stat().st_size
        name = f"{base},S={size}{maildir_info(row.flags)}"
        os.utime(tmp, (stamp, stamp))
        tmp.rename(folder / "cur" / name)
        lines.append(f"{uid} {name.split(':')[0]}")
    (folder / "dovecot-uidlist").write_text("\n".join(lines) + "\n")
    return len(rows)


async def _mbox_folder(
    out: Path, box: Mailbox, rows: list[MessageRow], account: UnlockedAccount, blobs: LocalBlobStore
) -> int:
    path = out / (box.name.replace(DELIMITER, ".") if box.role != "inbox" else "INBOX")
    with open(path, "wb") as target:  # noqa: ASYNC230 - a CLI run, one user
        for row in rows:
            when = time.strftime(
                "%a %b %d %H:%M:%S %Y",
                row.internal_date.timetuple(),
            )
            target.write(f"From MAILER-DAEMON {when}\n".encode())
            await _copy(target, account, blobs, row, mbox=True)
            target.write(b"\n")
    return len(rows)
