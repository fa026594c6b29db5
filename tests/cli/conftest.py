"""Fixtures for the command-line tests: a `cryptmail` runner on a throwaway data dir.

Every command runs as `python -m cryptmail --config ... --data-dir ...` in a subprocess,
with Argon2 at the smallest cost the config accepts. `alice` starts from a copy of a
data dir where example.org and alice@example.org exist already (made once per session
through the API), which saves two process starts per test.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import create_user, install_server_key, load_server_key, server_key
from cryptmail.secret import Password
from cryptmail.users import add_domain

CONFIG = "[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n"
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
ALICE = "alice@example.org"
PASSWORD = "alice's first password"  # test password


@dataclass(frozen=True)
class Cli:
    """Runs `cryptmail` on one data directory."""

    data_dir: Path
    config: Path

    def run(
        self, *args: str, stdin: str = "", verbose: bool = False
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cryptmail", "--config", str(self.config)]
        command += ["--data-dir", str(self.data_dir), *(["-v"] if verbose else []), *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)

    def ok(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run and insist on exit 0."""
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done

    def fails(self, *args: str, stdin: str = "") -> str:
        """Run and insist on exit 1 with one line on stderr; return that line."""
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cryptmail: "), done.stderr
        assert "Traceback" not in done.stderr
        return lines[0]

    @asynccontextmanager
    async def engine(self) -> AsyncIterator[AsyncEngine]:
        """The data dir's database, for checking what a command did through the API,
        with the data dir's server key as the commands use it."""
        engine = create_engine(f"sqlite:///{self.data_dir / 'cryptmail.db'}")
        session_key = server_key()
        install_server_key(load_server_key(self.data_dir / "server.key"))
        try:
            yield engine
        finally:
            install_server_key(session_key)
            await engine.dispose()


@dataclass(frozen=True)
class Alice:
    cli: Cli
    recovery_code: str


def _new_cli(path: Path) -> Cli:
    path.mkdir(parents=True, exist_ok=True)
    config = path / "cryptmail.toml"
    config.write_text(CONFIG)
    return Cli(path / "data", config)


async def _with_alice(cli: Cli) -> str:
    engine = create_engine(f"sqlite:///{cli.data_dir / 'cryptmail.db'}")
    # The key rows are sealed under the server key the commands will read.
    session_key = server_key()
    install_server_key(load_server_key(cli.data_dir / "server.key"))
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        new = await create_user(engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
    finally:
        install_server_key(session_key)
        await engine.dispose()
    assert new.recovery_code is not None
    return new.recovery_code


@pytest.fixture(scope="session")
def alice_template(tmp_path_factory: pytest.TempPathFactory) -> Alice:
    cli = _new_cli(tmp_path_factory.mktemp("alice-template"))
    return Alice(cli, asyncio.run(_with_alice(cli)))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A runner on an empty data directory."""
    return _new_cli(tmp_path)


@pytest.fixture
def alice(alice_template: Alice, tmp_path: Path) -> Alice:
    """A runner on a data directory with example.org and alice@example.org (PASSWORD)."""
    cli = _new_cli(tmp_path)
    shutil.copytree(alice_template.cli.data_dir, cli.data_dir)
    return Alice(cli, alice_template.recovery_code)
