"""The CLI's one unlock rule: commands that read or add mail take an app password, as
IMAP does; commands that reveal or change keys and credentials need the login password."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.conftest import ALICE, PASSWORD, Alice
from cryptmail.cli._main import build_parser


def _app_password(alice: Alice) -> str:
    done = alice.cli.ok(
        "app-password", "add", ALICE, "--name", "phone", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    return done.stdout.strip()


def test_reading_mail_takes_an_app_password(alice: Alice, tmp_path: Path) -> None:
    secret = _app_password(alice)
    listing = alice.cli.ok("mailbox", "list", ALICE, "--password-stdin", stdin=f"{secret}\n")
    assert listing.stdout.split()[:2] == ["folder", "messages"]
    out = tmp_path / "export"
    alice.cli.ok("mailbox", "export", ALICE, str(out), "--password-stdin", stdin=f"{secret}\n")
    assert out.is_dir()
    assert "does not unlock" in alice.cli.fails(
        "mailbox", "list", ALICE, "--password-stdin", stdin="not it\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["key", "export", ALICE],
        ["key", "rotate", ALICE],
        ["user", "recovery-code", ALICE],
        ["key", "recovery-code", ALICE],
        ["app-password", "add", ALICE, "--name", "tablet"],
    ],
    ids=" ".join,
)
def test_keys_and_credentials_refuse_an_app_password(alice: Alice, argv: list[str]) -> None:
    secret = _app_password(alice)
    failed = alice.cli.fails(*argv, "--password-stdin", stdin=f"{secret}\n")
    assert "does not unlock" in failed


@pytest.mark.parametrize(
    ("argv", "rule"),
    [
        (["key", "export"], "app password is refused"),
        (["key", "rotate"], "not an app password"),
        (["user", "recovery-code"], "app password is refused"),
        (["key", "recovery-code"], "app password is refused"),
        (["mailbox", "export"], "or one of their app passwords"),
        (["mailbox", "list"], "or one of their app passwords"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_help_states_the_rule(
    argv: list[str], rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    assert rule in " ".join(capsys.readouterr().out.split())


def test_key_recovery_code_is_an_alias_of_user_recovery_code() -> None:
    parser = build_parser()
    user = parser.parse_args(["user", "recovery-code", ALICE, "--password-stdin"])
    key = parser.parse_args(["key", "recovery-code", ALICE, "--password-stdin"])
    assert user.handler is key.handler
    assert (user.address, user.password_stdin) == (key.address, key.password_stdin)
