"""`cryptmail user`: mail users with their keys (add, list, passwd, recover, recovery-code,
crypt).

Passwords and recovery codes come from standard input only (`--password-stdin`,
`--stdin`) or a terminal prompt, never from the command line. A new recovery code is
printed once, alone on stdout; cryptmail keeps no copy of it.
"""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import (
    RECOVERY_WARNING,
    SubParsers,
    print_table,
    read_secrets,
    run_with_engine,
    say,
    show_secret,
    when,
    wrong_credential,
)
from cryptmail.cli._unlock import KEY_CREDENTIAL, unlock_user
from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import (
    change_password,
    create_user,
    list_key_pairs,
    recover,
    renew_recovery_code,
    seal_delivery,
)
from cryptmail.secret import Password
from cryptmail.store import ensure_default_mailboxes
from cryptmail.users import check_new_password, get_user, list_users, normalize_address, set_crypt

_ALLOW_WEAK_HELP = (
    "accept a password that breaks the password rules (length, address, common "
    "passwords), e.g. when importing existing accounts"
)


def _allow_weak(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-weak-password", action="store_true", help=_ALLOW_WEAK_HELP)


def _check_new(args: argparse.Namespace, config: Config, email: str, new: Password) -> None:
    """The one password policy (users.check_new_password), unless the admin waived it."""
    if not args.allow_weak_password:
        check_new_password(new, email, min_length=config.web.min_password_length)


def _quota(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the quota is 0 (no limit) or more bytes")
    return value


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("user", help="add and manage mail users and their keys")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    add = verbs.add_parser(
        "add",
        help="add a user with a key pair and a recovery code",
        description="Add a user: its password hash, key pair, password slot and recovery "
        "slot, in one transaction. The recovery code is printed once on stdout.",
    )
    add.add_argument("address", help="e-mail address; its domain must exist")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line"
    )
    add.add_argument(
        "--crypt",
        type=int,
        choices=(0, 2),
        default=2,
        help="2: new mail is sealed (default); 0: new mail is stored plain",
    )
    add.add_argument(
        "--quota", type=_quota, default=0, metavar="BYTES", help="mailbox quota; 0: no limit"
    )
    _allow_weak(add)
    add.set_defaults(handler=_add)

    listing = verbs.add_parser("list", help="list users with their active key")
    listing.set_defaults(handler=_list)

    passwd = verbs.add_parser(
        "passwd",
        help="change a user's password",
        description="Change the password: the key is re-locked and the hash changed in one "
        "transaction. Standard input: the current password, then the new one. The current "
        "password is the login password (an app password is refused).",
    )
    passwd.add_argument("address")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the current password, then the new one, one per line",
    )
    _allow_weak(passwd)
    passwd.set_defaults(handler=_passwd)

    rec = verbs.add_parser(
        "recover",
        help="set a new password with the recovery code",
        description="Set a new password with the recovery code. The code is used up; a new "
        "one is printed once. Standard input: the recovery code, then the new password.",
    )
    rec.add_argument("address")
    rec.add_argument(
        "--stdin", action="store_true", help="read the code, then the new password, per line"
    )
    _allow_weak(rec)
    rec.set_defaults(handler=_recover)

    register_recovery_code(verbs)

    crypt = verbs.add_parser("crypt", help="seal a user's new mail (2) or store it plain (0)")
    crypt.add_argument("address")
    crypt.add_argument("crypt", type=int, choices=(0, 2), help="2: seal new mail; 0: plain")
    crypt.set_defaults(handler=_crypt)


def register_recovery_code(verbs: SubParsers, *, alias: bool = False) -> None:
    """`user recovery-code`; with `alias`, the same command under another noun (`key
    recovery-code`, kept for scripts written against it)."""
    code = verbs.add_parser(
        "recovery-code",
        help="make (or replace) a user's recovery code and print it once"
        + (" (same as `user recovery-code`)" if alias else ""),
        description="Make a new recovery code with the user's password; the old code, if "
        "any, stops working. Users whose keys were made at their first login (ISPmail rows) "
        "have none until this runs or they make one on the web account page. Standard "
        f"input: {KEY_CREDENTIAL}.",
    )
    code.add_argument("address")
    code.add_argument(
        "--password-stdin", action="store_true", help="read the login password from stdin"
    )
    code.set_defaults(handler=recovery_code)


def _add(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)
    (password,) = read_secrets(args, "password_stdin", ["the password"], confirm_last=True)

    async def work(config: Config, engine: AsyncEngine) -> int:
        _check_new(args, config, email, password)
        account = await create_user(
            engine,
            email,
            password,
            config.crypto,
            crypt=args.crypt,
            quota=args.quota,
            with_user=ensure_default_mailboxes,
        )
        async with engine.connect() as conn:
            pairs = await list_key_pairs(conn, account.user.id)
        active = next(p for p in pairs if p.active)
        say(
            f"user {email} added (crypt {args.crypt}, "
            f"key {active.key_id.hex()[:16]} {active.curve})"
        )
        if account.recovery_code is not None:
            show_secret(account.recovery_code, f"Recovery code for {email}", RECOVERY_WARNING)
        return 0

    return run_with_engine(args, work)


def _list(args: argparse.Namespace) -> int:
    async def work(_config: Config, engine: AsyncEngine) -> int:
        rows: list[list[object]] = []
        async with engine.connect() as conn:
            for user in await list_users(conn):
                active = next((p for p in await list_key_pairs(conn, user.id) if p.active), None)
                if active is None:
                    rows.append([user.email, user.crypt, "-", "-", "-"])
                else:
                    key_id = active.key_id.hex()[:16]
                    rows.append(
                        [user.email, user.crypt, key_id, active.curve, when(active.created_at)]
                    )
        print_table(["address", "crypt", "key id", "curve", "created"], rows)
        return 0

    return run_with_engine(args, work)


def _passwd(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)
    old, new = read_secrets(
        args, "password_stdin", ["the current password", "the new password"], confirm_last=True
    )

    async def work(config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            await get_user(conn, email)
        _check_new(args, config, email, new)
        try:
            dropped = await change_password(engine, email, old, new, config.crypto)
        except AuthenticationFailed as exc:
            raise wrong_credential("the current password", email) from exc
        if not dropped:
            say(f"password of {email} changed; its recovery code and app passwords still work")
            return 0
        say(f"password of {email} changed")
        for kind, name in dropped:
            # Made before slot version 2 and never used since: a re-key cannot follow it.
            if kind == "recovery":
                say(
                    f"its old recovery code no longer works: make a new one with "
                    f"`cryptmail user recovery-code {email}` and give it to the user"
                )
            else:
                say(f"its app password {name!r} no longer works: add a new one")
        return 0

    return run_with_engine(args, work)


def _recover(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)
    code, new = read_secrets(
        args, "stdin", ["the recovery code", "the new password"], confirm_last=True
    )

    async def work(config: Config, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            await get_user(conn, email)
        _check_new(args, config, email, new)
        try:
            new_code = await recover(engine, email, code.text(), new, config.crypto)
        except AuthenticationFailed as exc:
            raise wrong_credential("the recovery code", email) from exc
        say(f"password of {email} set with the recovery code; the old code no longer works")
        show_secret(new_code, f"New recovery code for {email}", RECOVERY_WARNING)
        return 0

    return run_with_engine(args, work)


def recovery_code(args: argparse.Namespace) -> int:
    """`user recovery-code` and its alias `key recovery-code`."""
    email = normalize_address(args.address)
    (password,) = read_secrets(args, "password_stdin", ["the password"])

    async def work(config: Config, engine: AsyncEngine) -> int:
        account = await unlock_user(engine, config, email, password, app_password=False)
        new_code = await renew_recovery_code(engine, account, config.crypto)
        say(f"recovery code of {email} made; the old one, if any, no longer works")
        show_secret(new_code, f"New recovery code for {email}", RECOVERY_WARNING)
        return 0

    return run_with_engine(args, work)


def _crypt(args: argparse.Namespace) -> int:
    email = normalize_address(args.address)

    async def work(_config: Config, engine: AsyncEngine) -> int:
        async with engine.begin() as conn:
            user = await get_user(conn, email)
            await set_crypt(conn, user.id, args.crypt)
            # The new value, vouched for under the server key: delivery reads a crypt
            # without it as the safer value (docs/security.md).
            await seal_delivery(conn, user.id)
            has_keys = any(p.active for p in await list_key_pairs(conn, user.id))
        state = "sealed" if args.crypt == 2 else "stored plain"
        say(f"new mail for {email} is {state} from now on; stored mail is unchanged")
        if args.crypt == 2 and not has_keys:
            say(f"note: {email} has no key pair yet; it is made at the first login")
        return 0

    return run_with_engine(args, work)
