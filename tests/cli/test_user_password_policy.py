"""`cryptmail user add|passwd|recover` apply the same password rules as the web."""

from __future__ import annotations

from cli.conftest import ALICE, PASSWORD, Alice, Cli

STRONG = "a long and rare passphrase"


def test_add_refuses_a_weak_password(cli: Cli) -> None:
    cli.ok("domain", "add", "example.org")
    line = cli.fails("user", "add", ALICE, "--password-stdin", stdin="x\n")
    assert "shorter than 10 characters" in line
    line = cli.fails("user", "add", ALICE, "--password-stdin", stdin="alice-in-wonderland\n")
    assert "before the @" in line
    line = cli.fails("user", "add", ALICE, "--password-stdin", stdin="1234567890\n")
    assert "most common passwords" in line
    assert "alice" not in cli.ok("user", "list").stdout


def test_add_allows_a_weak_password_when_told(cli: Cli) -> None:
    cli.ok("domain", "add", "example.org")
    cli.ok("user", "add", ALICE, "--password-stdin", "--allow-weak-password", stdin="x\n")
    assert ALICE in cli.ok("user", "list").stdout


def test_passwd_and_recover_refuse_weak_passwords(alice: Alice) -> None:
    cli = alice.cli
    line = cli.fails("user", "passwd", ALICE, "--password-stdin", stdin=f"{PASSWORD}\nab\n")
    assert "shorter than 10 characters" in line and "not accepted" in line
    code = alice.recovery_code
    line = cli.fails("user", "recover", ALICE, "--stdin", stdin=f"{code}\npassword123\n")
    assert "most common passwords" in line
    # The code was not used up by the refused attempt.
    cli.ok("user", "recover", ALICE, "--stdin", stdin=f"{code}\n{STRONG}\n")
    cli.ok(
        "user", "passwd", ALICE, "--password-stdin", "--allow-weak-password",
        stdin=f"{STRONG}\nab\n",
    )  # fmt: skip
