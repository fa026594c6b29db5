"""The noun table: help lines match the modules, and only the chosen noun is imported."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from cryptmail.cli import _registry


@pytest.mark.parametrize("noun", _registry.available(), ids=lambda n: n.command)
def test_help_line_matches_the_module(noun: _registry.Noun) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    _registry.register_of(noun)(sub)
    helps = {action.dest: action.help for action in sub._choices_actions}
    assert helps == {noun.command: noun.help}


@pytest.mark.parametrize(
    ("argv", "noun"),
    [
        (["--help"], None),
        ([], None),
        (["domain", "list"], "domain"),
        (["--data-dir", "/x", "domain", "list"], "domain"),
        (["--data-dir=/x", "-v", "user", "add"], "user"),
        (["--data", "/x", "--config", "c.toml", "store", "check"], "store"),
        (["--", "db"], "db"),
    ],
)
def test_chosen_noun(argv: list[str], noun: str | None) -> None:
    assert _registry.chosen_noun(argv) == noun


_PROBE = """
import sys
from cryptmail.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("sqlalchemy", "alembic", "cryptmail.crypto") if m in sys.modules)
print("heavy:" + ",".join(heavy))
"""


def _heavy_after(*argv: str) -> tuple[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=False
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("heavy:"), result.stderr
    return last.removeprefix("heavy:"), result.stdout


def test_top_level_help_lists_every_noun_without_importing_them() -> None:
    heavy, output = _heavy_after("--help")
    assert heavy == ""
    for noun in _registry.available():
        assert noun.command in output


def test_a_command_imports_its_own_noun_only() -> None:
    heavy, output = _heavy_after("domain", "--help")
    assert "usage: cryptmail domain" in output
    assert "sqlalchemy" in heavy
