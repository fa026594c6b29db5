"""IMAP read path: cryptmail crypt=2 and crypt=0 against Dovecot with and without mail-crypt.

    python bench/imap.py [--quick] [--large-count N] [--no-dovecot]
    python bench/imap.py --sort [--sort-count N] [--sort-idle S] [--crypt 2,0] [--no-dovecot]

In one run, for each server: login + SELECT + ``FETCH 1:* BODY.PEEK[]`` of 1,000 x 4 KB
and 100 x 200 KB messages (the first pass after delivery, then the median of seven warm
passes, each on a fresh connection); the time to the first byte of a one-message FETCH
on a fresh connection; the median NOOP and one-message FETCH latency in mailboxes of
1,000 and N messages (default 10,000; issue 4's figure is `--large-count 50000`, which
fills for several minutes); and the server's peak RSS while a 20 MB message is fetched.

cryptmail's mailboxes are filled through the store API before the server starts (one
user per mailbox). Dovecot 2.3 (when installed) is started by the integration runner
with LMTP and IMAP on loopback: the 4 KB set arrives over LMTP, the others through
`doveadm save`, and the N-message mailbox is written as Maildir files directly (plain
Dovecot only: mail-crypt would need N `doveadm save` runs). Goals, as ratios printed at
the end: warm encrypted 4 KB FETCH >= 20x Dovecot mail-crypt and >= 0.25x Dovecot plain.
All servers run side by side and the rate passes go round them in turn, so a slow phase
of a shared machine lands on every server instead of on one side of a ratio.
CRYPTMAIL_BENCH_PROFILE=out.prof profiles the cryptmail server. No asserts: numbers only.

``--sort`` measures SORT and THREAD instead (issue 16): one mailbox of N messages
(default 10,000; 50,000 with ``--sort-count 50000``) with varied subjects, senders,
dates and reply chains, delivered over LMTP to every server; then, for each server,
the first SORT (ARRIVAL) after delivery on a fresh session (it reads or builds every
message's keys) and, for cryptmail, the first SORT of a second user with the same mail
whose session waited ``--sort-idle`` seconds (default 60) after SELECT first, the time
the background pass has to seal message caches (how many it left is printed; Dovecot
parsed at delivery, so it has no such row); then for SORT ARRIVAL, DATE, SUBJECT, FROM
and THREAD=REFERENCES the median of five runs in one session ("warm") and of five runs
each on a fresh login + SELECT ("new session", the way a webmail page asks). Goal: within 2x Dovecot
plain, printed as ratios at the end. ``--sort-wait-pass`` idles until the pass has read and
recorded every message instead (``--sort-idle`` the most it waits); ``--sort-dovecot-uncached``
also asks plain Dovecot each command first on a new session with its index and header
cache files removed (the fixed order asks its SUBJECT and FROM after its DATE cached what
they read). ``--sort-before-pass`` measures only the first run of each command of
``--sort-first`` on a fresh session, before any background pass, each on a user of its
own whose copies came with delivery's sort entries (as LMTP delivers), the first SORT
(DATE) also on one filled without them (the slow path, the same run's baseline), next
to plain Dovecot's first run of each (in turn, on a new session; with
``--sort-dovecot-uncached`` also each on its index removed). Ours are also asked in
turn of one user, as Dovecot's are.
Every figure also has the server's CPU per command (its process tree's schedstat around
the command); cryptmail's includes whatever its background pass did meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _servers import (
    BENCH_CRYPTO,
    DOVECOT_LOGIN,
    DOVECOT_USER,
    PASSWORD,
    check_dovecot_sealed,
    cryptmail_server,
    dovecot_available,
    dovecot_server,
    hwm_mib,
    lmtp_deliver,
    make_users,
    message,
    tree_cpu_s,
    tree_pids,
)

from cryptmail.config import load_config
from cryptmail.db import create_engine
from cryptmail.keys import install_server_key, load_server_key
from cryptmail.store import (
    DeliveryEpochs,
    DeliveryJob,
    SortFields,
    deliver_many,
    deliver_message,
    header_sort_fields,
    resolve_delivery,
)
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import get_user

SMALL, LARGE, HUGE = 4096, 200_000, 20_000_000
SAMPLES = 200
WARM_PASSES = 7


class Client:
    """A minimal IMAP client over a raw socket, so the client costs little per message."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._tag = 0
        self._buffer = b""
        while b"\r\n" not in self._buffer:
            self._buffer += self.sock.recv(65536)
        self._buffer = b""

    def command(self, text: str, *, first_byte: list[float] | None = None) -> int:
        """Send one command, read to its tagged reply; returns the bytes received."""
        self._tag += 1
        tag = b"b%d " % self._tag
        self.sock.sendall(tag + text.encode() + b"\r\n")
        received, tail = 0, b""
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"server closed the connection after {text!r}")
            if first_byte is not None and received == 0:
                first_byte.append(time.perf_counter())
            received += len(data)
            tail = (tail + data)[-4096:]
            if tail.endswith(b"\r\n"):
                start = tail.rfind(b"\r\n", 0, len(tail) - 2) + 2
                line = tail[start:] if start >= 2 else tail
                if line.startswith(tag):
                    if not line[len(tag) :].startswith(b"OK"):
                        raise RuntimeError(f"{text!r}: {line!r}")
                    return received

    def close(self) -> None:
        try:
            self.command("LOGOUT")
        except (OSError, RuntimeError):
            pass
        self.sock.close()


@dataclass
class Server:
    """One server as the bench sees it: where each mailbox is and how to log in to it."""

    label: str
    port: int
    pids: Callable[[], list[int]]
    login: Callable[[str], tuple[str, str, str]]  # set name -> user, password, mailbox
    sets: set[str] = field(default_factory=set)
    uncached: Callable[[str], tuple[int, int]] | None = None
    """Messages of a set's user that no session has read yet, and those without
    recorded sort keys (cryptmail only)."""
    drop_cache: Callable[[], None] | None = None
    """Remove the mailbox's index and cache of parsed header fields (plain Dovecot
    only: its dovecot.index*), so the next command parses every header again."""

    def cpu_s(self) -> float:
        return sum(tree_cpu_s(pid) for pid in self.pids())


def _session(server: Server, name: str) -> Client:
    user, password, mailbox = server.login(name)
    client = Client(server.port)
    client.command(f'LOGIN "{user}" "{password}"')
    client.command(f'SELECT "{mailbox}"')
    return client


def _fetch_all(server: Server, name: str, count: int) -> float:
    """msg/s for login + SELECT + FETCH 1:* BODY.PEEK[] on a fresh connection."""
    start = time.perf_counter()
    client = _session(server, name)
    client.command("FETCH 1:* BODY.PEEK[]")
    wall = time.perf_counter() - start
    client.close()
    return count / wall


def _first_byte_ms(server: Server, name: str, count: int) -> float:
    """Connect, login, SELECT, then FETCH one message: ms from connect to its first byte."""
    start = time.perf_counter()
    client = _session(server, name)
    stamp: list[float] = []
    client.command(f"FETCH {random.randint(1, count)} BODY.PEEK[]", first_byte=stamp)
    client.close()
    return (stamp[0] - start) * 1000


def _latency_ms(server: Server, name: str, count: int) -> tuple[float, float]:
    """Median NOOP and one-message FETCH BODY.PEEK[] latency on one connection.

    Every message is read once first (`FETCH 1:* RFC822.SIZE`): a message's first read
    also indexes it, and the samples are to compare mailbox sizes, not first reads.
    """
    client = _session(server, name)
    client.command("FETCH 1:* RFC822.SIZE")
    noops, fetches = [], []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        client.command("NOOP")
        noops.append(time.perf_counter() - start)
    for _ in range(SAMPLES):
        start = time.perf_counter()
        client.command(f"FETCH {random.randint(1, count)} BODY.PEEK[]")
        fetches.append(time.perf_counter() - start)
    client.close()
    return statistics.median(noops) * 1000, statistics.median(fetches) * 1000


def _huge_rss_mib(server: Server) -> tuple[float, float]:
    """Peak RSS (MiB) of the server processes before and after one 20 MB message is fetched.

    Before: the peak of everything measured so far, after SELECT of the 20 MB mailbox.
    """
    client = _session(server, "huge")
    before = _peak_mib(server)
    client.command("FETCH 1 BODY.PEEK[]")
    after = _peak_mib(server)
    client.close()
    return before, after


def _peak_mib(server: Server) -> float:
    """The largest peak RSS among the server's processes (Dovecot's come and go)."""
    peaks = [0.0]
    for pid in server.pids():
        try:
            peaks.append(hwm_mib(pid))
        except FileNotFoundError:
            pass  # the process ended between listing and reading
    return max(peaks)


@dataclass
class Figures:
    rates: dict[str, float] = field(default_factory=dict)  # "4 KB first" -> msg/s
    first_byte_ms: float = 0.0
    latency: dict[int, tuple[float, float]] = field(default_factory=dict)
    huge_rss_mib: tuple[float, float] = (0.0, 0.0)


def _measure(servers: list[Server], counts: dict[str, int]) -> dict[str, Figures]:
    """Every figure of every server. The rate passes go round the servers in turn, so a
    slow phase of this shared machine falls on all of them alike instead of deciding a
    ratio; the other figures are each server's own."""
    results = {server.label: Figures() for server in servers}
    for name, label in (("small", "4 KB"), ("large", "200 KB")):
        for server in servers:
            rate = _fetch_all(server, name, counts[name])
            results[server.label].rates[f"{label} first"] = rate
        warm: dict[str, list[float]] = {server.label: [] for server in servers}
        for _ in range(WARM_PASSES):
            for server in servers:
                warm[server.label].append(_fetch_all(server, name, counts[name]))
        for server in servers:
            results[server.label].rates[f"{label} warm"] = statistics.median(warm[server.label])
    for server in servers:
        figures = results[server.label]
        figures.first_byte_ms = _first_byte_ms(server, "small", counts["small"])
        figures.latency[counts["small"]] = _latency_ms(server, "small", counts["small"])
        if "count" in server.sets:
            figures.latency[counts["count"]] = _latency_ms(server, "count", counts["count"])
        figures.huge_rss_mib = _huge_rss_mib(server)
    return results


# -- filling ---------------------------------------------------------------------------------


def _sets(counts: dict[str, int]) -> dict[str, list[bytes]]:
    return {
        "small": [message(SMALL, i) for i in range(counts["small"])],
        "large": [message(LARGE, i) for i in range(counts["large"])],
        "huge": [message(HUGE, 0)],
    }


def _count_message(index: int) -> bytes:
    return b"From: bench@example.net\r\nSubject: n%d\r\n\r\n%s\r\n" % (index, b"x" * 900)


async def _fill(data_dir: Path, plan: dict[str, list[bytes] | int]) -> None:
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

    for email, messages in plan.items():
        if isinstance(messages, int):
            for base in range(0, messages, 500):
                batch = range(base, min(messages, base + 500))
                await asyncio.gather(*(one(email, _count_message(i)) for i in batch))
        else:
            for data in messages:  # in order, so UIDs follow the list
                await one(email, data)
    await engine.dispose()


@contextmanager
def _cryptmail(crypt: int, sets: dict[str, list[bytes]], count: int) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        names = [*sets, "count"]
        make_users(data_dir, {f"{name}-c{crypt}@example.org": crypt for name in names})
        plan: dict[str, list[bytes] | int] = {
            f"{n}-c{crypt}@example.org": m for n, m in sets.items()
        }
        plan[f"count-c{crypt}@example.org"] = count
        start = time.perf_counter()
        asyncio.run(_fill(data_dir, plan))
        print(f"  cryptmail c{crypt}: filled in {time.perf_counter() - start:.0f} s", flush=True)
        with cryptmail_server(data_dir, "imap") as (pid, ports):
            yield Server(
                f"cryptmail c{crypt}",
                ports["imap"],
                lambda: [pid],
                lambda name: (f"{name}-c{crypt}@example.org", PASSWORD, "INBOX"),
                set(names),
            )


def _maildir_fill(server: object, folder: str, count: int) -> None:
    """Write `count` messages as Maildir files, as if Dovecot had delivered them."""
    base = server.home(DOVECOT_USER) / "Maildir" / f".{folder}"  # type: ignore[attr-defined]
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    for index in range(count):
        data = _count_message(index)
        name = f"{now - count + index}.M{index}P1.bench,S={len(data)}:2,S"
        (base / "cur" / name).write_bytes(data)
    server.give_to_mail_user(base)  # type: ignore[attr-defined]


@contextmanager
def _dovecot(mail_crypt: bool, sets: dict[str, list[bytes]], count: int) -> Iterator[Server]:
    with dovecot_server(mail_crypt, lmtp=True, imap=True) as server:
        start = time.perf_counter()
        small = sets["small"]
        with ThreadPoolExecutor(4) as pool:
            parts = [small[i::4] for i in range(4)]
            list(pool.map(lambda p: lmtp_deliver(server.lmtp_port, DOVECOT_USER, p), parts))
        for name in ("large", "huge"):
            server.doveadm("mailbox", "create", "-u", DOVECOT_USER, name)
            for data in sets[name]:
                server.save(DOVECOT_USER, data, name)
        names = {"small", "large", "huge"}
        if not mail_crypt:
            _maildir_fill(server, "count", count)
            names.add("count")
        check_dovecot_sealed(server, mail_crypt)
        label = "dovecot crypt" if mail_crypt else "dovecot plain"
        print(f"  {label}: filled in {time.perf_counter() - start:.0f} s", flush=True)
        root = server._process.pid
        yield Server(
            label,
            server.imap_port,
            lambda: tree_pids(root),
            lambda name: (DOVECOT_USER, DOVECOT_LOGIN, "INBOX" if name == "small" else name),
            names,
        )


# -- report ----------------------------------------------------------------------------------


def _print(results: dict[str, Figures], counts: dict[str, int]) -> None:
    labels = list(results)
    rows: list[tuple[str, list[str]]] = []
    for key in ("4 KB first", "4 KB warm", "200 KB first", "200 KB warm"):
        rows.append((f"FETCH 1:* {key} msg/s", [f"{results[s].rates[key]:.0f}" for s in labels]))
    rows.append(("first byte, fresh conn ms", [f"{results[s].first_byte_ms:.1f}" for s in labels]))
    for n in sorted({counts["small"], counts["count"]}):
        for which, index in (("NOOP", 0), ("FETCH 1 msg", 1)):
            cells = [
                f"{results[s].latency[n][index]:.2f}" if n in results[s].latency else "-"
                for s in labels
            ]
            rows.append((f"{which} at {n} ms (median)", cells))
    rss = [results[s].huge_rss_mib for s in labels]
    rows.append(("peak RSS before 20 MB MiB", [f"{before:.0f}" for before, _ in rss]))
    rows.append(("peak RSS after 20 MB MiB", [f"{after:.0f}" for _, after in rss]))
    print()
    print(f"{'':>30}" + "".join(f"{s:>16}" for s in labels))
    for name, cells in rows:
        print(f"{name:>30}" + "".join(f"{c:>16}" for c in cells))
    print()
    c2 = results["cryptmail c2"].rates["4 KB warm"]
    c0 = results["cryptmail c0"].rates["4 KB warm"]
    print(f"warm 4 KB FETCH, crypt2 / crypt0: {c2 / c0:.2f}x")
    if "dovecot crypt" in results:
        dc = results["dovecot crypt"].rates["4 KB warm"]
        dp = results["dovecot plain"].rates["4 KB warm"]
        print(f"warm 4 KB FETCH, crypt2 / Dovecot mail-crypt: {c2 / dc:.1f}x (goal >= 20x)")
        print(f"warm 4 KB FETCH, crypt2 / Dovecot plain: {c2 / dp:.2f}x (goal >= 0.25x)")
    else:
        print("Dovecot baseline: not run")


# -- SORT and THREAD (--sort) ----------------------------------------------------------------

SORT_COMMANDS = [
    "SORT (ARRIVAL) UTF-8 ALL", "SORT (DATE) UTF-8 ALL", "SORT (SUBJECT) UTF-8 ALL",
    "SORT (FROM) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL",
]  # fmt: skip
SORT_RUNS = 5
_WORDS = ["report", "meeting", "invoice", "résumé", "lunch", "release", "backup", "plan"]


def _sort_message(index: int) -> bytes:
    """Varied keys: a thread every few messages, subjects with Re:/[list], encoded words."""
    rng = random.Random(index)
    topic = index // 7
    subject = f"{_WORDS[topic % len(_WORDS)]} {topic}"
    if index % 7:
        subject = rng.choice(["Re: ", "RE: Re: ", "[list] Re: ", "Fwd: "]) + subject
    subject_bytes = subject.encode()
    if "é" in subject:
        subject_bytes = b"=?utf-8?q?" + subject.replace(" ", "_").encode("utf-8").replace(
            "é".encode(), b"=C3=A9"
        ) + b"?="  # fmt: skip
    sender = rng.randrange(500)
    day, second = 1 + rng.randrange(28), rng.randrange(86400)
    refs = b""
    if index % 7:
        parent = index - 1 - rng.randrange(index % 7)
        refs = b"References: <t%d@example.org> <t%d@example.org>\r\n" % (topic * 7, parent)
    return (
        b"From: Sender %d <sender%d@example.net>\r\nTo: user@example.org\r\n"
        b"Subject: %s\r\nDate: %d Jan 2024 %02d:%02d:%02d +0000\r\n"
        b"Message-ID: <t%d@example.org>\r\n%s\r\n%s\r\n"
        % (sender, sender, subject_bytes, day, second // 3600, second // 60 % 60, second % 60,
           index, refs, b"body line\r\n" * (1 + index % 20))
    )  # fmt: skip


@dataclass
class SortFigures:
    first_ms: float = 0.0
    first_cpu_ms: float = 0.0
    first_slow_ms: float = 0.0
    """The first SORT (DATE) on a user filled without delivery's sort entries (the slow
    path; ARRIVAL needs no key, so it would show nothing)."""
    first_slow_cpu_ms: float = 0.0
    fresh: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``--sort-before-pass``: command -> (ms, server CPU ms) of its first run on a fresh
    session before any pass (cryptmail: a user of its own whose mail came with sort
    entries; Dovecot: the first time the command is asked, in turn, on a new session)."""
    in_turn: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``--sort-before-pass``: the same, each command asked in turn of one user on a new
    session after the first SORT (ARRIVAL), as Dovecot's are (Dovecot: the same run)."""
    idle: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Command -> (ms, server CPU ms) of its first run: cryptmail's on a user whose
    session sat idle first (the pass done), Dovecot's the first time it is asked."""
    idle_rss: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Command -> (RSS before, peak RSS during it) of the server, MiB."""
    uncached: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Command -> (ms, server CPU ms) of plain Dovecot's run of it first after its index
    cache was removed (``--sort-dovecot-uncached``): every criterion first, in turn."""
    idle_left: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Command -> (never-read messages, messages without recorded keys) by then."""
    warm_ms: dict[str, float] = field(default_factory=dict)
    warm_cpu_ms: dict[str, float] = field(default_factory=dict)
    session_ms: dict[str, float] = field(default_factory=dict)
    session_cpu_ms: dict[str, float] = field(default_factory=dict)


def _sort_ms(server: Server, client: Client, command: str) -> tuple[float, float]:
    """Wall and server CPU milliseconds of one command."""
    cpu = server.cpu_s()
    start = time.perf_counter()
    client.command(command)
    wall = (time.perf_counter() - start) * 1000
    return wall, (server.cpu_s() - cpu) * 1000


def _rss_mib(server: Server) -> float:
    """The largest current RSS among the server's processes."""
    found = [0.0]
    for pid in server.pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return max(found)


def _reset_peaks(server: Server) -> None:
    """Start every server process's peak RSS (VmHWM) afresh (Linux: clear_refs 5)."""
    for pid in server.pids():
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass  # gone, or not ours to reset: its peak then covers more than the command


def _first_name(command: str) -> str:
    return command.split()[1].strip("()") if command.startswith("SORT") else "THREAD"


def _measure_uncached(servers: list[Server], results: dict[str, SortFigures]) -> None:
    """Each command once more on every server that can drop its cache of header fields,
    with it dropped first and a new session: the command parses every header itself,
    as cryptmail's first command of a session opens its record itself (the fixed order
    asks Dovecot's SUBJECT and FROM after its DATE has cached every field they read)."""
    for command in SORT_COMMANDS:
        for server in servers:
            if server.drop_cache is None:
                continue
            server.drop_cache()
            client = _session(server, "sort")
            results[server.label].uncached[command] = _sort_ms(server, client, command)
            client.close()


def _idle_names(idle: dict[tuple[str, str], Client]) -> list[tuple[str, str]]:
    """(server label, set name) of each idle session."""
    return [(label, f"idle-{_first_name(command)}") for label, command in idle]


def _wait_for_pass(servers: list[Server], names: list[str], limit_s: float) -> None:
    """Sleep until no idle user of any server has a never-read or unrecorded message
    left (read every 15 s, as the user would: it costs a key unlock each), or
    ``limit_s``; the time it took is printed."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        time.sleep(min(15.0, max(0.0, limit_s - (time.monotonic() - start))))
        left = [
            server.uncached(name)
            for server in servers
            if server.uncached is not None
            for name in names
            if name in server.sets
        ]
        if all(pair == (0, 0) for pair in left):
            break
    print(f"  waited {time.monotonic() - start:.0f} s", flush=True)


def _measure_sort(
    servers: list[Server],
    idle_s: float,
    firsts: list[str],
    wait_pass: bool = False,
    before_pass: bool = False,
) -> dict[str, SortFigures]:
    results = {server.label: SortFigures() for server in servers}
    for server in servers:
        if "sort" not in server.sets:
            continue
        client = _session(server, "sort")
        figures = results[server.label]
        figures.first_ms, figures.first_cpu_ms = _sort_ms(server, client, SORT_COMMANDS[0])
        client.close()
        if "sort-slow" in server.sets:
            client = _session(server, "sort-slow")
            measured = _sort_ms(server, client, SORT_COMMANDS[1])
            figures.first_slow_ms, figures.first_slow_cpu_ms = measured
            client.close()
    if before_pass:
        for command in SORT_COMMANDS[1:]:
            name = _first_name(command)
            if name not in firsts:
                continue
            for server in servers:
                figures = results[server.label]
                if "sort" not in server.sets:
                    continue
                if f"fresh-{name}" in server.sets:
                    client = _session(server, f"fresh-{name}")
                    figures.fresh[command] = _sort_ms(server, client, command)
                    client.close()
                client = _session(server, "sort")
                figures.in_turn[command] = _sort_ms(server, client, command)
                figures.fresh.setdefault(command, figures.in_turn[command])
                client.close()
        return results
    firsts_asked = [c for c in SORT_COMMANDS if _first_name(c) in firsts]
    idle = {
        (s.label, c): _session(s, f"idle-{_first_name(c)}")
        for s in servers
        for c in firsts_asked
        if f"idle-{_first_name(c)}" in s.sets
    }
    if idle and wait_pass:
        print(f"  {len(idle)} idle sessions wait for the pass (at most {idle_s:.0f} s)", flush=True)
        _wait_for_pass(servers, [name for _label, name in _idle_names(idle)], idle_s)
    elif idle:
        print(f"  {len(idle)} idle sessions wait {idle_s:.0f} s", flush=True)
        time.sleep(idle_s)
    for command in firsts_asked:
        for server in servers:
            figures = results[server.label]
            name = f"idle-{_first_name(command)}"
            waited = idle.pop((server.label, command), None)
            if waited is None:  # Dovecot: its first run of the command, new session
                if command == SORT_COMMANDS[0] and "sort" in server.sets:
                    continue  # that was the fresh-session row
                client = _session(server, "sort")
            else:
                client = waited
                if server.uncached is not None:
                    figures.idle_left[command] = server.uncached(name)
            before = _rss_mib(server)
            _reset_peaks(server)
            figures.idle[command] = _sort_ms(server, client, command)
            figures.idle_rss[command] = (before, _peak_mib(server))
            client.close()
    for command in SORT_COMMANDS:
        warm: dict[str, list[tuple[float, float]]] = {server.label: [] for server in servers}
        fresh: dict[str, list[tuple[float, float]]] = {server.label: [] for server in servers}
        clients = {server.label: _session(server, "warm") for server in servers}
        for _ in range(SORT_RUNS):  # round the servers in turn, as the rate passes do
            for server in servers:
                warm[server.label].append(_sort_ms(server, clients[server.label], command))
                cpu = server.cpu_s()
                start = time.perf_counter()
                client = _session(server, "warm")
                client.command(command)
                wall = (time.perf_counter() - start) * 1000
                fresh[server.label].append((wall, (server.cpu_s() - cpu) * 1000))
                client.close()
        for server in servers:
            clients[server.label].close()
            figures = results[server.label]
            figures.warm_ms[command] = statistics.median(w for w, _c in warm[server.label])
            figures.warm_cpu_ms[command] = statistics.median(c for _w, c in warm[server.label])
            figures.session_ms[command] = statistics.median(w for w, _c in fresh[server.label])
            figures.session_cpu_ms[command] = statistics.median(c for _w, c in fresh[server.label])
    return results


def _left_of(data_dir: Path) -> Callable[[str], tuple[int, int]]:
    """(rows without a sealed cache, INBOX messages without recorded sort keys) of a
    user, read as the user would (the bench knows the password; read only)."""

    async def count(email: str) -> tuple[int, int]:
        from sqlalchemy import func, select

        from cryptmail.db import tables as t
        from cryptmail.imap.message._sortrecord import decode_sort_record
        from cryptmail.keys import unlock_account
        from cryptmail.secret import Password
        from cryptmail.store import inbox_id, load_sort_chunks, open_sort_chunk

        install_server_key(load_server_key(data_dir / "server.key"))
        engine = create_engine(f"sqlite:///{data_dir / 'cryptmail.db'}")
        try:
            account, _slot = await unlock_account(
                engine, email, Password.from_str(PASSWORD), BENCH_CRYPTO
            )
            m, b = t.cm_messages, t.cm_mailboxes
            async with engine.connect() as conn:
                box = await inbox_id(conn, account.user.id)
                validity = (
                    await conn.execute(select(b.c.uidvalidity).where(b.c.id == box))
                ).scalar_one()
                total = (
                    await conn.execute(select(func.count()).where(m.c.mailbox_id == box))
                ).scalar_one()
                uncached = (
                    await conn.execute(
                        select(func.count()).where(
                            m.c.mailbox_id == box, m.c.cache_sealed.is_(None)
                        )
                    )
                ).scalar_one()
            recorded = 0
            for chunk, sealed in (await load_sort_chunks(engine, box, validity)).items():
                opened = open_sort_chunk(account, box, validity, chunk, sealed)
                recorded += len(decode_sort_record(opened))
            return int(uncached), int(total) - recorded
        finally:
            await engine.dispose()

    return lambda email: asyncio.run(count(email))


async def _store_fill(
    data_dir: Path, emails: list[str], count: int, no_entries: frozenset[str] = frozenset()
) -> None:
    """Deliver the set to every user through the store's delivery (`deliver_many`, what
    LMTP calls for a message to several recipients: blob sealed to each user's public
    key, rows in one transaction, and each copy's sort entry from the header's sort
    fields, made once per message), without the LMTP round trips; the users in
    ``no_entries`` get their copies without a sort entry (as before issue 16's entries)."""
    config = load_config(None, data_dir=str(data_dir))
    install_server_key(load_server_key(config.server_key_path))
    engine = create_engine(config.database_url)
    blobs = LocalBlobStore(config.blob_path)
    limit = asyncio.Semaphore(8)
    targets = [target for email in emails for target in await resolve_delivery(engine, email)]
    epochs = DeliveryEpochs()

    async def one(index: int) -> None:
        data = _sort_message(index)

        async def source() -> AsyncIterator[bytes]:
            yield data

        fields = SortFields(epochs, header_sort_fields(data[: data.index(b"\r\n\r\n") + 4]))
        async with limit:
            jobs = [
                DeliveryJob(
                    target, source(), None, None if target.user.email in no_entries else fields
                )
                for target in targets
            ]
            for result in await deliver_many(engine, blobs, jobs):
                if isinstance(result, Exception):
                    raise result

    for base in range(0, count, 1000):  # in order per thousand: UIDs follow the index
        await asyncio.gather(*(one(i) for i in range(base, min(count, base + 1000))))
    await engine.dispose()


@contextmanager
def _cryptmail_sort(
    crypt: int, count: int, firsts: list[str], fresh: bool, before_pass: bool = False
) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        emails = {f"idle-{name}": f"idle-{name.lower()}-c{crypt}@example.org" for name in firsts}
        if before_pass:  # the fresh-session rows only: each command on a user of its own
            emails = {
                f"fresh-{name}": f"fresh-{name.lower()}-c{crypt}@example.org"
                for name in firsts
                if name != "ARRIVAL"
            }
        if fresh or before_pass:
            emails["sort"] = f"sort-c{crypt}@example.org"
            emails["sort-slow"] = f"sort-slow-c{crypt}@example.org"
        make_users(data_dir, {email: crypt for email in emails.values()})
        start = time.perf_counter()
        slow = frozenset(email for name, email in emails.items() if name == "sort-slow")
        asyncio.run(_store_fill(data_dir, list(emails.values()), count, slow))
        print(
            f"  cryptmail c{crypt}: {count} delivered to each of {len(emails)} users"
            f" in {time.perf_counter() - start:.0f} s", flush=True,
        )  # fmt: skip
        # The warm rows use the user of the first idle command (its keys in memory).
        emails["warm"] = emails.get(f"idle-{firsts[0]}", emails["sort"])
        left = _left_of(data_dir)
        with cryptmail_server(data_dir, "imap") as (pid, ports):
            yield Server(
                f"cryptmail c{crypt}", ports["imap"], lambda: [pid],
                lambda name: (emails[name], PASSWORD, "INBOX"), set(emails),
                lambda name: left(emails[name]),
            )  # fmt: skip


def _lmtp_parallel(port: int, rcpt: str, count: int) -> None:
    # In order per connection; four connections, so the UIDs interleave but every
    # server gets the same interleaving only by chance: ARRIVAL is compared by time.
    messages = [_sort_message(i) for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        parts = [messages[i::4] for i in range(4)]

        def send(part: list[bytes]) -> None:
            # A new connection every 1,000: an LMTP server ends a very long session
            # (cryptmail: "421 Too many commands" past its limit per connection).
            for start in range(0, len(part), 1000):
                lmtp_deliver(port, rcpt, part[start : start + 1000])

        list(pool.map(send, parts))


def _sort_maildir(server: object, count: int) -> None:
    """The set written as Maildir files into the INBOX, as if Dovecot had delivered it
    (a minute apart, new), then indexed by `doveadm force-resync` (as delivery leaves
    the index: no sort field cached yet)."""
    base = server.maildir(DOVECOT_USER, "INBOX")  # type: ignore[attr-defined]
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    start = int(time.time()) - 60 * count
    for index in range(count):
        data = _sort_message(index)
        name = f"{start + 60 * index}.M{index}P1.bench,S={len(data)}"
        path = base / "new" / name
        path.write_bytes(data)
        os.utime(path, (start + 60 * index, start + 60 * index))
    server.give_to_mail_user(base)  # type: ignore[attr-defined]
    server.doveadm("force-resync", "-u", DOVECOT_USER, "INBOX")  # type: ignore[attr-defined]


def _imap_processes(root: int) -> int:
    count = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            count += Path(f"/proc/{pid}/comm").read_text().strip() == "imap"
    return count


def _drop_dovecot_cache(server: object, root: int) -> Callable[[], None]:
    def drop() -> None:
        # Once the last session's imap process has ended (it may write the cache file
        # as it closes), so the next SELECT finds none and makes an empty one.
        deadline = time.monotonic() + 10
        while _imap_processes(root) and time.monotonic() < deadline:
            time.sleep(0.05)
        base = server.maildir(DOVECOT_USER, "INBOX")  # type: ignore[attr-defined]
        # The index too: it keeps the sort ids a SORT by a string made (index-sort's
        # extensions), so with the cache alone gone SUBJECT would still be cheap.
        # dovecot-uidlist stays, so the UIDs do; the SELECT (not timed) lists anew.
        for name in ("dovecot.index", "dovecot.index.log", "dovecot.index.cache"):
            (base / name).unlink(missing_ok=True)

    return drop


@contextmanager
def _dovecot_sort(mail_crypt: bool, count: int, fill: str) -> Iterator[Server]:
    with dovecot_server(mail_crypt, lmtp=True, imap=True) as server:
        start = time.perf_counter()
        if fill == "maildir":
            _sort_maildir(server, count)
        else:
            _lmtp_parallel(server.lmtp_port, DOVECOT_USER, count)
        check_dovecot_sealed(server, mail_crypt)
        label = "dovecot crypt" if mail_crypt else "dovecot plain"
        print(f"  {label}: {count} in by {fill} in {time.perf_counter() - start:.0f} s", flush=True)
        root = server._process.pid
        yield Server(
            label, server.imap_port, lambda: tree_pids(root),
            lambda _name: (DOVECOT_USER, DOVECOT_LOGIN, "INBOX"), {"sort", "warm"},
            drop_cache=None if mail_crypt else _drop_dovecot_cache(server, root),
        )  # fmt: skip


def _print_sort(results: dict[str, SortFigures], count: int) -> None:
    labels = list(results)
    print()
    print(f"SORT / THREAD, {count} messages, ms (median of {SORT_RUNS}); server CPU ms in ()")

    def cell(wall: float | None, cpu: float | None) -> str:
        return "-" if wall is None or cpu is None else f"{wall:.1f} ({cpu:.1f})"

    def row(title: str, cells: list[str]) -> None:
        print(f"{title:>44}" + "".join(f"{c:>22}" for c in cells))

    row("", labels)
    row(
        "first SORT (ARRIVAL), fresh session",
        [cell(r.first_ms, r.first_cpu_ms) if r.first_ms else "-" for r in results.values()],
    )
    row(
        "first SORT (DATE), no sort entries (slow)",
        [cell(r.first_slow_ms, r.first_slow_cpu_ms) if r.first_slow_ms else "-"
         for r in results.values()],
    )  # fmt: skip
    if not any(r.warm_ms for r in results.values()):  # --sort-before-pass
        plain = results.get("dovecot plain")
        for command in SORT_COMMANDS[1:]:
            if not any(command in r.fresh for r in results.values()):
                continue
            row(
                f"first {command.replace(' UTF-8 ALL', '')}, fresh session",
                [cell(*r.fresh[command]) if command in r.fresh else "-"
                 for r in results.values()],
            )  # fmt: skip
            row(
                "  in turn, one user (Dovecot: the same)",
                [cell(*r.in_turn[command]) if command in r.in_turn else "-"
                 for r in results.values()],
            )  # fmt: skip
            if any(command in r.uncached for r in results.values()):
                row(
                    "  Dovecot: first on its index removed",
                    [cell(*r.uncached[command]) if command in r.uncached else "-"
                     for r in results.values()],
                )  # fmt: skip
        for label, ours in results.items():
            if not label.startswith("cryptmail") or not ours.first_ms:
                continue
            line = f"{label}:"
            date = ours.fresh.get(SORT_COMMANDS[1])
            if date is not None and ours.first_slow_ms:
                line += f" DATE with entries / slow path {date[0] / ours.first_slow_ms:.3f}x;"
            if plain is not None and plain.first_ms:
                line += (
                    f" / Dovecot plain: ARRIVAL {ours.first_ms / plain.first_ms:.2f}x"
                    f" (CPU {ours.first_cpu_ms / max(plain.first_cpu_ms, 0.1):.2f}x)"
                )
                for command, (wall, cpu) in ours.fresh.items():
                    if command in plain.fresh:
                        turn = ours.in_turn[command][0] / plain.in_turn[command][0]
                        line += (
                            f"; {_first_name(command)} {wall / plain.fresh[command][0]:.2f}x"
                            f" (CPU {cpu / max(plain.fresh[command][1], 0.1):.2f}x,"
                            f" in turn {turn:.2f}x"
                        )
                        if command in plain.uncached:
                            removed = wall / plain.uncached[command][0]
                            line += f", against its index removed {removed:.2f}x"
                        line += ")"
            print(line)
        return
    asked = [c for c in SORT_COMMANDS if any(c in r.idle for r in results.values())]
    for command in asked:
        name = command.replace(" UTF-8 ALL", "")
        row(
            f"first {name} (ours: after idle)",
            [cell(*results[s].idle[command]) if command in results[s].idle else "-"
             for s in labels],
        )  # fmt: skip
        row(
            "  RSS before / peak during, MiB",
            [f"{results[s].idle_rss[command][0]:.0f} / {results[s].idle_rss[command][1]:.0f}"
             if command in results[s].idle_rss else "-" for s in labels],
        )  # fmt: skip
        row(
            "  never-read / unrecorded left",
            [f"{results[s].idle_left[command][0]} / {results[s].idle_left[command][1]}"
             if command in results[s].idle_left else "-" for s in labels],
        )  # fmt: skip
    for command in SORT_COMMANDS:
        if not any(command in r.uncached for r in results.values()):
            continue
        row(
            f"first {command.replace(' UTF-8 ALL', '')}, Dovecot index removed",
            [cell(*results[s].uncached[command]) if command in results[s].uncached else "-"
             for s in labels],
        )  # fmt: skip
    for command in SORT_COMMANDS:
        name = command.replace(" UTF-8 ALL", "")
        for kind in ("warm", "new session"):
            cells = [
                cell(results[s].warm_ms[command], results[s].warm_cpu_ms[command])
                if kind == "warm"
                else cell(results[s].session_ms[command], results[s].session_cpu_ms[command])
                for s in labels
            ]
            row(f"{name}, {kind}", cells)
    if "dovecot plain" not in results:
        print("Dovecot baseline: not run")
        return
    print()
    plain = results["dovecot plain"]
    for label in labels:
        if not label.startswith("cryptmail"):
            continue
        ours = results[label]
        firsts = [
            f"{_first_name(c)} {ours.idle[c][0] / plain.idle[c][0]:.2f}x"
            f" (CPU {ours.idle[c][1] / max(plain.idle[c][1], 0.1):.2f}x)"
            for c in asked
            if c in ours.idle and c in plain.idle
        ]
        if SORT_COMMANDS[0] in ours.idle and plain.first_ms:
            command = SORT_COMMANDS[0]
            firsts.insert(
                0,
                f"ARRIVAL {ours.idle[command][0] / plain.first_ms:.2f}x"
                f" (CPU {ours.idle[command][1] / max(plain.first_cpu_ms, 0.1):.2f}x)",
            )
        ratios = [
            f"{_first_name(command)}"
            f" {ours.warm_ms[command] / plain.warm_ms[command]:.2f}x"
            f"/{ours.session_ms[command] / plain.session_ms[command]:.2f}x"
            for command in SORT_COMMANDS
        ]
        print(f"{label} / Dovecot plain (goal <= 2x): first after idle " + ", ".join(firsts))
        fair = [
            f"{_first_name(c)} {ours.idle[c][0] / plain.uncached[c][0]:.2f}x"
            f" (CPU {ours.idle[c][1] / max(plain.uncached[c][1], 0.1):.2f}x)"
            for c in asked
            if c in ours.idle and c in plain.uncached
        ]
        if fair:
            print("  against Dovecot's first of each on a removed index " + ", ".join(fair))
        print("  warm/new session " + ", ".join(ratios))


def sort_main(
    count: int, with_dovecot: bool, idle_s: float, crypts: list[int], firsts: list[str],
    fresh: bool, fill: str, uncached: bool = False, wait_pass: bool = False,
    before_pass: bool = False,
) -> None:  # fmt: skip
    random.seed(os.getpid())
    with ExitStack() as running:
        servers = [
            running.enter_context(_cryptmail_sort(c, count, firsts, fresh, before_pass))
            for c in crypts
        ]
        if with_dovecot and dovecot_available():
            kinds = (False,) if fill == "maildir" or before_pass else (True, False)
            servers += [running.enter_context(_dovecot_sort(m, count, fill)) for m in kinds]
        results = _measure_sort(servers, idle_s, firsts, wait_pass, before_pass)
        if uncached:
            _measure_uncached(servers, results)
    _print_sort(results, count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100 x 4 KB, 10 x 200 KB, 1,000")
    parser.add_argument("--large-count", type=int, default=10_000, metavar="N")
    parser.add_argument("--no-dovecot", action="store_true", help="cryptmail only")
    parser.add_argument("--sort", action="store_true", help="SORT and THREAD only (issue 16)")
    parser.add_argument("--sort-count", type=int, default=10_000, metavar="N")
    parser.add_argument("--sort-idle", type=float, default=60.0, metavar="S")
    parser.add_argument("--crypt", default="2,0", help="cryptmail crypt levels for --sort")
    parser.add_argument(
        "--sort-first", default="ARRIVAL,DATE,SUBJECT,FROM,THREAD",
        help="commands whose first run after idle is measured, each on a user of its own",
    )  # fmt: skip
    parser.add_argument(
        "--sort-no-fresh", action="store_true",
        help="no first SORT right after delivery (at 50,000 it reads every message)",
    )  # fmt: skip
    parser.add_argument(
        "--sort-fill", choices=("lmtp", "maildir"), default="lmtp",
        help="Dovecot's mailbox: over LMTP, or Maildir files (plain Dovecot only)",
    )  # fmt: skip
    parser.add_argument(
        "--sort-wait-pass", action="store_true",
        help="idle until the pass is done (every message read and recorded), --sort-idle at most",
    )  # fmt: skip
    parser.add_argument(
        "--sort-before-pass", action="store_true",
        help="only the first SORT of a fresh session, before any pass: with delivery's sort"
        " entries, without them (the slow path), plain Dovecot's",
    )  # fmt: skip
    parser.add_argument(
        "--sort-dovecot-uncached", action="store_true",
        help="also each command first on plain Dovecot with its Dovecot index removed",
    )  # fmt: skip
    args = parser.parse_args()
    if args.sort:
        crypts = [int(c) for c in args.crypt.split(",")]
        sort_main(
            args.sort_count, not args.no_dovecot, args.sort_idle, crypts,
            args.sort_first.split(","), not args.sort_no_fresh, args.sort_fill,
            args.sort_dovecot_uncached, args.sort_wait_pass, args.sort_before_pass,
        )  # fmt: skip
        return
    counts = {"small": 1000, "large": 100, "count": args.large_count}
    if args.quick:
        counts = {"small": 100, "large": 10, "count": min(args.large_count, 1000)}
    sets = _sets(counts)
    random.seed(os.getpid())
    with ExitStack() as running:
        servers = [running.enter_context(_cryptmail(c, sets, counts["count"])) for c in (2, 0)]
        if not args.no_dovecot and dovecot_available():
            servers += [
                running.enter_context(_dovecot(mail_crypt, sets, counts["count"]))
                for mail_crypt in (True, False)
            ]
        results = _measure(servers, counts)
    _print(results, counts)


if __name__ == "__main__":
    main()
