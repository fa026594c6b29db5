"""Memory: an idle `serve`, a login and FETCH, and thousands of IDLE connections.

    python bench/memory.py [--quick] [--counts 1000,10000] [--users 100]
                           [--dovecot-connections 200] [--no-dovecot] [--uvloop]
                           [--lmtp-processes 2] [--lmtp-idle S]

One `cryptmail serve` with LMTP (two delivering processes, `--lmtp-processes`: the main
process and a worker started on demand, ended after the server's default idle time;
`--lmtp-idle 0` forks both workers at the start and keeps them), IMAP and the web
pages, users at crypt 2 (Argon2id of the server's default 46 MiB once each user first
logs in). Printed, per process (`/proc/PID/smaps_rollup`): PSS, which counts a page
shared by n processes as 1/n in each, so the sum over the processes is what the server
costs the machine.

1. idle, a few seconds after the start;
2. the LMTP workers' PSS right after 1,000 x 4 KB messages are delivered to one user
   over LMTP (20 connections, four at a time); the largest worker of 1. and 2. is
   the worker figure;
3. after that user's login and `FETCH 1:* BODY.PEEK[]` of the 1,000 messages: the peak
   RSS of each process (VmHWM);
4. with `--counts` logged-in IDLE connections (default 1,000 and 10,000), spread evenly
   over `--users` users, all from 127.0.0.1 (`imap.max_connections_per_ip` is raised
   in the bench's config; the open-files limit is raised to its hard limit): PSS per
   process and per connection, then the latency at that load of NOOP (a further
   connection, the median of 50) and of a delivery to IDLE (from the LMTP delivery's
   start until each IDLE connection of the recipient reads `EXISTS`: 5 deliveries,
   the median and the maximum over every connection).

Dovecot 2.3 with mail-crypt (one imap process per connection) is measured the same way
at `--dovecot-connections` IDLE connections (default 200) when installed. The ratios
against issue 17's goals close the output. `--uvloop` runs the server on uvloop's event
loop (installed by a `sitecustomize` on the server's PYTHONPATH; `pip install uvloop`),
for a comparison run after run. No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _servers import (
    DOVECOT_LOGIN,
    PASSWORD,
    _dovecot_runner,
    cryptmail_server,
    dovecot_available,
    hwm_mib,
    lmtp_deliver,
    make_users,
    message,
    tree_pids,
)

GOAL_IDLE_MB = 80.0
GOAL_WORKER_MB = 40.0
GOAL_PEAK_MB = 110.0
GOAL_10K_MB = 400.0
FETCH_COUNT = 1000
CONFIG = """
[imap]
max_connections_per_ip = 30000
max_connections = 30000
[lmtp]
processes = {processes}
{idle}"""


def pss_mib(pid: int) -> float:
    """Proportional set size of one process, MiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _name(pid: int) -> str:
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    return "serve (main)" if comm.startswith("python") else comm


def tree_pss(root: int) -> list[tuple[int, str, float]]:
    """(pid, name, PSS MiB) of `root` and its live descendants."""
    rows = []
    for pid in tree_pids(root):
        try:
            rows.append((pid, _name(pid), pss_mib(pid)))
        except OSError:
            continue  # ended meanwhile
    return rows


def _print_tree(title: str, rows: list[tuple[int, str, float]]) -> float:
    total = sum(pss for _pid, _name, pss in rows)
    print(f"\n{title}: {total:.1f} MiB PSS in {len(rows)} processes")
    for pid, name, pss in rows:
        print(f"  {pid:>8} {name:<16} {pss:7.1f} MiB")
    return total


@dataclass
class IdleClients:
    """Logged-in IMAP connections in IDLE, each read by a task of its own."""

    port: int
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    exists_at: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: int = 0
    retries: int = 0
    last_error: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, users: list[tuple[str, str]], count: int, at_once: int = 100) -> None:
        """Add `count` connections, user by user in turn, `at_once` logging in together."""
        gate = asyncio.Semaphore(at_once)
        start = len(self.writers)

        async def one(index: int) -> None:
            user, password = users[index % len(users)]
            async with gate:
                # A login the server turns away (its Argon2id queue is full while 100
                # users log in for the first time) is tried again, as a client would.
                for attempt in range(5):
                    try:
                        await self._connect(user, password)
                        return
                    except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
                        self.retries += 1
                        self.last_error = str(exc).strip()[:120]
                        await asyncio.sleep(0.5 * (attempt + 1))
                self.failures += 1

        await asyncio.gather(*(one(i) for i in range(start, start + count)))

    async def _connect(self, user: str, password: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        try:
            await reader.readline()  # greeting
            for tag, command in ((b"a", f'LOGIN "{user}" "{password}"'), (b"b", "SELECT INBOX")):
                writer.write(tag + b" " + command.encode() + b"\r\n")
                while not (line := await reader.readline()).startswith(tag + b" "):
                    if not line:
                        raise RuntimeError("closed")
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
            writer.write(b"c IDLE\r\n")
            if not (await reader.readline()).startswith(b"+"):
                raise RuntimeError("IDLE refused")
        except BaseException:
            writer.close()  # a refused login leaves no connection behind
            raise
        self.writers.append(writer)
        self.readers.append(asyncio.create_task(self._listen(user, reader)))

    async def _listen(self, user: str, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            if line.endswith(b"EXISTS\r\n"):
                self.exists_at[user].append(time.monotonic())
                self.arrived.set()

    async def wait_exists(self, user: str, count: int, timeout_s: float) -> None:
        """Until `count` connections of `user` have read EXISTS, or `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while len(self.exists_at[user]) < count and time.monotonic() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.writers.clear()
        self.readers.clear()


def _noop_ms(port: int, user: str, password: str, samples: int = 50) -> float:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(user, password)
    client.select("INBOX")
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        client.noop()
        times.append((time.perf_counter() - start) * 1000)
    client.logout()
    return statistics.median(times)


async def _delivery_to_idle_ms(
    clients: IdleClients, lmtp_port: int, users: list[str], rounds: int = 5
) -> tuple[float, float]:
    """Median and maximum time from an LMTP delivery's start until each IDLE
    connection of the recipient reads EXISTS."""
    per_user = len(clients.writers) // len(users)
    delays: list[float] = []
    for index in range(rounds):
        user = users[index % len(users)]
        clients.exists_at[user].clear()
        start = time.monotonic()
        await asyncio.to_thread(lmtp_deliver, lmtp_port, user, [message(4096, 90_000 + index)])
        await clients.wait_exists(user, per_user, timeout_s=30.0)
        delays += [(at - start) * 1000 for at in clients.exists_at[user]]
    return (statistics.median(delays), max(delays)) if delays else (float("nan"), float("nan"))


def _login_ms(port: int, user: str) -> float:
    """Milliseconds of one LOGIN (a user's first: its Argon2id runs)."""
    client = imaplib.IMAP4("127.0.0.1", port)
    start = time.monotonic()
    client.login(user, PASSWORD)
    elapsed = (time.monotonic() - start) * 1000
    client.logout()
    return elapsed


def _hashers(server_pid: int) -> list[int]:
    found = []
    for p in tree_pids(server_pid):
        with contextlib.suppress(OSError):
            if _name(p) == "cryptmail-hash":
                found.append(p)
    return found


def _login_ms_cold(server_pid: int, port: int, user: str) -> float:
    """`_login_ms` after the server's hashing processes were ended (as after their idle
    minute): the login pays for starting one."""
    for p in _hashers(server_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _hashers(server_pid):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return _login_ms(port, user)


def _fetch_all(port: int, user: str) -> int:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(user, PASSWORD)
    client.select("INBOX", readonly=True)
    _typ, data = client.fetch("1:*", "(BODY.PEEK[])")
    client.logout()
    return sum(1 for item in data if isinstance(item, tuple))


@contextmanager
def _dovecot(users: list[str]) -> Iterator[tuple[int, int]]:
    """Dovecot with mail-crypt and IMAP; yields (master pid, IMAP port)."""
    dovecot_class, user_class = _dovecot_runner()
    server = dovecot_class(
        users=[
            user_class(name, DOVECOT_LOGIN, {"mail_crypt_private_password": "k1"}) for name in users
        ],
        mail_plugins=["mail_crypt"],
        plugin_settings={
            "mail_crypt_curve": "secp521r1",
            "mail_crypt_save_version": "2",
            "mail_crypt_require_encrypted_user_key": "yes",
        },
        imap=True,
        extra_config="mail_max_userip_connections = 10000\n",
    )
    server.start()
    try:
        for name in users:
            server.doveadm("mailbox", "cryptokey", "generate", "-u", name, "-U")
        yield server._process.pid, server.imap_port  # the runner keeps it
    finally:
        server.stop()


async def _measure_dovecot(count: int) -> tuple[float, int]:
    users = [f"d{i}@example.org" for i in range(max(1, count // 10))]
    with _dovecot(users) as (pid, port):
        await asyncio.sleep(1)
        idle = sum(pss for _p, _n, pss in tree_pss(pid))
        clients = IdleClients(port)
        await clients.open([(name, DOVECOT_LOGIN) for name in users], count, at_once=20)
        await asyncio.sleep(2)
        rows = tree_pss(pid)
        total = sum(pss for _p, _n, pss in rows)
        opened = len(clients.writers)
        print(
            f"\nDovecot mail-crypt: idle {idle:.1f} MiB, {opened} IDLE "
            f"connections {total:.1f} MiB PSS in {len(rows)} processes "
            f"({clients.failures} failed)"
        )
        await clients.close()
        return total, opened


async def _measure(args: argparse.Namespace, data_dir: Path) -> None:
    users = [f"u{i}@example.org" for i in range(args.users)]
    config = data_dir.parent / "bench.toml"
    idle = "" if args.lmtp_idle is None else f"process_idle_s = {args.lmtp_idle}\n"
    config.write_text(CONFIG.format(processes=args.lmtp_processes, idle=idle))
    summary: dict[str, float] = {}
    with cryptmail_server(data_dir, "lmtp", "imap", "web", config=config) as (pid, ports):
        await asyncio.sleep(3)
        # With workers on demand the start-up probe's LMTP connection started one: idle
        # is once it has exited, as a server no mail reached for process_idle_s.
        idle_s = 60.0 if args.lmtp_idle is None else float(args.lmtp_idle)
        deadline = time.monotonic() + idle_s + 15
        while idle_s and time.monotonic() < deadline:
            if not any(name == "cryptmail-lmtp" for _p, name, _pss in tree_pss(pid)):
                break
            await asyncio.sleep(1)
        rows = tree_pss(pid)
        summary["idle"] = _print_tree("idle serve (LMTP, IMAP, web)", rows)
        workers = [pss for _p, name, pss in rows if name == "cryptmail-lmtp"]
        batch = [message(4096, i) for i in range(FETCH_COUNT)]
        # Four connections at once, as Postfix's several lmtp processes deliver: with
        # workers on demand, workers start for them.
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda start: lmtp_deliver(ports["lmtp"], users[0], batch[start : start + 50]),
                    range(0, FETCH_COUNT, 50),
                )
            )
        delivered = [row for row in tree_pss(pid) if row[1] == "cryptmail-lmtp"]
        print(f"\nLMTP workers after {FETCH_COUNT:,} deliveries:")
        for p, name, pss in delivered:
            print(f"  {p:>8} {name:<16} {pss:7.1f} MiB")
        summary["worker"] = max([*workers, *(pss for _p, _n, pss in delivered)], default=0.0)
        fetched = _fetch_all(ports["imap"], users[0])
        peaks = [(p, _name(p), hwm_mib(p)) for p in tree_pids(pid)]
        print(f"\npeak RSS (VmHWM) after a login and FETCH 1:* of {fetched} x 4 KB:")
        for p, name, peak in peaks:
            print(f"  {p:>8} {name:<16} {peak:7.1f} MiB")
        summary["peak"] = max(peak for _p, _n, peak in peaks)
        # The first login above started the hashing process; these two do the same work,
        # the first after the hashing processes were stopped, the second with one running.
        cold = _login_ms_cold(pid, ports["imap"], users[1])
        warm = _login_ms(ports["imap"], users[2])
        print(
            f"\nfirst login of a user: {cold:.0f} ms with no hashing process, {warm:.0f} ms "
            f"with one idle ({cold / warm:.2f}x)"
        )
        # Per connection: against the PSS after the FETCH, which the connections share.
        base = sum(pss for _p, _n, pss in tree_pss(pid))
        summary["base"] = base
        clients = IdleClients(ports["imap"])
        logins = [(name, PASSWORD) for name in users]
        # Each user's first login runs Argon2id (and rehashes to the server's 46 MiB):
        # one at a time here, so that the connections below meet the login cache, as
        # the steady state of a server whose users come back does.
        await clients.open(logins, len(users), at_once=1)
        await clients.close()
        clients = IdleClients(ports["imap"])
        print(
            "\n| IDLE connections | PSS, all processes | per connection | NOOP "
            "| to IDLE p50 / max |"
        )
        print("|---|---|---|---|---|")
        for count in args.counts:
            await clients.open(logins, count - len(clients.writers))
            await asyncio.sleep(3)
            rows = tree_pss(pid)
            total = sum(pss for _p, _n, pss in rows)
            noop = await asyncio.to_thread(_noop_ms, ports["imap"], users[-1], PASSWORD)
            median, worst = await _delivery_to_idle_ms(clients, ports["lmtp"], users)
            per = (total - base) * 1024 / max(1, len(clients.writers))
            summary[f"conn{count}"] = total
            print(
                f"| {len(clients.writers):,} | {total:.1f} MiB | {per:.1f} KiB | {noop:.2f} ms "
                f"| {median:.1f} / {worst:.1f} ms |"
                + (f" ({clients.failures} failed)" if clients.failures else "")
                + (f" ({clients.retries} retried: {clients.last_error})" if clients.retries else "")
            )
            for p, name, pss in rows:
                print(f"|   | {name} {p}: {pss:.1f} MiB | | | |")
        await clients.close()
        await asyncio.sleep(5)  # the server ends 10,000 sessions before it is stopped
    if args.dovecot:
        dovecot_total, dovecot_count = await _measure_dovecot(args.dovecot_connections)
        summary["dovecot"] = dovecot_total
        summary["dovecot_count"] = dovecot_count
    _print_goals(summary, args.counts)


def _goal(what: str, measured: float, goal: float) -> None:
    print(f"  {what}: {measured:.1f} MiB, goal {goal:.0f}: {measured / goal:.2f}")


def _print_goals(summary: dict[str, float], counts: list[int]) -> None:
    print("\nagainst issue 17's goals (ratio = measured / goal; at most 1.00 meets it):")
    _goal("idle serve, PSS of all processes", summary["idle"], GOAL_IDLE_MB)
    _goal("largest LMTP worker, PSS", summary["worker"], GOAL_WORKER_MB)
    _goal("peak RSS of the largest process", summary["peak"], GOAL_PEAK_MB)
    if 10_000 in counts:
        _goal("10,000 IDLE connections, PSS of all processes", summary["conn10000"], GOAL_10K_MB)
    if "dovecot" in summary:
        count = int(summary["dovecot_count"])
        mine = (summary[f"conn{counts[0]}"] - summary["base"]) / counts[0]
        theirs = summary["dovecot"] / max(1, count)
        print(
            f"  per IDLE connection: cryptmail {mine * 1024:.0f} KiB, Dovecot mail-crypt "
            f"{theirs * 1024:.0f} KiB (at {count}): {theirs / mine:.0f}x less with cryptmail"
        )


_UVLOOP = """import asyncio, uvloop
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 and 1,000 connections")
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--dovecot-connections", type=int, default=200)
    parser.add_argument("--no-dovecot", dest="dovecot", action="store_false")
    parser.add_argument("--uvloop", action="store_true", help="the server on uvloop")
    parser.add_argument("--lmtp-processes", type=int, default=2, help="LMTP workers (2)")
    parser.add_argument(
        "--lmtp-idle",
        type=float,
        default=None,
        help="lmtp.process_idle_s (the server's default; 0: workers forked at the start)",
    )
    args = parser.parse_args()
    args.counts = [200, 1000] if args.quick else [int(n) for n in args.counts.split(",")]
    args.dovecot = args.dovecot and dovecot_available()
    # Each connection is a descriptor in the client and one in the server (which inherits).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < max(args.counts) + 1000:
        sys.exit(f"the open-files limit is {hard}: raise it (ulimit -Hn) for {max(args.counts)}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.uvloop:
            (Path(tmp) / "sitecustomize.py").write_text(_UVLOOP)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                filter(None, (tmp, os.environ.get("PYTHONPATH")))
            )
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        make_users(data_dir, {f"u{i}@example.org": 2 for i in range(args.users)})
        asyncio.run(_measure(args, data_dir))


if __name__ == "__main__":
    main()
