"""Every noun and verb answers --help (in-process: argparse only, no database)."""

from __future__ import annotations

import pytest

from cryptmail.cli import main

COMMANDS = {
    "domain": ["add", "list"],
    "user": ["add", "list", "passwd", "recover", "recovery-code", "crypt"],
    "key": ["list", "rotate", "export", "recovery-code"],
    "app-password": ["add", "list", "revoke"],
    "alias": ["add", "list", "remove"],
    "db": ["upgrade"],
}


@pytest.mark.parametrize(
    "argv",
    [[noun] for noun in COMMANDS]
    + [[noun, verb] for noun, verbs in COMMANDS.items() for verb in verbs],
    ids=lambda argv: " ".join(argv),
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cryptmail {' '.join(argv)}")


_SWITCHES_ABOUT_SECRETS = {"--allow-weak-password"}
"""Options that name a secret but only switch a check off; they take no value."""


def test_no_option_takes_a_secret() -> None:
    """Secrets come from stdin only: no option of these commands names one."""
    from cryptmail.cli._main import build_parser

    parser = build_parser()
    seen = []
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            for option in action.option_strings:
                seen.append(option)
                if option in _SWITCHES_ABOUT_SECRETS:
                    assert action.nargs == 0, option  # a switch: it takes no value
                elif any(word in option for word in ("password", "passphrase", "code", "secret")):
                    assert option.endswith("-stdin"), option
                    assert action.nargs == 0, option
    assert "--password-stdin" in seen
