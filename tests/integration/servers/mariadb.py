"""A private MariaDB server on loopback, with its own data folder."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pymysql

from ._binaries import find_binary
from ._database import Database, DatabaseServer
from ._process import run_checked, spawn, wait_answering

# Durability is traded for speed: tests kill cryptmail, never the database.
_SERVER_OPTIONS = (
    "--skip-name-resolve",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--innodb-buffer-pool-size=64M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
    "--max-connections=200",
)


class MariaDB(DatabaseServer):
    """A throwaway ``mariadbd`` on 127.0.0.1, run as root with ``--user=root``.

    ``start()`` initializes a data folder, starts the server, waits until root
    can log in over the unix socket and creates :attr:`database`. More
    databases come from :meth:`create_database`. ``stop()`` shuts it down and
    deletes the folder (set CRYPTMAIL_KEEP_SERVER_DIRS=1 to keep it).
    """

    _name_pattern = re.compile(r"[a-z_][a-z0-9_]{0,31}")
    _stop_signal = signal.SIGTERM

    @property
    def socket_path(self) -> Path:
        return self._dir / "mysqld.sock"

    @property
    def log_path(self) -> Path:
        return self._dir / "mariadbd.log"

    def start(self) -> None:
        """Initialize, start and wait for the server; create the ``cryptmail`` database.

        Raises:
            BinaryMissing: mariadbd or mariadb-install-db is not installed.
            ServerStartError: the server did not answer within ``start_timeout``.
        """
        started = time.monotonic()
        mariadbd = find_binary("mariadbd", package="mariadb-server")
        install_db = find_binary("mariadb-install-db", package="mariadb-server")
        with self._new_folder("cryptmail-mariadb-"):
            run_checked(
                [
                    install_db,
                    "--no-defaults",
                    f"--datadir={self._dir / 'data'}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                what="initializing the MariaDB data folder",
                cwd=self._dir,
            )
            self._launch(mariadbd)
            self._database = self.create_database("cryptmail")
        self.start_seconds = time.monotonic() - started

    def _launch(self, mariadbd: str) -> None:
        argv = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self._dir / 'data'}",
            f"--socket={self.socket_path}",
            f"--pid-file={self._dir / 'mariadbd.pid'}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self._dir}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            "--user=root",
            *_SERVER_OPTIONS,
        ]
        self._process = spawn(argv, cwd=self._dir, new_session=True)
        wait_answering(
            self._answers,
            server=f"mariadbd on {self.host}:{self.port}",
            advice=f"Is the port taken, or the disk full? Try running `{' '.join(argv)}` by hand.",
            logs={"log": self.log_path},
            timeout=self.start_timeout,
            process=self._process,
        )

    def _answers(self) -> bool:
        try:
            self.admin_connect(connect_timeout=1).close()
        except pymysql.err.OperationalError:
            return False
        return True

    def admin_connect(self, *, connect_timeout: int = 10) -> pymysql.connections.Connection:
        """Open a pymysql connection as root over the unix socket (autocommit on)."""
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            connect_timeout=connect_timeout,
            autocommit=True,
        )

    def _create_owned_database(self, name: str, password: str) -> Database:
        connection = self.admin_connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
                cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
                cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'%%'", (name,))
        finally:
            connection.close()
        return Database(
            dialect="mysql",
            async_driver="aiomysql",
            sync_driver="pymysql",
            host=self.host,
            port=self.port,
            name=name,
            user=name,
            password=password,
            query="charset=utf8mb4",
        )
