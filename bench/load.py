"""Many clients at once: a mixed IMAP load and a webmail load on every server, in one run.

    python bench/load.py [--quick] [--duration S] [--connections 10,50] [--no-dovecot]

Servers: cryptmail crypt 2 and crypt 0 (one `serve` each) and, when installed, Debian's
Dovecot 2.3 with mail-crypt (secp521r1 per-user keys) and without, all started side by
side. Each has 40 users whose INBOX holds 200 messages (190 of about 4 KB, 10 of about
200 KB, all multipart with a base64 attachment; `--quick`: 38 and 2) and one more user
with 1,000 x 4 KB for the SELECT figure. cryptmail's users are made with the server's
default Argon2id (46 MiB, as a real installation's) and filled through the store API
before the server starts; Dovecot's get theirs over LMTP. Before measuring, every user
logs in once and reads the size of every message (unmeasured), so the figures are the
steady state and not the first read of each message.

Two profiles, each at every `--connections` count (default 10 and 50), all from one
client address (127.0.0.1), each connection on a thread of its own, picking a random
user for each session:

* mixed: LOGIN, SELECT INBOX, two FETCH of a whole random message, one FETCH of 20
  messages' headers, STORE +FLAGS and -FLAGS (\\Seen) on a random message, APPEND of a
  4 KB message, UID STORE +FLAGS (\\Deleted) of the appended message, EXPUNGE, LOGOUT.
  Only appended messages are expunged, so the mailboxes keep their size and the first
  200 sequence numbers always name the filled messages.
* webmail: LOGIN, SELECT INBOX, FETCH (UID FLAGS RFC822.SIZE and four header fields)
  of the newest 50 messages, LOGOUT.

Each profile and count runs `--duration` seconds per server (default 30), in three parts
that go round the servers in turn, so a slow phase of the shared machine falls on every
server. Printed per server: commands/s (tagged OK replies), p50 and p99 latency per
command, the server's CPU per command (schedstat of its whole process tree), the
bench client's own CPU per command, and errors (tagged NO/BAD, BYE, closed or refused
connections; after an error a connection waits 50 ms and starts a new session). Then,
separately: the median SELECT of the 1,000-message INBOX (on one connection, many
times) and the median LOGIN of a user who logged in before (on fresh connections;
with a login cache this is the cache hit), and the ratios against the goals.

cryptmail runs with `auth.trusted_networks = ["127.0.0.0/8"]` and
`imap.max_connections_per_ip = 1000`, as for a webmail host: all clients share one
address here. CRYPTMAIL_BENCH_PROFILE=out.prof profiles the cryptmail servers (the last
one to stop writes the file). No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import re
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from _servers import (
    DOVECOT_LOGIN,
    PASSWORD,
    check_dovecot_sealed,
    cryptmail_server,
    dovecot_available,
    dovecot_server,
    lmtp_deliver,
    make_users,
    message,
    tree_cpu_s,
)

import cryptmail.config
from cryptmail.config import CryptoConfig, load_config
from cryptmail.db import create_engine
from cryptmail.keys import install_server_key, load_server_key
from cryptmail.store import deliver_message
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user

USERS = 40
SMALL, LARGE = 4096, 200_000
LARGE_EVERY = 20  # one message in 20 is a 200 KB one
BIG = 1000  # messages in the mailbox whose SELECT is timed on its own
ROUNDS = 3
HEADERS = 20  # messages whose headers the mixed load fetches at once
WEBMAIL_HEADERS = 50
BACKOFF_S = 0.05
COMMANDS = ("LOGIN", "SELECT", "FETCH", "STORE", "APPEND", "EXPUNGE", "LOGOUT")
CRYPTMAIL_CONFIG = """\
[auth]
trusted_networks = ["127.0.0.0/8"]

[imap]
max_connections_per_ip = 1000
"""
_EXISTS = re.compile(rb"\* (\d+) EXISTS")
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class ImapError(Exception):
    """A tagged NO or BAD, a BYE, or a connection the server closed."""


class Conn:
    """A lean IMAP client: one command at a time, read to its tagged reply, keeping only
    the last 64 KiB (imaplib's per-line regular expressions would take the CPU the
    servers need)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tag = 0
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            data = self.sock.recv(4096)
            if not data:
                raise ImapError("closed before its greeting")
            greeting += data
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting {greeting[:60]!r}")

    def command(self, text: str, literal: bytes | None = None) -> bytes:
        """Send `text` (and `literal` after the server's go-ahead); returns the last
        64 KiB of the reply, which ends with the tagged OK. ImapError otherwise."""
        self._tag += 1
        tag = b"L%d " % self._tag
        line = tag + text.encode()
        if literal is None:
            self.sock.sendall(line + b"\r\n")
        else:
            self.sock.sendall(line + b" {%d}\r\n" % len(literal))
            ahead = self._read(tag, until_continuation=True)
            if not ahead.startswith(b"+"):
                raise ImapError(_tagged_status(ahead, tag))
            self.sock.sendall(literal + b"\r\n")
        reply = self._read(tag)
        if not _last_line(reply).startswith(tag + b"OK"):
            raise ImapError(_tagged_status(_last_line(reply), tag))
        return reply

    def _read(self, tag: bytes, *, until_continuation: bool = False) -> bytes:
        tail = b""
        while True:
            data = self.sock.recv(1 << 18)
            if not data:
                end = tail.rstrip()[-80:]
                raise ImapError(f"connection closed ({end.decode(errors='replace')})")
            tail = data[-65536:] if len(data) >= 65536 else (tail + data)[-65536:]
            if not tail.endswith(b"\r\n"):
                continue
            last = _last_line(tail)
            if last.startswith(tag) or (until_continuation and last.startswith(b"+")):
                return last if until_continuation else tail

    def close(self) -> None:
        self.sock.close()


def _last_line(data: bytes) -> bytes:
    """The last CRLF-ended line of `data` (which ends with CRLF)."""
    start = data.rfind(b"\r\n", 0, len(data) - 2)
    return data[start + 2 :] if start >= 0 else data


def _tagged_status(line: bytes, tag: bytes) -> str:
    return line.removeprefix(tag).strip()[:80].decode(errors="replace")


@dataclass
class Server:
    """One server as the bench sees it."""

    label: str
    port: int
    cpu: Callable[[], float]
    users: list[tuple[str, str]]  # login, password
    big: tuple[str, str]  # the user with BIG messages
    base: int  # messages each user's INBOX was filled with


@dataclass
class Tally:
    """What a phase's connections saw, added up."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def add(self, other: Tally) -> None:
        for name, values in other.latency.items():
            self.latency[name].extend(values)
        self.errors.update(other.errors)
        self.wall_s += other.wall_s
        self.server_cpu_s += other.server_cpu_s
        self.client_cpu_s += other.client_cpu_s

    @property
    def commands(self) -> int:
        return sum(len(values) for values in self.latency.values())


class _Stop(Exception):
    """The phase's time is up."""


class _Worker:
    """One connection's loop of sessions until the deadline."""

    def __init__(self, server: Server, profile: str, deadline: float, seed: int) -> None:
        self.server = server
        self.profile = profile
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.small = message(SMALL, seed)

    def run(self) -> None:
        session = self._mixed if self.profile == "mixed" else self._webmail
        while time.perf_counter() < self.deadline:
            user, password = self.rng.choice(self.server.users)
            conn: Conn | None = None
            try:
                conn = Conn(self.server.port)
                session(conn, user, password)
            except _Stop:
                return
            except (ImapError, OSError) as exc:
                self.tally.errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
                time.sleep(BACKOFF_S)
            finally:
                if conn is not None:
                    conn.close()

    def _timed(self, conn: Conn, name: str, text: str, literal: bytes | None = None) -> bytes:
        if time.perf_counter() >= self.deadline:
            raise _Stop
        start = time.perf_counter()
        try:
            reply = conn.command(text, literal)
        except ImapError as exc:
            raise ImapError(f"{name}: {exc}") from None
        self.tally.latency[name].append(time.perf_counter() - start)
        return reply

    def _select(self, conn: Conn, user: str, password: str) -> int:
        self._timed(conn, "LOGIN", f'LOGIN "{user}" "{password}"')
        found = _EXISTS.search(self._timed(conn, "SELECT", "SELECT INBOX"))
        if found is None:
            raise ImapError("SELECT: no EXISTS")
        return int(found.group(1))

    def _mixed(self, conn: Conn, user: str, password: str) -> None:
        base = min(self._select(conn, user, password), self.server.base)
        for _ in range(2):
            self._timed(conn, "FETCH", f"FETCH {self.rng.randint(1, base)} (FLAGS BODY.PEEK[])")
        first = self.rng.randint(1, max(1, base - HEADERS + 1))
        last = min(base, first + HEADERS - 1)
        self._timed(
            conn,
            "FETCH",
            f"FETCH {first}:{last} (FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
        )
        seq = self.rng.randint(1, base)
        self._timed(conn, "STORE", f"STORE {seq} +FLAGS (\\Seen)")
        self._timed(conn, "STORE", f"STORE {seq} -FLAGS (\\Seen)")
        reply = self._timed(conn, "APPEND", "APPEND INBOX (\\Seen)", self.small)
        found = _APPENDUID.search(reply)
        if found is None:
            raise ImapError("APPEND: no APPENDUID")
        self._timed(conn, "STORE", f"UID STORE {int(found.group(1))} +FLAGS (\\Deleted)")
        self._timed(conn, "EXPUNGE", "EXPUNGE")
        self._timed(conn, "LOGOUT", "LOGOUT")

    def _webmail(self, conn: Conn, user: str, password: str) -> None:
        exists = self._select(conn, user, password)
        first = max(1, exists - WEBMAIL_HEADERS + 1)
        self._timed(
            conn,
            "FETCH",
            f"FETCH {first}:{exists} (UID FLAGS RFC822.SIZE "
            "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])",
        )
        self._timed(conn, "LOGOUT", "LOGOUT")


def _phase(server: Server, profile: str, connections: int, seconds: float) -> Tally:
    """`connections` threads running `profile` sessions against `server` for `seconds`."""
    cpu0, client0 = server.cpu(), time.process_time()
    start = time.perf_counter()
    workers = [
        _Worker(server, profile, start + seconds, random.randrange(1 << 30))
        for _ in range(connections)
    ]
    threads = [threading.Thread(target=worker.run) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for worker in workers:
        total.add(worker.tally)
    total.wall_s = time.perf_counter() - start
    total.server_cpu_s = server.cpu() - cpu0
    total.client_cpu_s = time.process_time() - client0
    return total


def _load(
    servers: list[Server], profile: str, connections: int, seconds: float
) -> dict[str, Tally]:
    """The phase on every server, in ROUNDS parts that go round the servers in turn."""
    tallies = {server.label: Tally() for server in servers}
    for _ in range(ROUNDS):
        for server in servers:
            tallies[server.label].add(_phase(server, profile, connections, seconds / ROUNDS))
    return tallies


def _select_ms(servers: list[Server], samples: int) -> dict[str, list[float]]:
    """SELECT of the BIG-message INBOX, `samples` times per server on one connection
    each, in rounds that go round the servers."""
    conns = {}
    for server in servers:
        conn = Conn(server.port)
        conn.command('LOGIN "{}" "{}"'.format(*server.big))
        conns[server.label] = conn
    times: dict[str, list[float]] = {server.label: [] for server in servers}
    for _ in range(5):
        for server in servers:
            conn = conns[server.label]
            for _ in range(samples // 5):
                start = time.perf_counter()
                conn.command("SELECT INBOX")
                times[server.label].append((time.perf_counter() - start) * 1000)
    for conn in conns.values():
        conn.command("LOGOUT")
        conn.close()
    return times


def _login_ms(servers: list[Server], samples: int) -> dict[str, list[float]]:
    """LOGIN of a user who logged in before, each on a fresh connection (not timed)."""
    times: dict[str, list[float]] = {server.label: [] for server in servers}
    for _ in range(5):
        for server in servers:
            for _ in range(samples // 5):
                conn = Conn(server.port)
                start = time.perf_counter()
                conn.command('LOGIN "{}" "{}"'.format(*server.big))
                times[server.label].append((time.perf_counter() - start) * 1000)
                conn.command("LOGOUT")
                conn.close()
    return times


def _warm(server: Server) -> None:
    """Every user logs in once and every message is read once: the first read of a
    message indexes it, and the phases are to measure the steady state."""

    def one(login: tuple[str, str]) -> None:
        conn = Conn(server.port)
        conn.command('LOGIN "{}" "{}"'.format(*login))
        conn.command("SELECT INBOX")
        conn.command("FETCH 1:* (FLAGS RFC822.SIZE)")
        conn.command("LOGOUT")
        conn.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, [*server.users, server.big]))


# -- filling ---------------------------------------------------------------------------------


def _inbox(count: int) -> list[bytes]:
    return [
        message(LARGE if i % LARGE_EVERY == LARGE_EVERY - 1 else SMALL, i) for i in range(count)
    ]


async def _fill(data_dir: Path, plan: dict[str, list[bytes]]) -> None:
    config = load_config(None, data_dir=str(data_dir))
    install_server_key(load_server_key(config.server_key_path))
    engine = create_engine(config.database_url)
    blobs = LocalBlobStore(config.blob_path)
    limit = asyncio.Semaphore(8)

    async def one(email: str, data: bytes) -> None:
        async with limit:
            async with engine.connect() as conn:
                user = await get_user(conn, email)

            async def source() -> AsyncIterator[bytes]:
                yield data

            await deliver_message(engine, blobs, user, source(), size_hint=len(data))

    async def user(email: str, messages: list[bytes]) -> None:
        for data in messages:  # in order, so UIDs follow the list
            await one(email, data)

    await asyncio.gather(*(user(email, messages) for email, messages in plan.items()))
    await engine.dispose()


@contextmanager
def _cryptmail(crypt: int, inbox: list[bytes], big: list[bytes]) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        users = [f"u{i}-c{crypt}@example.org" for i in range(USERS)]
        big_user = f"big-c{crypt}@example.org"
        start = time.perf_counter()
        make_users(data_dir, dict.fromkeys([*users, big_user], crypt), CryptoConfig())
        plan = {email: inbox for email in users}
        plan[big_user] = big
        asyncio.run(_fill(data_dir, plan))
        print(f"  cryptmail c{crypt}: filled in {time.perf_counter() - start:.0f} s", flush=True)
        config = Path(tmp) / "cryptmail.toml"
        config.write_text(CRYPTMAIL_CONFIG)
        with cryptmail_server(data_dir, "imap", config=config) as (pid, ports):
            yield Server(
                f"cryptmail c{crypt}",
                ports["imap"],
                partial(tree_cpu_s, pid),
                [(user, PASSWORD) for user in users],
                (big_user, PASSWORD),
                len(inbox),
            )


@contextmanager
def _dovecot(mail_crypt: bool, inbox: list[bytes], big: list[bytes]) -> Iterator[Server]:
    users = [f"u{i}@example.org" for i in range(USERS)]
    big_user = "big@example.org"
    start = time.perf_counter()
    with dovecot_server(mail_crypt, lmtp=True, imap=True, users=[*users, big_user]) as server:
        plan = [(email, inbox) for email in users] + [(big_user, big)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: lmtp_deliver(server.lmtp_port, *p), plan))
        check_dovecot_sealed(server, mail_crypt, user=users[0])
        label = "dovecot crypt" if mail_crypt else "dovecot plain"
        print(f"  {label}: filled in {time.perf_counter() - start:.0f} s", flush=True)
        yield Server(
            label,
            server.imap_port,
            partial(tree_cpu_s, server._process.pid),
            [(user, DOVECOT_LOGIN) for user in users],
            (big_user, DOVECOT_LOGIN),
            len(inbox),
        )


# -- report ----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def _print_load(name: str, tallies: dict[str, Tally]) -> None:
    labels = list(tallies)
    rows: list[tuple[str, list[str]]] = []
    rows.append(("commands/s", [f"{t.commands / t.wall_s:.0f}" for t in tallies.values()]))
    rows.append(
        ("server CPU ms/command", [_per(t.server_cpu_s, t.commands) for t in tallies.values()])
    )
    rows.append(
        ("client CPU ms/command", [_per(t.client_cpu_s, t.commands) for t in tallies.values()])
    )
    rows.append(("errors", [str(sum(t.errors.values())) for t in tallies.values()]))
    for command in COMMANDS:
        if any(command in t.latency for t in tallies.values()):
            cells = [
                f"{_pct(t.latency[command], 0.5):.1f} / {_pct(t.latency[command], 0.99):.1f}"
                if t.latency.get(command)
                else "-"
                for t in tallies.values()
            ]
            rows.append((f"{command} p50 / p99 ms", cells))
    print(f"\n{name}")
    print(f"{'':>24}" + "".join(f"{label:>18}" for label in labels))
    for row, cells in rows:
        print(f"{row:>24}" + "".join(f"{cell:>18}" for cell in cells))
    for label, tally in tallies.items():
        for error, count in tally.errors.most_common(3):
            print(f"  {label}: {count} x {error}")


def _per(cpu_s: float, commands: int) -> str:
    return f"{cpu_s * 1000 / commands:.2f}" if commands else "-"


def _login_cache_note() -> str:
    """Whether this cryptmail has a login cache setting (the bench runs either way)."""
    config = cryptmail.config.Config()
    names = [
        f"{section.name}.{option.name}"
        for section in dataclasses.fields(config)
        if dataclasses.is_dataclass(value := getattr(config, section.name))
        for option in dataclasses.fields(value)
        if "cache" in option.name
    ]
    return f"login cache settings: {', '.join(names)}" if names else "no login cache setting"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="40 messages per user, 6 s phases")
    parser.add_argument("--duration", type=float, default=None, metavar="S")
    parser.add_argument("--connections", default="10,50", metavar="N,N")
    parser.add_argument("--no-dovecot", action="store_true", help="cryptmail only")
    args = parser.parse_args()
    duration = args.duration or (6.0 if args.quick else 30.0)
    counts = [int(n) for n in args.connections.split(",")]
    inbox = _inbox(40 if args.quick else 200)
    big = [message(SMALL, 1_000_000 + i) for i in range(BIG)]
    samples = 50 if args.quick else 200
    print(f"cryptmail: {_login_cache_note()}", flush=True)
    with ExitStack() as running:
        servers = [running.enter_context(_cryptmail(c, inbox, big)) for c in (2, 0)]
        if not args.no_dovecot and dovecot_available():
            servers += [
                running.enter_context(_dovecot(mail_crypt, inbox, big))
                for mail_crypt in (True, False)
            ]
        for server in servers:
            start = time.perf_counter()
            _warm(server)
            print(f"  {server.label}: warmed in {time.perf_counter() - start:.0f} s", flush=True)
        results: dict[tuple[str, int], dict[str, Tally]] = {}
        for profile in ("mixed", "webmail"):
            for connections in counts:
                results[profile, connections] = _load(servers, profile, connections, duration)
                _print_load(f"{profile}, {connections} connections", results[profile, connections])
        selects = _select_ms(servers, samples)
        logins = _login_ms(servers, samples // 5)
    _print_summary(servers, results, selects, logins)


def _print_summary(
    servers: list[Server],
    results: dict[tuple[str, int], dict[str, Tally]],
    selects: dict[str, list[float]],
    logins: dict[str, list[float]],
) -> None:
    print(f"\n{'':>24}" + "".join(f"{server.label:>18}" for server in servers))
    for name, times in ((f"SELECT {BIG} msgs ms", selects), ("LOGIN again ms", logins)):
        cells = [f"{statistics.median(times[s.label]):.2f}" for s in servers]
        print(f"{name + ' (median)':>24}" + "".join(f"{cell:>18}" for cell in cells))
    print()
    rate = {
        key: {label: t.commands / t.wall_s for label, t in tallies.items()}
        for key, tallies in results.items()
    }
    for (profile, connections), rates in rate.items():
        where = f"{profile}, {connections} connections"
        tallies = results[profile, connections]
        worst = max(
            (_pct(values, 0.99) for values in tallies["cryptmail c2"].latency.values()),
            default=0.0,
        )
        errors = sum(tallies["cryptmail c2"].errors.values())
        line = (
            f"{where}: crypt2 / crypt0 {rates['cryptmail c2'] / rates['cryptmail c0']:.2f}x; "
            f"crypt2 errors {errors}, worst p99 {worst:.0f} ms (goal 0 and <= 1000)"
        )
        if "dovecot crypt" in rates:
            goal = 1.5 if profile == "mixed" else 3.0
            line += (
                f"; crypt2 / Dovecot mail-crypt "
                f"{rates['cryptmail c2'] / rates['dovecot crypt']:.2f}x (goal >= {goal}x)"
                f", / Dovecot plain {rates['cryptmail c2'] / rates['dovecot plain']:.2f}x"
            )
        print(line)
    login = statistics.median(logins["cryptmail c2"])
    print(f"LOGIN again, crypt2: {login:.2f} ms (goal < 2 ms with the login cache)")
    if "dovecot crypt" in selects:
        c2, dc = (
            statistics.median(selects["cryptmail c2"]),
            statistics.median(selects["dovecot crypt"]),
        )
        print(f"SELECT of {BIG}, crypt2 / Dovecot mail-crypt: {c2 / dc:.1f}x (goal < 2x)")
    else:
        print("Dovecot baseline: not run")


if __name__ == "__main__":
    main()
