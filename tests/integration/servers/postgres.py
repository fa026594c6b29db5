"""A private PostgreSQL server on loopback, with its own cluster folder."""

from __future__ import annotations

import glob
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

from ._binaries import find_binary
from ._database import Database, DatabaseServer
from ._errors import ServerStartError
from ._process import run_checked, spawn, wait_answering

BINDIR_ENV = "CRYPTMAIL_PG_BINDIR"

# Durability is traded for speed: tests kill cryptmail, never the database.
_SERVER_OPTIONS = ("fsync=off", "full_page_writes=off", "max_connections=200")


def _debian_bindirs() -> list[str]:
    """Debian's /usr/lib/postgresql/N/bin folders, newest major version first."""
    found = glob.glob("/usr/lib/postgresql/*/bin")

    def major(path: str) -> int:
        version = Path(path).parent.name
        return int(version) if version.isdigit() else 0

    return sorted(found, key=major, reverse=True)


def _service_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerStartError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as; "
            "run `bash scripts/install-deps.sh` (the postgresql package creates that user)"
        ) from exc
    return entry.pw_uid, entry.pw_gid


class Postgres(DatabaseServer):
    """A throwaway ``postgres`` on 127.0.0.1.

    As root, the cluster is owned by and runs as the ``postgres`` system user.
    ``start()`` runs initdb (local connections trusted, TCP ones need a
    password), starts the server, waits until ``psql`` gets an answer over the
    unix socket and creates :attr:`database`. More databases come from
    :meth:`create_database`. ``stop()`` does a fast shutdown and deletes the
    folder (set CRYPTMAIL_KEEP_SERVER_DIRS=1 to keep it).
    """

    _name_pattern = re.compile(r"[a-z_][a-z0-9_]{0,62}")
    _stop_signal = signal.SIGINT  # a fast shutdown
    _psql = "psql"

    @property
    def socket_dir(self) -> Path:
        return self._dir / "sock"

    @property
    def log_path(self) -> Path:
        return self._dir / "postgres.log"

    def _binary(self, name: str) -> str:
        override = os.environ.get(BINDIR_ENV)
        dirs = [override] if override else _debian_bindirs()
        return find_binary(name, package="postgresql", extra_dirs=dirs)

    def start(self) -> None:
        """Initialize, start and wait for the server; create the ``cryptmail`` database.

        Raises:
            BinaryMissing: initdb, postgres or psql is not installed.
            ServerStartError: the server did not answer within ``start_timeout``.
        """
        started = time.monotonic()
        initdb, postgres = self._binary("initdb"), self._binary("postgres")
        self._psql = self._binary("psql")
        owner = _service_user()
        with self._new_folder("cryptmail-postgres-", owner=owner):
            run_checked(
                [
                    initdb,
                    "-D",
                    str(self._dir / "data"),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                what="initializing the PostgreSQL cluster",
                cwd=self._dir,
                as_user=owner,
            )
            self._launch(postgres, owner)
            self._database = self.create_database("cryptmail")
        self.start_seconds = time.monotonic() - started

    def _launch(self, postgres: str, owner: tuple[int, int] | None) -> None:
        self.socket_dir.mkdir()
        if owner is not None:
            os.chown(self.socket_dir, *owner)
        argv = [
            postgres,
            "-D",
            str(self._dir / "data"),
            "-k",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-h",
            self.host,
        ]
        for option in _SERVER_OPTIONS:
            argv += ["-c", option]
        self._process = spawn(
            argv, output=self.log_path, cwd=self._dir, as_user=owner, new_session=True
        )
        wait_answering(
            self._answers,
            server=f"postgres on {self.host}:{self.port}",
            advice=(
                "Is the port taken, or shared memory short? "
                f"Try running `{' '.join(argv)}` by hand as the postgres user."
            ),
            logs={"log": self.log_path},
            timeout=self.start_timeout,
            process=self._process,
            interval=0.1,
        )

    def _answers(self) -> bool:
        result = subprocess.run(
            [*self._psql_argv(), "-c", "SELECT 1"],
            capture_output=True,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
            timeout=10,
        )
        return result.returncode == 0

    def _psql_argv(self) -> list[str]:
        return [
            self._psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]

    def psql(self, sql: str) -> str:
        """Run SQL as the ``postgres`` superuser over the unix socket; return psql's output.

        Raises:
            ServerStartError: psql failed; the message holds its output.
        """
        result = run_checked(
            [*self._psql_argv(), "-At"], what="running SQL as postgres", stdin=sql.encode()
        )
        return result.stdout.decode()

    def _create_owned_database(self, name: str, password: str) -> Database:
        # The SQL goes on stdin, so the password never shows in a process list.
        self.psql(
            f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}';\n"
            f'CREATE DATABASE "{name}" OWNER "{name}" ENCODING \'UTF8\';\n'
        )
        return Database(
            dialect="postgresql",
            async_driver="asyncpg",
            sync_driver="psycopg",
            host=self.host,
            port=self.port,
            name=name,
            user=name,
            password=password,
        )
