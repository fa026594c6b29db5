"""Everything the CLI creates under the data directory is for the owner only."""

from __future__ import annotations

import os

from .conftest import Cli


def test_data_dir_and_database_are_owner_only(cli: Cli) -> None:
    previous = os.umask(0o022)  # the child inherits it; the CLI must not rely on it
    try:
        cli.ok("db", "upgrade")
        cli.ok("domain", "add", "example.org")
    finally:
        os.umask(previous)
    paths = [cli.data_dir, *cli.data_dir.rglob("*")]
    assert any(p.name == "cryptmail.db" for p in paths)
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
