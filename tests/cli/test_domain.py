"""`cryptmail domain` and `cryptmail db`."""

from __future__ import annotations

from cli.conftest import Cli
from cryptmail.db import head_revision


def test_domain_add_and_list(cli: Cli) -> None:
    done = cli.ok("domain", "add", "Example.ORG")
    assert done.stdout == ""
    assert "example.org" in done.stderr
    cli.ok("domain", "add", "example.net")
    assert cli.ok("domain", "list").stdout.split() == ["domain", "example.net", "example.org"]
    assert "exists already" in cli.fails("domain", "add", "example.org")
    assert "not a domain" in cli.fails("domain", "add", "no spaces.org")


def test_db_upgrade_prints_the_revision(cli: Cli) -> None:
    assert cli.ok("db", "upgrade").stdout.strip() == head_revision()
    again = cli.ok("db", "upgrade")
    assert again.stdout.strip() == head_revision()
    assert "up to date" in again.stderr
