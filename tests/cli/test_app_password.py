"""`cryptmail app-password`: add (needs the user's password), list, revoke."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.conftest import ALICE, CRYPTO, PASSWORD, Alice
from cli.test_user import works
from cryptmail.db import tables as t
from cryptmail.keys import unlock_account
from cryptmail.secret import Password


async def test_add_list_revoke(alice: Alice) -> None:
    cli = alice.cli
    done = cli.ok(
        "app-password", "add", ALICE, "--name", "phone", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    secret = done.stdout.strip()
    assert re.fullmatch(r"[a-z2-7]{5}(?:-[a-z2-7]{5}){3}", secret)
    assert "shown only this once" in done.stderr
    assert await works(cli, secret)
    assert "exists already" in cli.fails(
        "app-password", "add", ALICE, "--name", "phone", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    assert "does not unlock" in cli.fails(
        "app-password", "add", ALICE, "--name", "tablet", "--password-stdin", stdin=f"{secret}\n"
    )

    listing = cli.ok("app-password", "list", ALICE).stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["name", "phone"]
    cli.ok("app-password", "revoke", ALICE, "phone")
    assert not await works(cli, secret)
    assert "no app password named 'phone'" in cli.fails("app-password", "revoke", ALICE, "phone")
    assert cli.ok("app-password", "list", ALICE).stdout.split() == ["name", "created"]


def test_help_says_the_password_is_needed(alice: Alice) -> None:
    text = alice.cli.ok("app-password", "add", "--help").stdout
    assert "login password is required" in " ".join(text.split())


async def test_revoke_says_the_re_key_waits_for_the_next_login(alice: Alice) -> None:
    """The admin holds no key of alice's: the revocation ends the app password's
    sessions and marks the account; the re-key happens at her next login, and the
    command says so instead of promising what it cannot do."""
    cli = alice.cli
    secret = cli.ok(
        "app-password", "add", ALICE, "--name", "phone", "--password-stdin", stdin=f"{PASSWORD}\n"
    ).stdout.strip()
    async with cli.engine() as engine:
        before = await account_row(engine)
    done = cli.ok("app-password", "revoke", ALICE, "phone")
    assert "replaced at the user's next login" in done.stdout + done.stderr
    assert secret not in done.stdout + done.stderr
    async with cli.engine() as engine:
        revoked = await account_row(engine)
        assert revoked == (before[0], before[1] + 1, True)
        account, _slot = await unlock_account(engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
        assert account.generation == before[0] + 1
        assert await account_row(engine) == (before[0] + 1, before[1] + 2, False)


async def account_row(engine: AsyncEngine) -> tuple[int, int, bool]:
    accounts = t.cm_accounts
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    accounts.c.generation,
                    accounts.c.credential_generation,
                    accounts.c.rekey_pending,
                )
            )
        ).one()
    return int(row[0]), int(row[1]), bool(row[2])
