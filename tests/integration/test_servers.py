"""The server fixtures work: the databases answer SQLAlchemy; Postfix delivers over LMTP;
SeaweedFS listens on loopback only and checks S3 signatures."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from sqlalchemy.ext.asyncio import create_async_engine

from smtp_sink import LmtpSink

from .conftest import PostfixFactory
from .servers import LOOPBACK, Database, MariaDB, Postgres, SeaweedFS, free_port

# -- databases ---------------------------------------------------------------------------


def _round_trip_sync(url: str) -> list[tuple[int, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, note TEXT)"))
            connection.execute(sa.text("INSERT INTO probe VALUES (1, 'sync')"))
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, note FROM probe")).all()
    finally:
        engine.dispose()
    return [(row[0], row[1]) for row in rows]


async def _round_trip_async(url: str) -> list[tuple[int, str]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, note TEXT)")
            )
            await connection.execute(sa.text("INSERT INTO probe VALUES (2, 'async')"))
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.text("SELECT id, note FROM probe"))).all()
    finally:
        await engine.dispose()
    return [(row[0], row[1]) for row in rows]


def test_mariadb_sync(mariadb_database: Database) -> None:
    assert mariadb_database.sync_url.startswith("mysql+pymysql://")
    assert _round_trip_sync(mariadb_database.sync_url) == [(1, "sync")]


async def test_mariadb_async(mariadb_database: Database) -> None:
    assert mariadb_database.async_url.startswith("mysql+aiomysql://")
    assert await _round_trip_async(mariadb_database.async_url) == [(2, "async")]


def test_mariadb_default_database_and_password(mariadb: MariaDB) -> None:
    database = mariadb.database
    assert (database.host, database.port, database.name) == (LOOPBACK, mariadb.port, "cryptmail")
    assert database.password not in repr(database)
    wrong = sa.create_engine(database.sync_url.replace(database.password, "wrong-password"))
    with pytest.raises(sa.exc.OperationalError):
        wrong.connect().close()
    wrong.dispose()


def test_postgres_sync(postgres_database: Database) -> None:
    assert postgres_database.sync_url.startswith("postgresql+psycopg://")
    assert _round_trip_sync(postgres_database.sync_url) == [(1, "sync")]


async def test_postgres_async(postgres_database: Database) -> None:
    assert postgres_database.async_url.startswith("postgresql+asyncpg://")
    assert await _round_trip_async(postgres_database.async_url) == [(2, "async")]


def test_postgres_default_database_and_password(postgres: Postgres) -> None:
    database = postgres.database
    assert database.url.startswith("postgresql://cryptmail:")
    wrong = sa.create_engine(database.sync_url.replace(database.password, "wrong-password"))
    with pytest.raises(sa.exc.OperationalError):
        wrong.connect().close()
    wrong.dispose()


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                if table == "tcp":
                    host = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    host = socket.inet_ntop(socket.AF_INET6, words)
                found.add((host, int(port, 16)))
    return found


def test_seaweedfs_listens_on_loopback_only_and_checks_signatures(seaweedfs: SeaweedFS) -> None:
    assert seaweedfs._process is not None
    listening = _listening(seaweedfs._process.pid)
    assert len(listening) >= 8  # master, volume, filer and S3, each HTTP and gRPC
    assert {host for host, _ in listening} == {LOOPBACK}
    creds = seaweedfs.credentials
    assert creds.endpoint.startswith(f"http://{LOOPBACK}:")
    assert "Buckets" in creds.client().list_buckets()
    with pytest.raises(ClientError):
        creds.client(secret_key="wrong-secret").list_buckets()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(creds.endpoint + "/", timeout=5)  # noqa: S310 - our loopback
    assert refused.value.code == 403


# -- an LMTP sink (RFC 2033): tests/smtp_sink.py --------------------------------------


@pytest.fixture
def sink() -> Iterator[LmtpSink]:
    server = LmtpSink()
    server.start()
    yield server
    server.stop()


def _message(marker: str) -> bytes:
    return (
        f"From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: probe\r\n"
        f"Message-ID: <{marker}@sender.test>\r\n\r\n{marker}\r\n.leading dot\r\n"
    ).encode()


# -- Postfix -----------------------------------------------------------------------------


def test_postfix_delivers_sendmail_over_lmtp(
    sink: LmtpSink, postfix_factory: PostfixFactory
) -> None:
    postfix = postfix_factory(domains=["example.test"], lmtp=f"inet:{LOOPBACK}:{sink.port}")
    marker = uuid.uuid4().hex
    postfix.send(_message(marker), "alice@sender.test", ["bob@example.test"])

    [delivery] = sink.wait_for(1)
    assert delivery.sender == "alice@sender.test"
    assert delivery.recipients == ["bob@example.test"]
    assert marker.encode() in delivery.data
    assert b"\r\n.leading dot\r\n" in delivery.data
    postfix.wait_queue_empty()
    postfix.wait_for_log(r"to=<bob@example\.test>, relay=127\.0\.0\.1.*status=sent")


def test_postfix_accepts_smtp_and_expands_aliases(
    sink: LmtpSink, postfix_factory: PostfixFactory
) -> None:
    postfix = postfix_factory(
        domains=["example.test"],
        lmtp=f"inet:{LOOPBACK}:{sink.port}",
        aliases={"info@example.test": "bob@example.test"},
    )
    postfix.send(_message("via-smtp"), "alice@sender.test", ["info@example.test"], via="smtp")

    [delivery] = sink.wait_for(1)
    assert delivery.recipients == ["bob@example.test"]
    postfix.wait_queue_empty()


def test_postfix_retries_after_451(sink: LmtpSink, postfix_factory: PostfixFactory) -> None:
    sink.data_replies.append(b"451 4.3.0 Mailbox busy, try again")
    postfix = postfix_factory(domains=["example.test"], lmtp=f"inet:{LOOPBACK}:{sink.port}")
    postfix.send(_message("retry"), "alice@sender.test", ["bob@example.test"])

    postfix.wait_for_log(r"to=<bob@example\.test>.*status=deferred.*451 4\.3\.0")
    postfix.wait_queue_empty()

    [delivery] = sink.wait_for(1, timeout=5)
    assert delivery.recipients == ["bob@example.test"]
    assert sink.attempts == 2


def test_postfix_retries_only_the_deferred_recipient(
    sink: LmtpSink, postfix_factory: PostfixFactory
) -> None:
    sink.data_replies += [b"451 4.2.0 Try later", b"250 2.0.0 Ok"]
    postfix = postfix_factory(domains=["example.test"], lmtp=f"inet:{LOOPBACK}:{sink.port}")
    postfix.send(_message("split"), "alice@sender.test", ["a@example.test", "b@example.test"])

    postfix.wait_queue_empty()

    deliveries = sink.wait_for(2, timeout=5)
    assert sorted(d.recipients[0] for d in deliveries) == ["a@example.test", "b@example.test"]
    assert sink.attempts == 2


def test_postfix_queues_while_lmtp_is_down(postfix_factory: PostfixFactory) -> None:
    postfix = postfix_factory(domains=["example.test"], lmtp=f"inet:{LOOPBACK}:{free_port()}")
    postfix.send(_message("down"), "alice@sender.test", ["bob@example.test"])

    postfix.wait_for_log(r"status=deferred \(connect to 127\.0\.0\.1.*Connection refused")
    assert len(postfix.queue_ids()) == 1
    assert not postfix.queue_empty()


# -- Chromium ----------------------------------------------------------------------------


async def test_chromium_renders_a_page(chromium_launch_kwargs: dict[str, object]) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**chromium_launch_kwargs)  # type: ignore[arg-type]
        try:
            page = await browser.new_page()
            await page.set_content("<h1>cryptmail</h1>")
            assert await page.inner_text("h1") == "cryptmail"
        finally:
            await browser.close()
