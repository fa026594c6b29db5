"""`cryptmail import maildir USER MAILDIR`: move a user's Dovecot Maildir in.

Keys: the user's `dovecot-attributes` (mail-crypt per-user and per-folder keys; by
default the one inside the Maildir) unlocked with the user's password, and/or a global
private key file. Secrets come from standard input or a terminal prompt, never argv.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._progress import ProgressDisplay
from cryptmail.cli._runtime import (
    SubParsers,
    read_secrets,
    run_with_engine,
    say,
)
from cryptmail.cli._unlock import unlock_user
from cryptmail.config import Config
from cryptmail.crypto.dovecot import (
    DovecotKeyring,
    keyring_from_attributes,
    load_global_private_key,
    parse_attributes,
)
from cryptmail.db import UserId
from cryptmail.db import tables as t
from cryptmail.errors import ConfigError, DovecotWrongPassword
from cryptmail.secret import Password
from cryptmail.store import (
    ImportProgress,
    StagedSource,
    import_maildir,
    list_staged,
    seal_maildir,
    stage_import,
    used_bytes,
)
from cryptmail.store.blobs import open_blob_store
from cryptmail.users import get_user, normalize_address

_MAILDIR_DESCRIPTION = """\
Import every folder of a Dovecot Maildir (Maildir++ layout) into USER's mailbox:
folders, UIDs and UIDVALIDITY (clients do not download again), flags and keywords,
internal dates, and the bytes as Dovecot served them (bare LF as CRLF). Mail
encrypted by Dovecot's mail-crypt plugin is decrypted and every check is made first;
mail is stored sealed or plain as USER's crypt setting says. Plain and encrypted
files may be mixed.

Run it again at any time: what is in already is skipped, and a run that was stopped
(Ctrl-C, a crash) continues. After a crash, `cryptmail store check --fix` removes
the few stored pieces no message points at.

Standard input (with --password-stdin), one line each, in this order:
  1. USER's password: it unlocks (or, at USER's first login, makes) USER's keys here,
     and unlocks the Dovecot user keys in dovecot-attributes. One of USER's app
     passwords also unlocks USER's keys (importing adds mail, as IMAP APPEND does);
     the Dovecot user keys then need --dovecot-password-stdin;
  2. with --dovecot-password-stdin: the password of the Dovecot user keys
     (Dovecot's mail_crypt_private_password), when it is not USER's password;
  3. with --dovecot-private-key KEY.pem, if that file is encrypted: its password
     (Dovecot's mail_crypt_global_private_key_password).
Without --password-stdin, each is asked for on the terminal.

Files in format v1 (mail_crypt_save_version = 1) have no integrity protection: they
are imported unverified and counted, unless --refuse-unverified is given.

With --at-first-login USER's password is not needed (the admin does not know it):
  * a Maildir whose mail-crypt user keys are locked by a password (ISPmail: USER's
    login password) is staged, and imported in the background at USER's next
    successful login (IMAP, POP3, web, SMTP AUTH), with the Dovecot keys unlocked by
    that login's password. Nothing is decrypted or copied now: leave the Maildir where
    it is until `cryptmail import status` says done;
  * a plain Maildir, or one encrypted to a global key (--dovecot-private-key; its
    password, if any, with --password-stdin or at the prompt), is read and sealed to
    USER's public key now, as delivery does; the messages go into USER's folders at
    the next login (folder names and flags need USER's key). The Maildir is not
    needed afterwards. USER needs keys for this (made at the first login or by
    `cryptmail user add`).
Either way the INBOX's UIDs are reserved now, so mail delivered meanwhile keeps clear
of them, and the imported messages keep Dovecot's UIDs.
"""

_STATUS_DESCRIPTION = """\
List the imports staged with `import maildir --at-first-login`: user, state (staged:
waiting for the user's login; running; done; failed), messages done of total, and when
it was staged and last seen alive. No path and no folder name is shown.
"""


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("import", help="import mail into cryptmail")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    maildir = kinds.add_parser(
        "maildir",
        help="a Dovecot Maildir, plain or encrypted by mail-crypt",
        description=_MAILDIR_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    maildir.add_argument("user", metavar="USER", help="email address (must exist here)")
    maildir.add_argument("maildir", metavar="MAILDIR", help="the user's Maildir (its INBOX)")
    maildir.add_argument(
        "--dovecot-attributes",
        metavar="FILE",
        help="the user's dovecot-attributes (default: MAILDIR/dovecot-attributes if present)",
    )
    maildir.add_argument(
        "--dovecot-private-key",
        metavar="KEY.pem",
        help="a global private key (mail_crypt_global_private_key), PEM or key string",
    )
    maildir.add_argument(
        "--password-stdin", action="store_true", help="read the passwords from standard input"
    )
    maildir.add_argument(
        "--dovecot-password-stdin",
        action="store_true",
        help="the Dovecot user keys have their own password: read it as the second line",
    )
    maildir.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out files that do not decrypt (counted) instead of stopping",
    )
    maildir.add_argument(
        "--refuse-unverified",
        action="store_true",
        help="stop at a file without integrity protection (format v1)",
    )
    maildir.add_argument(
        "--at-first-login",
        action="store_true",
        help="stage it: import it at USER's next login, with the keys that password opens",
    )
    maildir.set_defaults(handler=_maildir)
    status = kinds.add_parser(
        "status",
        help="staged first-login imports and how far they are",
        description=_STATUS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("user", metavar="USER", nargs="?", help="only this user's")
    status.set_defaults(handler=_status)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _key_file_locked(data: bytes) -> bool:
    try:
        load_global_private_key(data, None)
    except DovecotWrongPassword:
        return True
    return False


def _keyring(
    args: argparse.Namespace, attributes_path: Path | None, key_data: bytes | None
) -> tuple[DovecotKeyring, Password]:
    prompts = ["the password of " + args.user]
    if args.dovecot_password_stdin:
        prompts.append("the password of the Dovecot user keys")
    locked = key_data is not None and _key_file_locked(key_data)
    if locked:
        prompts.append("the password of the key file")
    secrets = read_secrets(args, "password_stdin", prompts)
    password = secrets[0]
    keyring = DovecotKeyring()
    if attributes_path is not None:
        dovecot_password = secrets[1] if args.dovecot_password_stdin else password
        attributes = parse_attributes(_read(attributes_path, "attributes file"))
        try:
            unlocked = keyring_from_attributes(attributes, dovecot_password)
        except DovecotWrongPassword as exc:
            raise DovecotWrongPassword(
                f"the password does not unlock the Dovecot user keys in {attributes_path}; "
                "if they have their own password, add --dovecot-password-stdin"
            ) from exc
        for key_id in unlocked:
            found = unlocked.find(key_id)
            if found is not None:
                keyring.add(found)
    if key_data is not None:
        keyring.add(load_global_private_key(key_data, secrets[-1] if locked else None))
    return keyring, password


def _summary(email: str, result: ImportProgress) -> str:
    parts = [f"{result.imported} message(s) imported into {email} from {result.folders} folder(s)"]
    if result.skipped:
        parts.append(f"{result.skipped} already there")
    if result.renumbered:
        parts.append(f"{result.renumbered} with a new UID (the folder had other mail)")
    if result.unverified:
        parts.append(f"{result.unverified} in format v1, without integrity protection")
    if result.failed:
        parts.append(f"{result.failed} unreadable and left out (see the log)")
    if result.missing:
        parts.append(f"{result.missing} listed in a dovecot-uidlist without a file")
    return "; ".join(parts)


async def _report_quota(engine: AsyncEngine, user_id: UserId, email: str) -> None:
    # An admin import moves mail that already exists: it is not refused for quota (that
    # would lose mail half-way through a move), but the admin learns the user is over it.
    async with engine.connect() as conn:
        user = await get_user(conn, email)
        used = await used_bytes(conn, user_id)
    if user.quota > 0 and used > user.quota:
        say(
            f"{email} now uses {used} bytes, over the quota of {user.quota}: imported mail "
            "is kept, but new mail and APPEND are refused until the user deletes some or "
            "virtual_users.quota is raised"
        )


def _maildir(args: argparse.Namespace) -> int:
    email = normalize_address(args.user)
    root = Path(args.maildir)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; give the user's Maildir")
    attributes_path: Path | None = None
    if args.dovecot_attributes:
        attributes_path = Path(args.dovecot_attributes)
    elif (root / "dovecot-attributes").is_file():
        attributes_path = root / "dovecot-attributes"
    if args.at_first_login:
        return _stage(args, email, root, attributes_path)
    key_data = (
        _read(Path(args.dovecot_private_key), "key file") if args.dovecot_private_key else None
    )
    keyring, password = _keyring(args, attributes_path, key_data)

    async def work(config: Config, engine: AsyncEngine) -> int:
        # Adding mail: an app password will do, as for IMAP APPEND (see `_unlock`).
        account = await unlock_user(engine, config, email, password, app_password=True)
        blobs = open_blob_store(config)
        result = await _shown(
            f"import {email}",
            import_maildir(
                engine,
                blobs,
                account,
                root,
                keyring,
                allow_unauthenticated=not args.refuse_unverified,
                skip_unreadable=args.skip_unreadable,
            ),
        )
        say(_summary(email, result))
        await _report_quota(engine, account.user.id, email)
        return 0

    try:
        return run_with_engine(args, work)
    except KeyboardInterrupt:
        say("interrupted; run the same command again to continue where it stopped")
        return 130


async def _shown(label: str, progress: AsyncIterator[ImportProgress]) -> ImportProgress:
    """Run an import to its end with its progress on the terminal; its last report."""
    display: ProgressDisplay | None = None
    result = ImportProgress()
    try:
        async for result in progress:
            if display is None:
                display = ProgressDisplay(label, result.total_messages, result.total_bytes)
            display.update(result.done_messages, result.done_bytes)
    except BaseException:
        if display is not None:
            display.abandon()
        raise
    if display is not None:
        display.finish()
    return result


def _locked_attributes(attributes: Path | None) -> bool:
    """Whether the Maildir has Dovecot user keys locked by a password."""
    if attributes is None:
        return False
    try:
        keyring_from_attributes(parse_attributes(_read(attributes, "attributes file")), None)
    except DovecotWrongPassword:
        return True
    return False


def _stage(args: argparse.Namespace, email: str, root: Path, attributes: Path | None) -> int:
    if args.password_stdin and not args.dovecot_private_key:
        raise ConfigError(
            "--at-first-login takes no password of the user: the user's login password "
            "unlocks the Dovecot keys at that login"
        )
    if args.dovecot_password_stdin:
        raise ConfigError("--at-first-login: the Dovecot user keys open with the login password")
    locked = _locked_attributes(attributes)
    if locked and args.dovecot_private_key:
        raise ConfigError(
            "this Maildir has Dovecot user keys locked by a password and a global key was "
            "given; import the two separately"
        )
    if locked:
        source = StagedSource(root.resolve(), None if attributes is None else attributes.resolve())
        return _stage_source(args, email, source)
    # Plain or global-key mail: no user secret is needed to read it; it is sealed to the
    # user's public key now and placed in the folders at the next login.
    keyring = DovecotKeyring()
    if args.dovecot_private_key:
        key_data = _read(Path(args.dovecot_private_key), "key file")
        secret = None
        if _key_file_locked(key_data):
            secret = read_secrets(args, "password_stdin", ["the password of the key file"])[0]
        keyring.add(load_global_private_key(key_data, secret))
    elif attributes is not None:
        unlocked = keyring_from_attributes(
            parse_attributes(_read(attributes, "attributes file")), None
        )
        for key_id in unlocked:
            found = unlocked.find(key_id)
            if found is not None:
                keyring.add(found)

    async def work(config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            user = await get_user(conn, email)
        blobs = open_blob_store(config)
        result = await _shown(
            f"seal {email}",
            seal_maildir(
                engine,
                blobs,
                user.id,
                root,
                keyring,
                allow_unauthenticated=not args.refuse_unverified,
                skip_unreadable=args.skip_unreadable,
            ),
        )
        say(
            f"{result.imported} message(s) of {email} sealed to the user's key; they go "
            "into the folders at the next login. The Maildir is no longer needed"
            + (f"; {result.failed} unreadable and left out" if result.failed else "")
        )
        return 0

    try:
        return run_with_engine(args, work)
    except KeyboardInterrupt:
        say("interrupted; run the same command again to start over")
        return 130


def _stage_source(args: argparse.Namespace, email: str, source: StagedSource) -> int:
    async def work(config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            user = await get_user(conn, email)
        staged = await stage_import(engine, user.id, source)
        say(
            f"staged import #{staged.id}: {staged.total_messages} message(s) for {email}, "
            "imported at the next login; keep the Maildir until `cryptmail import status` "
            "says done"
        )
        return 0

    return run_with_engine(args, work)


def _status(args: argparse.Namespace) -> int:
    async def work(config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            user_id = None
            if args.user:
                user_id = (await get_user(conn, normalize_address(args.user))).id
            emails = {
                int(row.id): str(row.email)
                for row in await conn.execute(select(t.virtual_users.c.id, t.virtual_users.c.email))
            }
        rows = await list_staged(engine, user_id)
        print("id\tuser\tstate\tmessages\tstaged\tlast seen\terror")
        for row in rows:
            print(
                f"{row.id}\t{emails.get(row.user_id, row.user_id)}\t{row.state}\t"
                f"{row.done_messages}/{row.total_messages}\t"
                f"{row.created_at:%Y-%m-%d %H:%M:%S}\t{row.heartbeat_at:%Y-%m-%d %H:%M:%S}\t"
                f"{row.error or ''}"
            )
        return 0

    return run_with_engine(args, work)
