"""`cryptmail user`: add, list, passwd, recover, crypt."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import update

from cli.conftest import ALICE, CRYPTO, PASSWORD, Alice, Cli
from cryptmail.crypto import generate_private_key, public_info
from cryptmail.db import tables as t
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import check_delivery, unlock_account
from cryptmail.secret import Password
from cryptmail.store import resolve_delivery

RECOVERY_CODE = re.compile(r"[A-Z2-7]{5}(?:-[A-Z2-7]{5}){7}")


async def works(cli: Cli, password: str, email: str = ALICE) -> bool:
    async with cli.engine() as engine:
        try:
            await unlock_account(engine, email, Password.from_str(password), CRYPTO)
        except AuthenticationFailed:
            return False
    return True


async def test_user_add_prints_the_code_alone_once(cli: Cli) -> None:
    cli.ok("domain", "add", "example.org")
    done = cli.ok(
        "user",
        "add",
        "Bob@Example.org",
        "--password-stdin",
        "--crypt",
        "0",
        "--quota",
        "1000",
        stdin="a quiet harbour at dawn\n",
    )
    assert RECOVERY_CODE.fullmatch(done.stdout.strip())
    assert done.stdout.count("\n") == 1
    assert "shown only this once" in done.stderr
    assert "Store this recovery code" in done.stderr
    assert await works(cli, "a quiet harbour at dawn", "bob@example.org")

    table = cli.ok("user", "list").stdout.splitlines()
    assert table[0].split() == ["address", "crypt", "key", "id", "curve", "created"]
    row = table[1].split()
    assert row[:2] == ["bob@example.org", "0"]
    assert re.fullmatch(r"[0-9a-f]{16}", row[2]) and row[3] == "x25519"


def test_user_add_errors(cli: Cli) -> None:
    assert "domain example.org does not exist" in cli.fails(
        "user", "add", ALICE, "--password-stdin", stdin="plenty long enough\n"
    )
    cli.ok("domain", "add", "example.org")
    assert "--password-stdin" in cli.fails("user", "add", ALICE)  # stdin is not a terminal
    assert "empty" in cli.fails("user", "add", ALICE, "--password-stdin", stdin="\n")
    assert "standard input" in cli.fails("user", "add", ALICE, "--password-stdin")
    assert "not an e-mail address" in cli.fails("user", "add", "alice", "--password-stdin")
    # No option takes a secret from the command line.
    done = cli.run("user", "add", ALICE, "--password", "secret")
    assert done.returncode == 2
    assert "secret" not in cli.ok("user", "list").stdout


async def test_passwd(alice: Alice) -> None:
    cli = alice.cli
    done = cli.ok(
        "user", "passwd", ALICE, "--password-stdin", stdin=f"{PASSWORD}\nfresh words to remember\n"
    )
    assert done.stdout == ""
    assert await works(cli, "fresh words to remember")
    assert not await works(cli, PASSWORD)
    line = cli.fails(
        "user", "passwd", ALICE, "--password-stdin", stdin=f"{PASSWORD}\nanother long phrase\n"
    )
    assert "does not unlock" in line and "nothing was changed" in line
    assert "does not exist" in cli.fails(
        "user", "passwd", "nobody@example.org", "--password-stdin", stdin="a\nb\n"
    )


async def test_recover(alice: Alice) -> None:
    cli = alice.cli
    stdin = f"{alice.recovery_code.lower()}\nrecovered at last, now\n"
    done = cli.ok("user", "recover", ALICE, "--stdin", stdin=stdin)
    fresh = done.stdout.strip()
    assert RECOVERY_CODE.fullmatch(fresh) and fresh != alice.recovery_code
    assert await works(cli, "recovered at last, now")
    assert "does not unlock" in cli.fails("user", "recover", ALICE, "--stdin", stdin=stdin)
    cli.ok("user", "recover", ALICE, "--stdin", stdin=f"{fresh}\nagain and again, anew\n")
    assert await works(cli, "again and again, anew")


@pytest.mark.parametrize("crypt", ["0", "2"])
def test_crypt(alice: Alice, crypt: str) -> None:
    done = alice.cli.ok("user", "crypt", ALICE, crypt)
    assert ("sealed" if crypt == "2" else "plain") in done.stderr
    assert alice.cli.ok("user", "list").stdout.splitlines()[1].split()[1] == crypt
    assert alice.cli.run("user", "crypt", ALICE, "1").returncode == 2


@pytest.mark.parametrize("crypt", [0, 2])
async def test_crypt_records_the_value_for_delivery(alice: Alice, crypt: int) -> None:
    """Delivery obeys a `crypt` set with the command (its MAC under the server key
    says so), where one flipped in SQL is read as 2 (tests/store/test_append.py)."""
    alice.cli.ok("user", "crypt", ALICE, str(crypt))
    async with alice.cli.engine() as engine:
        [target] = await resolve_delivery(engine, ALICE)
        check = check_delivery(
            target.user.id, target.user.crypt, target.recipient, target.delivery_mac
        )
    assert target.user.crypt == crypt
    assert check.verified and not check.crypt_changed and check.crypt == crypt


def test_crypt_refuses_to_vouch_for_a_public_key_changed_in_sql(alice: Alice) -> None:
    attacker = public_info(generate_private_key("x25519"))
    engine = create_sync_engine(f"sqlite:///{alice.cli.data_dir / 'cryptmail.db'}")
    with engine.begin() as conn:
        conn.execute(update(t.cm_key_pairs).values(public_key=attacker.encoded))
    engine.dispose()
    line = alice.cli.fails("user", "crypt", ALICE, "0")
    assert "public key in the database is not the one cryptmail recorded" in line
    assert alice.cli.ok("user", "list").stdout.splitlines()[1].split()[1] == "2"


async def test_recovery_code_is_made_with_the_password(alice: Alice) -> None:
    cli = alice.cli
    assert "does not unlock" in cli.fails(
        "user", "recovery-code", ALICE, "--password-stdin", stdin="wrong\n"
    )
    done = cli.ok("user", "recovery-code", ALICE, "--password-stdin", stdin=f"{PASSWORD}\n")
    fresh = done.stdout.strip()
    assert RECOVERY_CODE.fullmatch(fresh) and fresh != alice.recovery_code
    old = f"{alice.recovery_code}\nnope, not this code\n"
    assert "does not unlock" in cli.fails("user", "recover", ALICE, "--stdin", stdin=old)
    cli.ok("user", "recover", ALICE, "--stdin", stdin=f"{fresh}\nrecovered at last, now\n")
    assert await works(cli, "recovered at last, now")
