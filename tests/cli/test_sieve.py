"""`cryptmail sieve`: list, put (checked), get, activate, delete a user's scripts."""

from __future__ import annotations

from pathlib import Path

from cli.conftest import ALICE, Alice

SCRIPT = 'require "fileinto";\r\nif header :contains "subject" "ocelot" { fileinto "Cats"; }\r\n'


def test_sieve_put_get_activate_delete(alice: Alice, tmp_path: Path) -> None:
    cli = alice.cli
    source = tmp_path / "filter.sieve"
    source.write_bytes(SCRIPT.encode())
    done = cli.ok("sieve", "put", ALICE, "main", str(source), "--activate")
    assert "ocelot" not in done.stdout + done.stderr
    cli.ok("sieve", "put", ALICE, "spare", "-", stdin="keep;\n")
    lines = cli.ok("sieve", "list", ALICE).stdout.splitlines()
    assert lines[0].split() == ["name", "active", "bytes", "modified"]
    assert lines[1].split()[:3] == ["main", "yes", str(len(SCRIPT))]
    assert lines[2].split()[:2] == ["spare", "6"]
    back = tmp_path / "back.sieve"
    cli.ok("sieve", "get", ALICE, "main", "--output", str(back))
    assert back.read_bytes() == SCRIPT.encode()
    assert cli.ok("sieve", "get", ALICE, "spare").stdout == "keep;\n"
    assert "deactivate it first" in cli.fails("sieve", "delete", ALICE, "main")
    cli.ok("sieve", "activate", ALICE, "")
    cli.ok("sieve", "delete", ALICE, "main")
    assert "no Sieve script" in cli.fails("sieve", "get", ALICE, "main")


def test_sieve_put_refuses_a_bad_script(alice: Alice, tmp_path: Path) -> None:
    cli = alice.cli
    source = tmp_path / "bad.sieve"
    source.write_bytes(b"keep;\nfileinto;\n")
    assert "line 2" in cli.fails("sieve", "put", ALICE, "bad", str(source))
    source.write_bytes(b"# caf\xe9\nkeep;\n")
    assert "UTF-8" in cli.fails("sieve", "put", ALICE, "bad", str(source))
    assert cli.ok("sieve", "list", ALICE).stdout.splitlines()[1:] == []
