"""SELECT of a large mailbox, and a LOGIN served from the login cache, against Dovecot.

    python bench/select_login.py [--quick] [--large-count N] [--samples N] [--no-dovecot]

Servers, side by side: cryptmail crypt 2 (`serve`) and, when installed, Debian's Dovecot
2.3 with mail-crypt (secp521r1) and without. Each has one user with 1,000 x 4 KB
messages and one with N (default 50,000, issue 17's figure; `--quick`: 5,000).
Measured on one connection per server and mailbox, in rounds that go round the servers:
the median SELECT, after an unmeasured SELECT and `FETCH 1:* (FLAGS RFC822.SIZE)` (as
bench/load.py warms up: cryptmail's first SELECT claims the new messages, Dovecot's
indexes its Maildir, and the FETCH reads every message's size once). Then the median
LOGIN of a user who has logged in before, each on a fresh connection (cryptmail: the
login cache hit).

How the mailboxes are filled: cryptmail's 1,000 arrive through the store API (a sealed
blob each); its N are rows made in one SQL statement that share one delivered blob, as
COPY shares blobs (SELECT reads rows, never blobs). Dovecot mail-crypt's 1,000 arrive
over LMTP (sealed); Dovecot's N are Maildir files the bench writes, not sealed: SELECT
reads Dovecot's index, not the messages, so that makes no difference to it.
No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _servers import (
    DOVECOT_LOGIN,
    PASSWORD,
    cryptmail_server,
    dovecot_available,
    dovecot_server,
    lmtp_deliver,
    make_users,
    message,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import load_config
from cryptmail.db import create_engine
from cryptmail.db import tables as t
from cryptmail.store import deliver_message, inbox_id
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user

SMALL = 4096
BIG = 1000


class Client:
    """One command at a time over a raw socket, reading to the tagged reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tag = 0
        self._buffer = b""
        while b"\r\n" not in self._buffer:
            self._buffer += self.sock.recv(65536)
        self._buffer = b""

    def command(self, text: str) -> bytes:
        self._tag += 1
        tag = b"s%d " % self._tag
        self.sock.sendall(tag + text.encode() + b"\r\n")
        data = self._buffer
        while True:
            start = data.rfind(b"\r\n" + tag) + 2 if not data.startswith(tag) else 0
            if (data.startswith(tag) or start > 1) and data.endswith(b"\r\n"):
                line = data[start:]
                if b" OK " not in line.split(b"\r\n", 1)[0]:
                    raise RuntimeError(f"{text!r}: {line[:200]!r}")
                self._buffer = b""
                return data
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            data += chunk

    def close(self) -> None:
        self.sock.close()


@dataclass
class Server:
    label: str
    port: int
    logins: dict[str, tuple[str, str]]  # "big" / "large": (user, password)


def _select_ms(servers: list[Server], name: str, samples: int) -> dict[str, list[float]]:
    conns = {}
    for server in servers:
        conn = Client(server.port)
        conn.command('LOGIN "{}" "{}"'.format(*server.logins[name]))
        # Unmeasured, as bench/load.py warms up: the first SELECT claims the new messages
        # (cryptmail) or indexes the Maildir (Dovecot), the FETCH reads every size once.
        conn.command("SELECT INBOX")
        conn.command("FETCH 1:* (FLAGS RFC822.SIZE)")
        conns[server.label] = conn
    times: dict[str, list[float]] = {server.label: [] for server in servers}
    for _ in range(5):
        for server in servers:
            conn = conns[server.label]
            for _ in range(max(1, samples // 5)):
                start = time.perf_counter()
                conn.command("SELECT INBOX")
                times[server.label].append((time.perf_counter() - start) * 1000)
    for conn in conns.values():
        conn.command("LOGOUT")
        conn.close()
    return times


def _login_ms(servers: list[Server], samples: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {server.label: [] for server in servers}
    for _ in range(5):
        for server in servers:
            for _ in range(max(1, samples // 5)):
                conn = Client(server.port)
                start = time.perf_counter()
                conn.command('LOGIN "{}" "{}"'.format(*server.logins["big"]))
                times[server.label].append((time.perf_counter() - start) * 1000)
                conn.command("LOGOUT")
                conn.close()
    return times


async def _fill(data_dir: Path, big: list[bytes], big_user: str, large_user: str, n: int) -> None:
    config = load_config(None, data_dir=str(data_dir))
    engine = create_engine(config.database_url)
    blobs = LocalBlobStore(config.blob_path)
    for data in big:
        await _deliver(engine, blobs, big_user, data)
    await _copies(engine, blobs, large_user, big[0], n)
    await engine.dispose()


async def _deliver(engine: AsyncEngine, blobs: LocalBlobStore, email: str, data: bytes) -> None:
    async with engine.connect() as conn:
        user = await get_user(conn, email)

    async def source() -> AsyncIterator[bytes]:
        yield data

    await deliver_message(engine, blobs, user, source(), size_hint=len(data))


async def _copies(
    engine: AsyncEngine, blobs: LocalBlobStore, email: str, data: bytes, n: int
) -> None:
    """`data` delivered once, then n - 1 rows that share its blob, in one statement."""
    await _deliver(engine, blobs, email, data)
    msg, mb = t.cm_messages, t.cm_mailboxes
    async with engine.begin() as conn:
        box = await inbox_id(conn, (await get_user(conn, email)).id)
        first = (await conn.execute(select(msg).where(msg.c.mailbox_id == box))).one()
        copies = [
            {
                "mailbox_id": box,
                "uid": uid,
                "modseq": first.modseq + uid - 1,
                "blob_id": first.blob_id,
                "sealed": first.sealed,
                "size_rounded": first.size_rounded,
                "internal_date": first.internal_date,
            }
            for uid in range(2, n + 1)
        ]
        await conn.execute(msg.insert(), copies)
        await conn.execute(
            update(mb)
            .where(mb.c.id == box)
            .values(
                uidnext=n + 1,
                highest_modseq=first.modseq + n - 1,
                used_bytes=first.size_rounded * n,
            )
        )


def fill_large_mailbox(data_dir: Path, email: str, n: int) -> None:
    """`email`'s INBOX (a user of the data dir, server not running) with `n` messages
    that share one delivered blob, as this bench fills its large mailbox."""

    async def work() -> None:
        config = load_config(None, data_dir=str(data_dir))
        engine = create_engine(config.database_url)
        try:
            await _copies(engine, LocalBlobStore(config.blob_path), email, message(SMALL, 0), n)
        finally:
            await engine.dispose()

    asyncio.run(work())


@contextmanager
def _cryptmail(big: list[bytes], n: int) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        big_user, large_user = "big@example.org", "large@example.org"
        make_users(data_dir, {big_user: 2, large_user: 2})
        start = time.perf_counter()
        asyncio.run(_fill(data_dir, big, big_user, large_user, n))
        print(f"  cryptmail c2: filled in {time.perf_counter() - start:.0f} s", flush=True)
        with cryptmail_server(data_dir, "imap") as (_pid, ports):
            logins = {"big": (big_user, PASSWORD), "large": (large_user, PASSWORD)}
            yield Server("cryptmail c2", ports["imap"], logins)


def maildir_fill(server: object, user: str, count: int) -> None:
    """`count` messages as Maildir files in the user's INBOX, as if delivered."""
    base = server.home(user) / "Maildir"  # type: ignore[attr-defined]
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    for index in range(count):
        data = b"From: bench@example.net\r\nSubject: n%d\r\n\r\n%s\r\n" % (index, b"x" * 900)
        name = f"{now - count + index}.M{index}P1.bench,S={len(data)}:2,S"
        (base / "cur" / name).write_bytes(data)
    server.give_to_mail_user(base)  # type: ignore[attr-defined]


@contextmanager
def _dovecot(mail_crypt: bool, big: list[bytes], n: int) -> Iterator[Server]:
    big_user, large_user = "big@example.org", "large@example.org"
    with dovecot_server(mail_crypt, lmtp=True, imap=True, users=[big_user, large_user]) as server:
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            parts = [big[i::4] for i in range(4)]
            list(pool.map(lambda p: lmtp_deliver(server.lmtp_port, big_user, p), parts))
        maildir_fill(server, large_user, n)
        label = "dovecot crypt" if mail_crypt else "dovecot plain"
        print(f"  {label}: filled in {time.perf_counter() - start:.0f} s", flush=True)
        logins = {"big": (big_user, DOVECOT_LOGIN), "large": (large_user, DOVECOT_LOGIN)}
        yield Server(label, server.imap_port, logins)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="N = 5,000, fewer samples")
    parser.add_argument("--large-count", type=int, default=None, metavar="N")
    parser.add_argument("--samples", type=int, default=None, metavar="N")
    parser.add_argument("--no-dovecot", action="store_true", help="cryptmail only")
    args = parser.parse_args()
    n = args.large_count or (5000 if args.quick else 50_000)
    samples = args.samples or (50 if args.quick else 200)
    big = [message(SMALL, i) for i in range(BIG)]
    with ExitStack() as running:
        servers = [running.enter_context(_cryptmail(big, n))]
        if not args.no_dovecot and dovecot_available():
            servers += [running.enter_context(_dovecot(c, big, n)) for c in (True, False)]
        figures = {
            f"SELECT of {BIG:,}": _select_ms(servers, "big", samples),
            f"SELECT of {n:,}": _select_ms(servers, "large", samples),
            "LOGIN again": _login_ms(servers, max(5, samples // 5)),
        }
    print(f"\n{'median ms':>24}" + "".join(f"{s.label:>16}" for s in servers))
    for name, times in figures.items():
        cells = [f"{statistics.median(times[s.label]):.3f}" for s in servers]
        print(f"{name:>24}" + "".join(f"{cell:>16}" for cell in cells))
    labels = [s.label for s in servers]
    if "dovecot crypt" in labels:
        for name in list(figures)[:2]:
            ours = statistics.median(figures[name]["cryptmail c2"])
            theirs = statistics.median(figures[name]["dovecot crypt"])
            print(f"{name}: cryptmail c2 / Dovecot mail-crypt {ours / theirs:.2f}x (goal < 2x)")
    login = statistics.median(figures["LOGIN again"]["cryptmail c2"])
    print(f"LOGIN again, cryptmail c2: {login:.2f} ms (goal < 2 ms)")


if __name__ == "__main__":
    main()
