"""The server fixtures work: the databases answer SQLAlchemy; Postfix delivers over LMTP;
SeaweedFS listens on loopback only and checks S3 signatures."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from sqlalchemy.ext.asyncio import create_async_engine

from loop_thread import stop_loop_thread

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


# -- an LMTP sink (RFC 2033) -------------------------------------------------------------


@dataclass
class Delivery:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class LmtpSink:
    """A tiny LMTP server on its own event loop in a thread.

    After DATA it answers once per accepted recipient, taking each reply from
    ``data_replies`` while that list has any (e.g. a 451 to make Postfix
    retry) and ``250`` after that. Only recipients answered 250 are recorded.
    """

    port: int = field(default_factory=free_port)
    data_replies: list[bytes] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, LOOPBACK, self.port), self._loop
        ).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        stop_loop_thread(self._loop, self._thread)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise TimeoutError(f"LMTP sink got {len(self.deliveries)} of {count} messages")
            return list(self.deliveries)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender, recipients = "", list[str]()
        writer.write(b"220 sink LMTP ready\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"LHLO":
                writer.write(
                    b"250-sink\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
                )
            elif verb == b"MAIL":
                sender, recipients = _address(line), []
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                recipients.append(_address(line))
                writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA" and recipients:
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                data = await _read_data(reader)
                self._answer_data(writer, sender, recipients, data)
            elif verb == b"RSET":
                sender, recipients = "", []
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"NOOP":
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"500 5.5.1 Unknown command\r\n")
            await writer.drain()
        await writer.drain()
        writer.close()

    def _answer_data(
        self, writer: asyncio.StreamWriter, sender: str, recipients: list[str], data: bytes
    ) -> None:
        with self._changed:
            self.attempts += 1
            for recipient in recipients:
                reply = self.data_replies.pop(0) if self.data_replies else b"250 2.0.0 Ok"
                writer.write(reply + b"\r\n")
                if reply.startswith(b"250"):
                    self.deliveries.append(Delivery(sender, [recipient], data))
            self._changed.notify_all()


def _address(line: bytes) -> str:
    return line.split(b":", 1)[1].strip().split(b" ")[0].strip(b"<>").decode()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while (line := await reader.readline()) not in (b".\r\n", b""):
        lines.append(line[1:] if line.startswith(b"..") else line)
    return b"".join(lines)


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
