"""Scale-out overhead: one, two and three `cryptmail serve` nodes on one PostgreSQL and
one SeaweedFS bucket, all on this machine.

    python bench/scale.py [--quick]

For each node count N (a fresh database and bucket each time, the same users):
- delivery msg/s: 4 KB messages over LMTP, spread round robin over the nodes, two
  connections per node at once;
- FETCH msg/s: one IMAP session per node, each fetching every message's BODY[] (a
  blob GET and a decryption each) of its own user;
- IDLE latency: an IDLE session on the last node, a delivery through the first, the
  seconds until `* n EXISTS` (p50/p99); with N = 1 both are the same node (the
  in-process push, the baseline of the cross-node figure);
- database work per delivery: transactions and rows written (pg_stat_database).
Then, apart from the nodes, the cost of LISTEN/NOTIFY per delivery: a transaction that
writes a change-log row with NOTIFY (with a listener connected) against one without,
on the same PostgreSQL, through asyncpg.

The machine is CPU-bound (every node, the database and the bucket share its cores), so
the interesting figure is the ratio to one node: how much the scale-out machinery
(NOTIFY, the shared throttle, S3) costs, not the speed-up real hosts would give.
Printed: a table with ratios to N = 1. No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _servers import PASSWORD, ROOT, free_port, lmtp_deliver, message

USERS = [f"user{n}@example.org" for n in range(3)]


def _rigs() -> tuple[Any, Any]:
    """The integration runner's PostgreSQL and SeaweedFS, from the tests tree."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.integration.servers import Postgres, SeaweedFS
    finally:
        sys.path.remove(str(ROOT))
    return Postgres, SeaweedFS


@dataclass
class Node:
    lmtp: int
    imap: int
    process: subprocess.Popen[bytes]


def _cli(config: Path, *args: str, stdin: str = "") -> None:
    subprocess.run(
        [sys.executable, "-m", "cryptmail", "--config", str(config), *args],
        input=stdin.encode(),
        check=True,
        capture_output=True,
        timeout=300,
    )


def _write_config(node_dir: Path, url: str, seaweedfs: Any, bucket: str) -> Path:
    keys = node_dir / "keys"
    keys.mkdir(parents=True)
    (keys / "access").write_text(seaweedfs.credentials.access_key + "\n")
    (keys / "secret").write_text(seaweedfs.credentials.secret_key + "\n")
    os.chmod(keys / "secret", 0o600)
    path = node_dir / "cryptmail.toml"
    path.write_text(
        f"data_dir = '{node_dir / 'data'}'\n"
        f"server_key_file = '{node_dir.parent / 'server.key'}'\n"
        "[crypto.argon2]\nmemory_kib = 19456\n"
        f"[database]\nurl = '{url}'\n"
        "[lmtp]\nprocesses = 1\n"
        "[blobs]\nbackend = 's3'\n"
        f"s3_endpoint = '{seaweedfs.credentials.endpoint}'\ns3_bucket = '{bucket}'\n"
        f"s3_access_key_file = '{keys / 'access'}'\n"
        f"s3_secret_key_file = '{keys / 'secret'}'\n"
    )
    os.chmod(path, 0o600)
    return path


@contextmanager
def cluster(root: Path, count: int, postgres: Any, seaweedfs: Any) -> Iterator[list[Node]]:
    database = postgres.create_database()
    bucket = f"bench-{secrets.token_hex(6)}"
    seaweedfs.credentials.client().create_bucket(Bucket=bucket)
    configs = [
        _write_config(root / f"n{count}-{i}", database.url, seaweedfs, bucket) for i in range(count)
    ]
    _cli(configs[0], "db", "upgrade")
    _cli(configs[0], "domain", "add", "example.org")
    for email in USERS:
        _cli(configs[0], "user", "add", email, "--crypt", "2", "--password-stdin",
             stdin=PASSWORD + "\n")  # fmt: skip
    nodes = []
    try:
        for config in configs:
            lmtp, imap = free_port(), free_port()
            log = open(config.parent / "serve.log", "ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "cryptmail", "--config", str(config), "serve"]
                + ["--lmtp", f"127.0.0.1:{lmtp}", "--imap", f"127.0.0.1:{imap}"],
                stdout=log,
                stderr=log,
            )
            log.close()
            nodes.append(Node(lmtp, imap, process))
        for node in nodes:
            for port in (node.lmtp, node.imap):
                _wait_port(port)
        for config in configs:  # the change feed is up once it logged where it starts
            _wait_log(config.parent / "serve.log", "change feed: ")
        yield nodes
    finally:
        for node in nodes:
            node.process.terminate()
        for node in nodes:
            node.process.wait(60)


def _wait_port(port: int) -> None:
    for _ in range(1200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def _wait_log(path: Path, text: str) -> None:
    for _ in range(1200):
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path}: no {text!r}")


def _pg_counters(postgres: Any) -> tuple[int, int]:
    """(transactions committed, rows written) over every database of the server."""
    out = postgres.psql(
        "SELECT sum(xact_commit), sum(tup_inserted + tup_updated + tup_deleted) "
        "FROM pg_stat_database"
    )
    commits, rows = out.split("|")
    return int(commits), int(rows)


def deliver(nodes: list[Node], total: int, size: int) -> float:
    """msg/s of `total` messages over two connections per node, round robin."""
    streams = [(node, USERS[i % len(USERS)]) for i, node in enumerate(nodes) for _ in (0, 1)]
    per = total // len(streams)
    batches = [(node.lmtp, user, [message(size, k) for k in range(per)]) for node, user in streams]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(batches)) as pool:
        list(pool.map(lambda b: lmtp_deliver(*b), batches))
    return per * len(streams) / (time.perf_counter() - started)


def fetch(nodes: list[Node]) -> float:
    """msg/s of BODY[] fetches: one session per node, each its own user's INBOX."""

    def one(index: int) -> int:
        imap = imaplib.IMAP4("127.0.0.1", nodes[index].imap)
        imap.login(USERS[index % len(USERS)], PASSWORD)
        imap.select("INBOX", readonly=True)
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        imap.logout()
        return sum(1 for item in data if isinstance(item, tuple))

    started = time.perf_counter()
    with ThreadPoolExecutor(len(nodes)) as pool:
        fetched = sum(pool.map(one, range(len(nodes))))
    return fetched / (time.perf_counter() - started)


def idle_latencies(nodes: list[Node], samples: int) -> list[float]:
    """Seconds from a delivery's reply through the first node to `* n EXISTS` on the
    last node's IDLE session (user 0's INBOX)."""
    sock = socket.create_connection(("127.0.0.1", nodes[-1].imap), timeout=30)
    reader = sock.makefile("rb")

    def command(tag: str, text: str) -> list[bytes]:
        sock.sendall(f"{tag} {text}\r\n".encode())
        lines = []
        while not (line := reader.readline()).startswith(tag.encode()):
            lines.append(line)
        return lines

    reader.readline()
    command("l", f'LOGIN "{USERS[0]}" "{PASSWORD}"')
    exists = next(
        int(m[1])
        for line in command("s", "SELECT INBOX")
        if (m := re.match(rb"\* (\d+) EXISTS", line))
    )
    found = []
    for _ in range(samples):
        sock.sendall(b"i IDLE\r\n")
        reader.readline()  # "+ idling"
        lmtp_deliver(nodes[0].lmtp, USERS[0], [message(2000, 0)])
        sent = time.perf_counter()
        exists += 1
        while not re.match(rb"\* %d EXISTS" % exists, reader.readline()):
            pass
        found.append(time.perf_counter() - sent)
        sock.sendall(b"DONE\r\n")
        while not reader.readline().startswith(b"i "):
            pass
    sock.close()
    return found


async def notify_cost(url: str, rounds: int) -> tuple[float, float, float]:
    """Microseconds per transaction: a change-log row without NOTIFY, with NOTIFY and
    no listener, with NOTIFY and one listener."""
    import asyncpg

    writer = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    await writer.execute(
        "CREATE TEMP TABLE bench_changes (id bigserial PRIMARY KEY, user_id int, "
        "mailbox_id int, kind smallint)"
    )
    plain = "INSERT INTO bench_changes (user_id, mailbox_id, kind) VALUES (1, 2, 1)"
    notify = (
        "WITH c AS (INSERT INTO bench_changes (user_id, mailbox_id, kind) VALUES (1, 2, 1) "
        "RETURNING id, user_id, mailbox_id, kind) SELECT pg_notify('bench_changes', "
        "concat_ws(' ', c.id, c.user_id, c.mailbox_id, c.kind)) FROM c"
    )

    async def timed(sql: str) -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            async with writer.transaction():
                await writer.execute(sql)
        return (time.perf_counter() - started) / rounds * 1e6

    heard = 0

    def count(*_: object) -> None:
        nonlocal heard
        heard += 1

    results = []
    for _ in range(3):  # interleaved, the median of three
        results.append((await timed(plain), await timed(notify)))
    await listener.add_listener("bench_changes", count)
    with_listener = [await timed(notify) for _ in range(3)]
    await writer.close()
    await listener.close()
    return (
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        statistics.median(with_listener),
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and samples")
    args = parser.parse_args()
    total = 120 if args.quick else 600
    samples = 20 if args.quick else 100
    postgres_class, seaweedfs_class = _rigs()
    rows = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        postgres = postgres_class()
        postgres.start()
        stack.callback(postgres.stop)
        seaweedfs = seaweedfs_class()
        seaweedfs.start()
        stack.callback(seaweedfs.stop)
        for count in (1, 2, 3):
            with cluster(Path(tmp), count, postgres, seaweedfs) as nodes:
                lmtp_deliver(nodes[0].lmtp, USERS[0], [message(4000, 0)] * 10)  # warm up
                before = _pg_counters(postgres)
                delivered = deliver(nodes, total, 4000)
                after = _pg_counters(postgres)
                per = total // (2 * count) * 2 * count
                commits = (after[0] - before[0]) / per
                written = (after[1] - before[1]) / per
                fetched = fetch(nodes)
                latencies = idle_latencies(nodes, samples)
            rows.append((count, delivered, fetched, latencies, commits, written))
            print(f"{count} node(s) done", file=sys.stderr)
        url = postgres.create_database().url
        plain_us, notify_us, listened_us = asyncio.run(
            notify_cost(url, 300 if args.quick else 2000)
        )

    base = rows[0]
    print(f"\nscale-out on one PostgreSQL and one SeaweedFS, {os.cpu_count()} cores, "
          f"{total} deliveries of 4 KB per node count, IDLE samples {samples}")  # fmt: skip
    print("nodes | deliver msg/s (x1) | FETCH msg/s (x1) | IDLE p50 ms | IDLE p99 ms "
          "| DB commits/delivery | DB rows written/delivery")  # fmt: skip
    for count, delivered, fetched, latencies, commits, written in rows:
        print(
            f"{count:5d} | {delivered:8.1f} ({delivered / base[1]:.2f}) "
            f"| {fetched:8.1f} ({fetched / base[2]:.2f}) "
            f"| {_pct(latencies, 0.5) * 1000:11.1f} | {_pct(latencies, 0.99) * 1000:11.1f} "
            f"| {commits:19.2f} | {written:24.2f}"
        )
    print("(IDLE with 1 node: the same node's push; with 2 and 3: across nodes by NOTIFY)")
    print(
        f"change-log row per transaction: {plain_us:.0f} us; with NOTIFY {notify_us:.0f} us "
        f"({notify_us / plain_us:.2f}x); with NOTIFY and a listener {listened_us:.0f} us "
        f"({listened_us / plain_us:.2f}x)"
    )


if __name__ == "__main__":
    main()
