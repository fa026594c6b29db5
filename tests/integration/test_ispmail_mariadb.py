"""An ISPmail MariaDB as the guide leaves it, switched to cryptmail.

The tables and rows are those of the ISPmail guide (Debian 12 edition, with the
mail-crypt `crypt` column): `db upgrade` adds our tables and leaves the rows alone;
john's first login (password `summersun`, the guide's {BLF-CRYPT} hash) makes his keys;
mail delivered over LMTP (to him and through the guide's alias) is sealed to him; a
password with `%`, quotes, a space and non-ASCII works for a user made by the CLI and
for one whose hash another tool wrote.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pymysql
import pytest

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine
from cryptmail.keys import list_key_pairs, unlock_account
from cryptmail.secret import Password
from cryptmail.store import list_mailboxes, load_messages, open_blob, read_plaintext
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user, verify_password

from .cryptmail_server import share_server_key
from .servers import Database, MariaDB
from .servers._ports import free_port

pytestmark = pytest.mark.integration

CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
JOHN_HASH = "{BLF-CRYPT}$2y$05$.WedBCNZiwxY1CG3aleIleu6lYjup2CIg0BP4M4YCZsO204Czz07W"
ODD_PASSWORD = "50% \"quoted\" 'too' with spaces — grüße ✓"

# The guide's tables, as its "Preparing the database" page creates them.
ISPMAIL_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS `virtual_domains` (
 `id` int(11) NOT NULL auto_increment,
 `name` varchar(50) NOT NULL,
 PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    """CREATE TABLE IF NOT EXISTS `virtual_users` (
 `id` int(11) NOT NULL auto_increment,
 `domain_id` int(11) NOT NULL,
 `email` varchar(100) NOT NULL,
 `password` varchar(150) NOT NULL,
 `quota` bigint(11) NOT NULL DEFAULT 0,
 PRIMARY KEY (`id`),
 UNIQUE KEY `email` (`email`),
 FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    """CREATE TABLE IF NOT EXISTS `virtual_aliases` (
 `id` int(11) NOT NULL auto_increment,
 `domain_id` int(11) NOT NULL,
 `source` varchar(100) NOT NULL,
 `destination` varchar(100) NOT NULL,
 PRIMARY KEY (`id`),
 FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8""",
    # The guide's encryption page: a per-user switch read by Dovecot's userdb query.
    "ALTER TABLE virtual_users ADD COLUMN crypt INT NOT NULL DEFAULT 0",
]
ISPMAIL_ROWS = [
    "REPLACE INTO virtual_domains (id,name) VALUES ('1','example.org')",
    "REPLACE INTO virtual_users (id,domain_id,password,email) VALUES ('1', '1', "
    "'{BLF-CRYPT}$2y$05$.WedBCNZiwxY1CG3aleIleu6lYjup2CIg0BP4M4YCZsO204Czz07W', "
    "'john@example.org')",
    "REPLACE INTO virtual_aliases (id,domain_id,source,destination) VALUES "
    "('1', '1', 'jack@example.org', 'john@example.org')",
    "UPDATE virtual_users SET crypt = 2 WHERE email = 'john@example.org'",
]


def _sql(
    database: Database, statements: list[str], params: tuple[object, ...] | None = None
) -> None:
    connection = pymysql.connect(
        host=database.host,
        port=database.port,
        user=database.user,
        password=database.password,
        database=database.name,
        charset="utf8mb4",
    )
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement, params)
        connection.commit()
    finally:
        connection.close()


def _rows(database: Database, query: str) -> list[tuple[object, ...]]:
    connection = pymysql.connect(
        host=database.host,
        port=database.port,
        user=database.user,
        password=database.password,
        database=database.name,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return list(cursor.fetchall())
    finally:
        connection.close()


@pytest.fixture
def ispmail(mariadb: MariaDB) -> Database:
    database = mariadb.create_database()
    _sql(database, ISPMAIL_SCHEMA + ISPMAIL_ROWS)
    return database


def _cli(url: str, data_dir: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    share_server_key(data_dir)  # the key this process checks and writes key rows with
    return subprocess.run(
        [sys.executable, "-m", "cryptmail", "--database-url", url, "--data-dir", str(data_dir)]
        + list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_keeps_the_ispmail_rows(ispmail: Database, tmp_path: Path) -> None:
    before = {
        table: _rows(ispmail, f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - fixed names
        for table in ("virtual_domains", "virtual_users", "virtual_aliases")
    }
    done = _cli(ispmail.sync_url, tmp_path / "data", "db", "upgrade")
    assert done.returncode == 0, done.stderr
    tables = {row[0] for row in _rows(ispmail, "SHOW TABLES")}
    assert {"cm_accounts", "cm_key_slots", "cm_messages", "cm_mailboxes"} <= tables
    for table, rows in before.items():
        assert _rows(ispmail, f"SELECT * FROM {table} ORDER BY id") == rows  # noqa: S608
    again = _cli(ispmail.sync_url, tmp_path / "data", "db", "upgrade")
    assert again.returncode == 0, again.stderr


@pytest.fixture
def upgraded(ispmail: Database, tmp_path: Path) -> Database:
    done = _cli(ispmail.sync_url, tmp_path / "data", "db", "upgrade")
    assert done.returncode == 0, done.stderr
    return ispmail


def _lmtp_server(database: Database, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    share_server_key(tmp_path / "data")
    argv = [sys.executable, "-m", "cryptmail", "--database-url", database.sync_url]
    argv += ["--data-dir", str(tmp_path / "data"), "serve", "--lmtp", f"127.0.0.1:{port}"]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(100).startswith(b"220"):
                    return process, port
        except OSError:
            assert time.monotonic() < deadline, "cryptmail serve did not answer"
            time.sleep(0.1)


def test_first_login_makes_keys_and_lmtp_delivers_sealed(
    upgraded: Database, tmp_path: Path
) -> None:
    url = upgraded.sync_url
    blobs = LocalBlobStore(tmp_path / "data" / "blobs")

    async def first_login() -> int:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                john = await get_user(conn, "john@example.org")
                assert john.crypt == 2
                assert await list_key_pairs(conn, john.id) == []
            account, _ = await unlock_account(
                engine, "john@example.org", Password.from_str("summersun"), CRYPTO
            )
            async with engine.connect() as conn:
                assert len(await list_key_pairs(conn, account.user.id)) == 1
            return account.user.id
        finally:
            await engine.dispose()

    asyncio.run(first_login())
    # The guide's cheap bcrypt (cost 5) would be the weakest way in, so the login
    # replaced it in the same row with an {ARGON2ID} hash of the same password.
    [(stored,)] = _rows(upgraded, "SELECT password FROM virtual_users WHERE id = 1")
    assert isinstance(stored, str)
    assert stored.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(stored, Password.from_str("summersun"))

    process, port = _lmtp_server(upgraded, tmp_path)
    try:
        message = b"From: a@example.net\r\nSubject: sealed for john\r\n\r\nmarker-5d1e\r\n"
        with smtplib.LMTP("127.0.0.1", port) as client:
            refused = client.sendmail("a@example.net", ["john@example.org"], message)
            assert refused == {}
            via_alias = message.replace(b"sealed for john", b"sealed for jack")
            refused = client.sendmail("a@example.net", ["jack@example.org"], via_alias)
            assert refused == {}
    finally:
        process.terminate()
        process.wait(30)

    async def read_inbox() -> list[tuple[bool, bytes]]:
        engine = create_engine(url)
        try:
            account, _ = await unlock_account(
                engine, "john@example.org", Password.from_str("summersun"), CRYPTO
            )
            async with engine.connect() as conn:
                boxes = await list_mailboxes(conn, account.user.id, account)
                inbox = next(b for b in boxes if b.role == "inbox")
                rows = await load_messages(conn, account, inbox.id)
            return [
                (r.sealed, await read_plaintext(blobs, await open_blob(blobs, account, r.blob_id)))
                for r in rows
            ]
        finally:
            await engine.dispose()

    stored = asyncio.run(read_inbox())
    assert len(stored) == 2
    assert all(sealed for sealed, _ in stored)
    assert all(data.endswith(b"marker-5d1e\r\n") for _, data in stored)
    assert not any(
        b"marker-5d1e" in p.read_bytes()
        for p in (tmp_path / "data" / "blobs").rglob("*")
        if p.is_file()
    )


def test_odd_password_for_cli_user_and_outside_hash(upgraded: Database, tmp_path: Path) -> None:
    url = upgraded.sync_url
    added = _cli(
        url,
        tmp_path / "data",
        "user",
        "add",
        "odd@example.org",
        "--password-stdin",
        stdin=ODD_PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    # A row written by another tool (the guide's `doveadm pw -s BLF-CRYPT`), no keys yet.
    outside = bcrypt.hashpw(ODD_PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    outside = "{BLF-CRYPT}" + outside.replace("$2b$", "$2y$", 1)
    _sql(
        upgraded,
        [
            "INSERT INTO virtual_users (domain_id, email, password, crypt) VALUES "
            "(1, 'other@example.org', %s, 2)"
        ],
        (outside,),
    )

    async def logins() -> None:
        engine = create_engine(url)
        try:
            for email in ("odd@example.org", "other@example.org"):
                account, _ = await unlock_account(
                    engine, email, Password.from_str(ODD_PASSWORD), CRYPTO
                )
                assert account.user.email == email
        finally:
            await engine.dispose()

    asyncio.run(logins())
    listed = _cli(
        url,
        tmp_path / "data",
        "mailbox",
        "list",
        "odd@example.org",
        "--password-stdin",
        stdin=ODD_PASSWORD + "\n",
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("folder")
