"""`cryptmail app-password`: add (needs the user's password), list, revoke."""

from __future__ import annotations

import re

from cli.conftest import ALICE, PASSWORD, Alice
from cli.test_user import works


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
