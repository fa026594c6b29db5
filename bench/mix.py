"""Issue 17's whole table in one run: LMTP delivery of a realistic mix, the IMAP read
path, and memory; cryptmail crypt 2 and crypt 0 against Dovecot 2.3 with and without
mail-crypt (secp521r1, as the ISPmail guide sets it up).

    python bench/mix.py [--quick] [--runs N] [--no-dovecot] [--users N]
                        [--recipients N | --recipients 0 --max-recipients N]
                        [--fetch-small N] [--fetch-large N] [--uvloop] [--imap-only]
                        [--select-big N]

Delivery: `--users` users (default 40) on each server; each LMTP transaction names
`--recipients` of them (default 40: every message to 40 users; 0 gives 1 to
`--max-recipients` chosen at random, the same choices for every server: one seed); two
message sets, multipart/alternative of about 4 KB (text and HTML) and multipart/mixed of
about 200 KB (a short text and a base64 PDF-like attachment), each delivered over 1 and
over 8 connections. Rows give stored copies per second (a message to 40 users is 40
copies, as the servers do 40 deliveries). The servers take turns: each set is delivered
in parts (five; three with `--quick`) that go round the servers, and a run's figure is
the median part (see bench/delivery.py for why). While 8 connections deliver, the PSS of
the server's whole process tree is sampled every 50 ms; the row is its peak.

IMAP, on mailboxes of `--fetch-small` x 4 KB (default 1,000) and `--fetch-large` x
200 KB (default 100) of the same two kinds, delivered over LMTP and warmed up before
anything is measured: each mailbox is read once (a message's first read writes its
message cache) while a session of its user stays open until the server's background
pass has put every message in the user's full-text index (`wait_until_indexed` asks the
database as the user; no blind sleep). That work runs only while the user has a session
and each session of a pass would otherwise resume it, competing with what is measured;
the warm-up's duration is printed as its own figure, a cost each user pays once per new
message. Five passes per run, servers
taking turns, a run's figure the median pass: login + SELECT + `FETCH 1:* BODY.PEEK[]`
of the 4 KB mailbox on a new connection (msg/s, as the outside run measured it); the
LOGIN and the SELECT of that pass (ms; the same user logs in every pass, so LOGIN is the
repeat login, which cryptmail's login cache serves, not a first Argon2id); `FETCH 1:*
BODY.PEEK[]` of the 200 KB mailbox on a logged-in, selected connection (msg/s, and the server's CPU
per message over that FETCH: every process of its tree, all threads); the time
from sending a one-message FETCH on a new connection (after LOGIN and SELECT) to its
first byte; and the largest peak RSS (VmHWM) of any of the server's processes at the
end of the run. Each pass also SELECTs the 4 KB mailbox on another new connection after
LOGIN and gives the server's CPU for that SELECT (its process tree, from schedstat);
`--select-big N` adds the same two rows for a mailbox of N messages (issue 17 asks for
50,000; filled as bench/select_login.py fills its large mailbox: rows that share one
delivered blob in cryptmail, Maildir files in Dovecot; one unmeasured SELECT first).
`--imap-only` leaves out the delivery rows. cryptmail c2 and c0 share one `serve`, so
their memory rows are the same.

`--uvloop` runs a second cryptmail `serve` on uvloop's event loop (set by a
`sitecustomize`, see `_servers.cryptmail_server`; `pip install uvloop`), with its own
users, taking its turns with the others; its columns are labelled "uvloop".

`--runs N` repeats the delivery and IMAP rows N times and prints the medians. The table
ends with the ratios crypt 2 / crypt 0 and crypt 2 / Dovecot, and whether each goal of
issue 17 is met. After the runs every user's INBOX is fetched over IMAP from each server
and each copy is checked: the message-id names the message sent, and the copy must end
with its exact bytes (servers add trace headers on top); the FETCH mailboxes are checked
the same way. A server that lost, doubled or changed a copy makes the bench fail loudly
instead of printing its rate.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import imaplib
import os
import random
import re
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from _servers import (
    DOVECOT_LOGIN,
    PASSWORD,
    cryptmail_server,
    dovecot_available,
    dovecot_server,
    hwm_mib,
    lmtp_deliver,
    make_users,
    tree_cpu_s,
    tree_pids,
    wait_until_indexed,
)
from select_login import fill_large_mailbox, maildir_fill

from imap import Client

ROUNDS = 5
SEED = 20261206
_MESSAGE_ID = re.compile(rb"^Message-ID: <(mix-\d+)@example\.net>\r$", re.MULTILINE | re.IGNORECASE)


def alternative(index: int, size: int = 4096) -> bytes:
    """multipart/alternative of about `size` bytes: the same words as text and as HTML."""
    words = " ".join(random.Random(index).choice(_WORDS) for _ in range(size // 14))
    text = "\r\n".join(words[i : i + 72] for i in range(0, len(words), 72)).encode()
    html = b"<html><body><p>" + text.replace(b"\r\n", b"</p>\r\n<p>") + b"</p></body></html>"
    return (
        _head(index, 'multipart/alternative; boundary="alt"')
        + b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text[: size // 3]
        + b"\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html[: size // 2]
        + b"\r\n--alt--\r\n"
    )


def mixed(index: int, size: int = 200_000) -> bytes:
    """multipart/mixed of about `size` bytes: a short text and a base64 'PDF'."""
    pdf = b"%PDF-1.4\n" + os.urandom(size * 3 // 4)
    attachment = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    return (
        _head(index, 'multipart/mixed; boundary="mix"')
        + b"--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + b"The report is attached.\r\n--mix\r\n"
        + b'Content-Type: application/pdf; name="report.pdf"\r\n'
        + b'Content-Disposition: attachment; filename="report.pdf"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--mix--\r\n"
    )


def _head(index: int, content_type: str) -> bytes:
    return (
        b"From: Sender <sender@example.net>\r\nTo: list@example.org\r\n"
        b"Subject: report %d\r\nDate: Sun, 6 Dec 2026 12:00:00 +0000\r\n"
        b"Message-ID: <mix-%d@example.net>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: %s\r\n\r\n" % (index, index, content_type.encode())
    )


_WORDS = (
    "meeting quarterly budget invoice attached please review the numbers before friday "
    "thanks regards project schedule delivery customer feedback update draft final"
).split()


@dataclass(frozen=True)
class Transaction:
    """One LMTP transaction: a message and the users it is for."""

    data: bytes
    recipients: tuple[str, ...]

    @property
    def key(self) -> str:
        """The message's id (its Message-ID's local part), which names it in a copy."""
        found = _MESSAGE_ID.search(self.data)
        if found is None:
            raise ValueError("a bench message without its Message-ID")
        return found.group(1).decode()


@dataclass
class Server:
    label: str
    lmtp: int
    imap: int
    domain_users: list[str]
    login: dict[str, str]
    pids: Callable[[], list[int]] = list
    fetch_users: dict[str, str] = field(default_factory=dict)  # "4 KB" -> address
    root: int = 0  # the server's first process (its tree's CPU is counted from it)
    data_dir: Path | None = None  # cryptmail's, for the warm-up
    rates: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    figures: dict[str, list[float]] = field(default_factory=dict)  # table row -> per run

    def note(self, row: str, value: float) -> None:
        self.figures.setdefault(row, []).append(value)


def deliver(port: int, transactions: Sequence[Transaction], *, users: list[str]) -> None:
    """Deliver over one connection; `users` maps a recipient number to this server's
    address. Every recipient must get 250."""
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as replies:
        _reply(replies)
        sock.sendall(b"LHLO bench.example.net\r\n")
        _reply(replies)
        for item in transactions:
            rcpts = [users[int(r)] for r in item.recipients]
            commands = b"MAIL FROM:<sender@example.net>\r\n" + b"".join(
                b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts
            )
            sock.sendall(commands + b"DATA\r\n")  # PIPELINING (RFC 2920; LMTP has it)
            for _ in range(1 + len(rcpts)):
                _reply(replies, b"2")
            _reply(replies, b"3")
            stuffed = item.data.replace(b"\r\n.", b"\r\n..")
            sock.sendall(stuffed + b".\r\n")
            for _ in rcpts:  # LMTP: one reply per recipient
                _reply(replies, b"2")
        sock.sendall(b"QUIT\r\n")


def _reply(replies: BinaryIO, first: bytes = b"2") -> None:
    while True:
        line = replies.readline()
        if not line.startswith(first):
            raise RuntimeError(f"LMTP server replied {line!r}")
        if line[3:4] != b"-":
            return


def plan(
    sets: dict[str, list[bytes]], users: int, max_rcpt: int, fixed: int
) -> dict[str, list[Transaction]]:
    """The same recipient choices for every server (by user number, as a string):
    `fixed` recipients per message when it is not 0, else 1 to `max_rcpt`."""
    rng = random.Random(SEED)
    planned: dict[str, list[Transaction]] = {}
    for name, messages in sets.items():
        items = []
        for data in messages:
            count = fixed or rng.randint(1, max_rcpt)
            chosen = tuple(str(n) for n in rng.sample(range(users), count))
            items.append(Transaction(data, chosen))
        planned[name] = items
    return planned


def measure(servers: list[Server], name: str, items: list[Transaction], conns: int) -> None:
    """One run of one delivery row: ROUNDS parts going round the servers; the row's
    figure for the run is each server's median part, in stored copies per second."""
    rates: dict[str, list[float]] = {server.label: [] for server in servers}
    for part in (items[i::ROUNDS] for i in range(ROUNDS)):
        copies = sum(len(t.recipients) for t in part)
        streams = [part[i::conns] for i in range(conns)]
        for server in servers:
            sampler = PssSampler(server.pids) if conns > 1 else None
            start = time.perf_counter()
            with ThreadPoolExecutor(conns) as pool:
                list(pool.map(partial(deliver, server.lmtp, users=server.domain_users), streams))
            wall = time.perf_counter() - start
            rates[server.label].append(copies / wall)
            if sampler is not None:
                server.note(ROW_PSS, sampler.stop())
    for server in servers:
        server.note(f"LMTP {name}, {conns} conn, copies/s", statistics.median(rates[server.label]))


class PssSampler:
    """The largest sum of PSS over a server's processes, sampled every 50 ms until stopped."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids
        self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sum(_pss_mib(pid) for pid in self._pids()))
            self._done.wait(0.05)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


def _pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # the process ended meanwhile
    return 0.0


# -- IMAP rows ----------------------------------------------------------------------------


def _session(server: Server, which: str) -> tuple[Client, float]:
    """A fresh connection logged in to `which`'s mailbox and SELECTed; LOGIN's ms."""
    address = server.fetch_users[which]
    client = Client(server.imap)
    start = time.perf_counter()
    client.command(f'LOGIN "{server.login.get(address, address)}" "{_password(server)}"')
    login_ms = (time.perf_counter() - start) * 1000
    return client, login_ms


def measure_imap(servers: list[Server], counts: dict[str, int]) -> None:
    """One run of the IMAP rows, the servers taking turns in each."""
    small, large = counts["4 KB"], counts["200 KB"]
    passes: dict[str, dict[str, list[float]]] = {s.label: {} for s in servers}
    for _ in range(IMAP_PASSES):
        for server in servers:
            got = passes[server.label]
            # login + SELECT + FETCH 1:* of the 4 KB mailbox on a new connection
            start = time.perf_counter()
            client, login_ms = _session(server, "4 KB")
            selected = time.perf_counter()
            client.command('SELECT "INBOX"')
            select_ms = (time.perf_counter() - selected) * 1000
            client.command("FETCH 1:* BODY.PEEK[]")
            got.setdefault(ROW_SMALL, []).append(small / (time.perf_counter() - start))
            got.setdefault(ROW_LOGIN, []).append(login_ms)
            got.setdefault(ROW_SELECT, []).append(select_ms)
            client.close()
            # FETCH 1:* of the 200 KB mailbox, logged in and selected already
            client, _ms = _session(server, "200 KB")
            client.command('SELECT "INBOX"')
            cpu = tree_cpu_s(server.root)
            start = time.perf_counter()
            client.command("FETCH 1:* BODY.PEEK[]")
            got.setdefault(ROW_LARGE, []).append(large / (time.perf_counter() - start))
            got.setdefault(ROW_LARGE_CPU, []).append((tree_cpu_s(server.root) - cpu) / large * 1e3)
            client.close()
            # first byte of a one-message FETCH on a new connection (after its SELECT)
            client, _ms = _session(server, "4 KB")
            client.command('SELECT "INBOX"')
            stamp: list[float] = []
            start = time.perf_counter()
            client.command(f"FETCH {random.randint(1, small)} BODY.PEEK[]", first_byte=stamp)
            got.setdefault(ROW_FIRST_BYTE, []).append((stamp[0] - start) * 1000)
            client.close()
            # SELECT on a new connection, with the server's CPU for it
            for which in ("4 KB", _BIG):
                if which not in server.fetch_users:
                    continue
                client, _ms = _session(server, which)
                root = server.pids()[0]
                cpu = tree_cpu_s(root)
                start = time.perf_counter()
                client.command('SELECT "INBOX"')
                wall_ms = (time.perf_counter() - start) * 1000
                cpu_ms = (tree_cpu_s(root) - cpu) * 1000
                client.close()
                if which == _BIG:
                    got.setdefault(row_select_big(counts[_BIG]), []).append(wall_ms)
                    got.setdefault(row_select_big_cpu(counts[_BIG]), []).append(cpu_ms)
                else:
                    got.setdefault(ROW_SELECT_CPU, []).append(cpu_ms)
    for server in servers:
        for row, values in passes[server.label].items():
            server.note(row, statistics.median(values))
        server.note(ROW_RSS, max([0.0, *(_hwm(pid) for pid in server.pids())]))


def _hwm(pid: int) -> float:
    try:
        return hwm_mib(pid)
    except OSError:
        return 0.0  # the process ended meanwhile


def fill_fetch_mailboxes(server: Server, mailboxes: dict[str, list[bytes]]) -> None:
    """Each FETCH mailbox over LMTP, four connections, before anything is measured."""
    for which, messages in mailboxes.items():
        rcpt = server.fetch_users[which]
        with ThreadPoolExecutor(4) as pool:
            parts = [messages[i::4] for i in range(4)]
            list(pool.map(lambda p, r=rcpt: lmtp_deliver(server.lmtp, r, p), parts))


def warm_up(server: Server, mailboxes: dict[str, list[bytes]], sent: dict[str, bytes]) -> None:
    """Read each FETCH mailbox once; for cryptmail hold a session of each FETCH user open
    until the server has indexed and cached every message. Prints how long it took."""
    start = time.perf_counter()
    held = []
    try:
        if server.data_dir is not None:  # the background pass runs while a session is open
            for address in (server.fetch_users[which] for which in mailboxes):
                imap = imaplib.IMAP4("127.0.0.1", server.imap)
                imap.login(address, _password(server))
                imap.select("INBOX", readonly=True)
                held.append(imap)
        for which in mailboxes:  # the first read of a message writes its message cache
            check_fetch_mailbox(server, which, sent)
        read_s = time.perf_counter() - start
        left = {}
        if server.data_dir is not None:
            left = wait_until_indexed(
                server.data_dir, [server.fetch_users[which] for which in mailboxes]
            )
    finally:
        for imap in held:
            imap.logout()
    total = time.perf_counter() - start
    print(
        f"warm-up of {server.label}: {total:.1f} s (first read of the FETCH mailboxes "
        f"{read_s:.1f} s"
        + (f"; then {sum(left.values())} messages still to index or cache" if left else "")
        + ")",
        flush=True,
    )
    server.note(ROW_WARM_UP, total)


def check_fetch_mailbox(server: Server, which: str, sent: dict[str, bytes]) -> int:
    """Every message of a FETCH mailbox, by SHA-256 of what was sent. Returns the count."""
    address = server.fetch_users[which]
    imap = imaplib.IMAP4("127.0.0.1", server.imap)
    try:
        imap.login(server.login.get(address, address), _password(server))
        imap.select("INBOX", readonly=True)
        typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
        bodies = [part[1] for part in fetched if isinstance(part, tuple)]
    finally:
        imap.logout()
    keys = set()
    for body in bodies:
        found = _MESSAGE_ID.search(body)
        original = sent.get(found.group(1).decode()) if found else None
        if original is None or not body.endswith(original):
            raise RuntimeError(f"{server.label}: a message of the {which} mailbox changed")
        keys.add(found.group(1) if found else b"")
    if typ != "OK" or len(keys) != len(bodies):
        raise RuntimeError(f"{server.label}: the {which} mailbox holds doubles or failed")
    return len(bodies)


def check_copies(server: Server, sent: dict[str, bytes], expected: Counter[str]) -> int:
    """Fetch every INBOX and check each copy against what was sent. Returns copies seen."""
    seen: Counter[str] = Counter()
    for number, address in enumerate(server.domain_users):
        imap = imaplib.IMAP4("127.0.0.1", server.imap)
        try:
            imap.login(server.login.get(address, address), _password(server))
            typ, data = imap.select("INBOX", readonly=True)
            if typ != "OK":
                raise RuntimeError(f"{server.label}: SELECT failed for {address}: {data}")
            count = int(data[0] or b"0")
            if count:
                typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
                for part in fetched:
                    if not isinstance(part, tuple):
                        continue
                    body = part[1]
                    found = _MESSAGE_ID.search(body)
                    if found is None:
                        raise RuntimeError(f"{server.label}: a copy without our Message-ID")
                    key = found.group(1).decode()
                    original = sent[key]
                    if not body.endswith(original):
                        digest = hashlib.sha256(body[-len(original) :]).hexdigest()[:16]
                        raise RuntimeError(
                            f"{server.label}: {key} for {address} changed (sha256 {digest})"
                        )
                    seen[f"{number}:{key}"] += 1
        finally:
            imap.logout()
    if seen != expected:
        missing = sum((expected - seen).values())
        extra = sum((seen - expected).values())
        raise RuntimeError(f"{server.label}: {missing} copies missing, {extra} extra")
    return sum(seen.values())


def _password(server: Server) -> str:
    return DOVECOT_LOGIN if server.label.startswith("dovecot") else PASSWORD


_FETCH_SETS = ("4 KB", "200 KB")
_BIG = "big"


@contextmanager
def cryptmail(users: int, select_big: int = 0, *, uvloop: bool = False) -> Iterator[list[Server]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        c2 = [f"c2-{n}@example.org" for n in range(users)]
        c0 = [f"c0-{n}@example.org" for n in range(users)]
        fetch = {
            c: {w: f"c{c}-fetch{i}@example.org" for i, w in enumerate(_FETCH_SETS)} for c in (2, 0)
        }
        if select_big:
            for c in (2, 0):
                fetch[c][_BIG] = f"c{c}-big@example.org"
        make_users(
            data_dir,
            {
                **dict.fromkeys(c2, 2),
                **dict.fromkeys(c0, 0),
                **{a: c for c, names in fetch.items() for a in names.values()},
            },
        )
        if select_big:
            for c in (2, 0):
                fill_large_mailbox(data_dir, fetch[c][_BIG], select_big)
        with cryptmail_server(data_dir, "lmtp", "imap", uvloop=uvloop) as (pid, ports):
            suffix = " uvloop" if uvloop else ""
            yield [
                Server(
                    f"cryptmail c{crypt}{suffix}", ports["lmtp"], ports["imap"], names, {},
                    partial(tree_pids, pid), fetch[crypt], root=pid, data_dir=data_dir,
                )
                for crypt, names in ((2, c2), (0, c0))
            ]  # fmt: skip


@contextmanager
def dovecot(mail_crypt: bool, users: int, select_big: int = 0) -> Iterator[Server]:
    names = [f"user{n}@example.org" for n in range(users)]
    fetch = {w: f"fetch{i}@example.org" for i, w in enumerate(_FETCH_SETS)}
    if select_big:
        fetch[_BIG] = "big@example.org"
    with dovecot_server(
        mail_crypt, lmtp=True, imap=True, users=[*names, *fetch.values()]
    ) as server:
        if select_big:
            maildir_fill(server, fetch[_BIG], select_big)
        label = "dovecot crypt" if mail_crypt else "dovecot plain"
        assert server.lmtp_port is not None and server.imap_port is not None
        root = server._process.pid
        yield Server(
            label, server.lmtp_port, server.imap_port, names, {}, partial(tree_pids, root), fetch,
            root=root,
        )  # fmt: skip


ROW_SMALL = "login+SELECT+FETCH 1:* 1,000 x 4 KB, msg/s"
ROW_LARGE = "FETCH 1:* 100 x 200 KB, msg/s"
ROW_LARGE_CPU = "FETCH 1:* 100 x 200 KB, server CPU ms/msg"
ROW_WARM_UP = "warm-up: first read of the FETCH mailboxes and their indexing, s"
ROW_SELECT = "SELECT of 1,000, ms"
ROW_SELECT_CPU = "SELECT of 1,000, new conn, server CPU ms"


def row_select_big(count: int) -> str:
    return f"SELECT of {count:,}, new conn, ms"


def row_select_big_cpu(count: int) -> str:
    return f"SELECT of {count:,}, new conn, server CPU ms"


ROW_LOGIN = "LOGIN, ms"
ROW_RSS = "largest process, peak RSS MB"
ROW_PSS = "process tree at 8 LMTP conns, peak PSS MB"
ROW_FIRST_BYTE = "first byte of a FETCH, new conn, ms"
IMAP_PASSES = 5
"""Passes of the IMAP rows per run; a run's figure is their median."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages per row")
    parser.add_argument("--no-dovecot", action="store_true", help="cryptmail only")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument(
        "--recipients", type=int, default=40, help="per message (0: 1 to --max-recipients)"
    )
    parser.add_argument("--max-recipients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1, help="whole runs; the table gives medians")
    parser.add_argument("--fetch-small", type=int, default=1000, metavar="N")
    parser.add_argument("--fetch-large", type=int, default=100, metavar="N")
    parser.add_argument("--uvloop", action="store_true", help="also a serve on uvloop")
    parser.add_argument("--imap-only", action="store_true", help="no delivery rows")
    parser.add_argument(
        "--select-big", type=int, default=0, metavar="N", help="SELECT of N messages too"
    )
    args = parser.parse_args()
    if args.recipients > args.users:
        parser.error("--recipients cannot exceed --users")
    global ROUNDS
    if args.quick:  # three parts of 16 (4 KB) or 8 (200 KB) messages: 8 connections busy
        ROUNDS = 3
    small, large = (48, 24) if args.quick else (80, 40)
    sets = {
        f"{name} x{conns} r{run}": [make(i) for i in range(base, base + count)]
        for run in range(args.runs)
        for conns in (1, 8)
        for name, make, count, base in (
            ("4 KB", alternative, small, run * 1_000_000 + conns * 100_000),
            ("200 KB", mixed, large, run * 1_000_000 + conns * 100_000 + 50_000),
        )
    }
    planned = plan(sets, args.users, args.max_recipients, args.recipients)
    sent = {t.key: t.data for items in planned.values() for t in items}
    expected: Counter[str] = Counter(
        f"{r}:{t.key}" for items in planned.values() for t in items for r in t.recipients
    )
    mailboxes = {
        "4 KB": [alternative(9_000_000 + i) for i in range(args.fetch_small)],
        "200 KB": [mixed(9_500_000 + i) for i in range(args.fetch_large)],
    }
    for messages in mailboxes.values():
        sent.update({Transaction(m, ()).key: m for m in messages})
    counts = {which: len(messages) for which, messages in mailboxes.items()}
    if args.select_big:
        counts[_BIG] = args.select_big
        _GOALS[row_select_big(args.select_big)] = ("dovecot crypt", 2.0, "max")
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with ExitStack() as running:
        servers = running.enter_context(cryptmail(args.users, args.select_big))
        if args.uvloop:
            servers += running.enter_context(cryptmail(args.users, args.select_big, uvloop=True))
        if not args.no_dovecot and dovecot_available():
            for mail_crypt in (True, False):
                servers.append(
                    running.enter_context(dovecot(mail_crypt, args.users, args.select_big))
                )
        for server in servers:
            fill_fetch_mailboxes(server, mailboxes)
            warm_up(server, mailboxes, sent)
            if _BIG in server.fetch_users:  # claims (cryptmail) or indexes (Dovecot) it
                client, _ms = _session(server, _BIG)
                client.command('SELECT "INBOX"')
                client.close()
        for run in range(args.runs):
            for key, items in planned.items():
                if key.endswith(f" r{run}") and not args.imap_only:
                    name, conns = key.rsplit(" r", 1)[0].rsplit(" x", 1)
                    measure(servers, name, items, int(conns))
            measure_imap(servers, counts)
            print(f"run {run + 1} of {args.runs} done", flush=True)
        if args.imap_only:
            expected = Counter()
        for server in servers:
            copies = check_copies(server, sent, expected)
            fetched = sum(check_fetch_mailbox(server, w, sent) for w in mailboxes)
            print(f"{server.label}: {copies} copies and {fetched} FETCH messages checked")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    _print(servers, args)


_GOALS: dict[str, tuple[str, float, str]] = {
    # row -> (the server the ratio is against, goal, "min" or "max" for c2 / it)
    "LMTP 4 KB, 1 conn, copies/s": ("dovecot crypt", 2.0, "min"),
    "LMTP 4 KB, 8 conn, copies/s": ("dovecot crypt", 2.0, "min"),
    "LMTP 200 KB, 1 conn, copies/s": ("dovecot crypt", 2.0, "min"),
    "LMTP 200 KB, 8 conn, copies/s": ("dovecot crypt", 2.0, "min"),
    ROW_SMALL: ("dovecot crypt", 25.0, "min"),
    ROW_LARGE: ("dovecot crypt", 5.0, "min"),
    ROW_SELECT: ("dovecot crypt", 2.0, "max"),
}
_SECOND_GOALS = {ROW_SMALL: ("dovecot plain", 0.3, "min")}


def _print(servers: list[Server], args: argparse.Namespace) -> None:
    by = {s.label: s for s in servers}
    rows = list(dict.fromkeys(r for s in servers for r in s.figures))
    print()
    print(
        f"{args.runs} run(s), medians; {args.users} users, "
        + (f"{args.recipients} recipients per message" if args.recipients else "1 to "
           f"{args.max_recipients} recipients per message")
        + "; cryptmail c2 and c0 share one serve (same memory rows)"
    )  # fmt: skip
    print()
    print("| work | " + " | ".join(s.label for s in servers) + " | c2 / c0 | c2 ratio, goal |")
    print("|---|" + "---|" * (len(servers) + 2))
    for row in rows:
        med = {s.label: statistics.median(s.figures[row]) for s in servers if row in s.figures}
        cells = [_figure(med[s.label]) if s.label in med else "-" for s in servers]
        c2 = med.get("cryptmail c2")
        c0 = med.get("cryptmail c0")
        ratio = f"{c2 / c0:.2f}x" if c2 and c0 else "-"
        goals = []
        for table in (_GOALS, _SECOND_GOALS):
            if row not in table or table[row][0] not in by or not c2:
                continue
            other, goal, kind = table[row]
            value = c2 / med[other]
            met = value >= goal if kind == "min" else value <= goal
            bound = ">=" if kind == "min" else "<="
            goals.append(
                f"{value:.2f}x of {other} (goal {bound} {goal}x: {'met' if met else 'NOT met'})"
            )
        print(f"| {row} | " + " | ".join(cells) + f" | {ratio} | {'; '.join(goals) or '-'} |")
    _print_uvloop(servers, rows)


def _figure(value: float) -> str:
    """One decimal, two below 10 (server CPU per message is a fraction of a ms)."""
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _print_uvloop(servers: list[Server], rows: list[str]) -> None:
    """uvloop over asyncio, per crypt level and row (with `--uvloop`)."""
    by = {s.label: s for s in servers}
    if "cryptmail c2 uvloop" not in by:
        return
    print()
    print("| work | c2: uvloop / asyncio | c0: uvloop / asyncio |")
    print("|---|---|---|")
    for row in rows:
        cells = []
        for crypt in ("c2", "c0"):
            plain, uv = by[f"cryptmail {crypt}"], by[f"cryptmail {crypt} uvloop"]
            if row in plain.figures and row in uv.figures:
                base = statistics.median(plain.figures[row])
                cells.append(f"{statistics.median(uv.figures[row]) / base:.2f}x" if base else "-")
            else:
                cells.append("-")
        print(f"| {row} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
