"""`cryptmail alias`: add, list, remove, catch-all."""

from __future__ import annotations

from cli.conftest import ALICE, Alice


def test_alias_add_list_remove(alice: Alice) -> None:
    cli = alice.cli
    cli.ok("alias", "add", "Postmaster@example.org", ALICE)
    cli.ok("alias", "add", "postmaster@example.org", "someone@elsewhere.test")
    cli.ok("alias", "add", "@example.org", ALICE)
    rows = [line.split() for line in cli.ok("alias", "list").stdout.splitlines()]
    assert rows == [
        ["source", "destination"],
        ["@example.org", ALICE],
        ["postmaster@example.org", ALICE],
        ["postmaster@example.org", "someone@elsewhere.test"],
    ]
    assert "exists already" in cli.fails("alias", "add", "@example.org", ALICE)
    assert "does not exist" in cli.fails("alias", "add", "x@example.com", ALICE)
    cli.ok("alias", "remove", "@example.org", ALICE)
    assert "no alias" in cli.fails("alias", "remove", "@example.org", ALICE)
    assert len(cli.ok("alias", "list").stdout.splitlines()) == 3
