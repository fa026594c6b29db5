"""run_with_engine: a file's error names the file; only the database's names the database."""

from __future__ import annotations

import socket
from pathlib import Path

from cli.conftest import ALICE, PASSWORD, Alice, Cli


def test_an_export_into_a_path_under_a_file_names_the_path(alice: Alice, tmp_path: Path) -> None:
    # The example: `afile` is a file, so `afile/sub` cannot be a directory.
    (tmp_path / "afile").write_text("not a directory\n")
    out = tmp_path / "afile" / "sub"
    line = alice.cli.fails(
        "mailbox", "export", ALICE, str(out), "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert f"cannot use {out}: Not a directory" in line
    assert "database" not in line


def test_an_unreachable_database_names_the_database(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://cryptmail:pw@127.0.0.1:{port}/cryptmail"
    line = cli.fails("--database-url", url, "user", "list")
    assert "the database did not answer" in line and "check database.url" in line
    assert "pw@" not in line
