"""LMTP delivery throughput and server CPU, crypt=2 against crypt=0 and Dovecot, in one run.

    python bench/delivery.py [--quick] [--no-dovecot]

Starts `cryptmail serve` on a fresh data directory, delivers ~4 KB and ~200 KB MIME
messages at concurrency 1 and 8, and prints messages/s, MB/s, server CPU ms per message
(from /proc/<pid>/stat), peak RSS, and the crypt2/crypt0 CPU ratio (target <= 1.3x).

The baseline is Dovecot 2.3 LMTP on loopback, started by the integration runner
(`tests/integration/servers/dovecot.py`), with the same message sets: once with
mail-crypt per-user keys (secp521r1 as in the ISPmail guide, the user key locked by the
userdb field `mail_crypt_private_password`) and once without. Dovecot's CPU is that of
its whole process tree (live processes plus reaped children). Printed: cryptmail
crypt=2 msg/s over Dovecot mail-crypt msg/s (target >= 2x).

CRYPTMAIL_BENCH_PROFILE=out.prof runs the cryptmail server under cProfile and writes
the profile there when it stops. No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import create_user
from cryptmail.secret import Password
from cryptmail.users import add_domain

TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
PROFILE_ENV = "CRYPTMAIL_BENCH_PROFILE"
DOVECOT_PASSWORD = "bench-key-password-1"


def _message(size: int, index: int) -> bytes:
    payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        (
            b"From: bench@example.net\r\nTo: user@example.org\r\nSubject: bench\r\n"
            b"Message-ID: <b%d@example.net>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            % index
        )
        + payload
        + b"--b--\r\n"
    )


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def _tree_cpu_s(root: int) -> float:
    """CPU of `root`, its live descendants, and the children it has reaped."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0.0
    for pid in tree:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
    return total / TICKS


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _users(data_dir: Path) -> None:
    engine = create_engine(f"sqlite:///{data_dir / 'cryptmail.db'}")
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    crypto = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
    for email, crypt in (("c2@example.org", 2), ("c0@example.org", 0)):
        await create_user(engine, email, Password.from_str("bench password 1"), crypto, crypt=crypt)
    await engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _deliver(port: int, rcpt: str, messages: list[bytes]) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        for message in messages:
            client.sendmail("bench@example.net", [rcpt], message)


Row = tuple[str, int, str, int, float, float, float, float]


def _measure(
    port: int,
    rcpt: str,
    label: str,
    messages: list[bytes],
    concurrency: int,
    cpu: Callable[[], float],
    rss: Callable[[], float],
) -> Row:
    count = len(messages)
    cpu0 = cpu()
    start = time.perf_counter()
    parts = [messages[i::concurrency] for i in range(concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda p: _deliver(port, rcpt, p), parts))
    wall = time.perf_counter() - start
    cpu_ms = (cpu() - cpu0) * 1000 / count
    size = len(messages[0])
    total_mb = sum(len(m) for m in messages) / 1e6
    return (
        f"{round(size / 1000)} KB",
        concurrency,
        label,
        count,
        count / wall,
        total_mb / wall,
        cpu_ms,
        rss(),
    )


@contextmanager
def _cryptmail() -> Iterator[tuple[int, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        asyncio.run(_users(data_dir))
        port = _free_port()
        profile = os.environ.get(PROFILE_ENV)
        runner = ["-m", "cProfile", "-o", profile] if profile else []
        server = subprocess.Popen(
            [
                sys.executable,
                *runner,
                "-m",
                "cryptmail",
                "--data-dir",
                str(data_dir),
                "serve",
                "--lmtp",
                f"127.0.0.1:{port}",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield server.pid, port
        finally:
            server.terminate()
            server.wait(60)


def _dovecot_runner() -> tuple[type, type]:
    """The integration runner's Dovecot and DovecotUser, imported from the tests tree."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.integration.servers.dovecot import Dovecot, DovecotUser
    finally:
        sys.path.remove(str(ROOT))
    return Dovecot, DovecotUser


@contextmanager
def _dovecot(mail_crypt: bool) -> Iterator[tuple[int, int]]:
    dovecot_class, user_class = _dovecot_runner()
    fields = {"mail_crypt_private_password": DOVECOT_PASSWORD} if mail_crypt else {}
    server = dovecot_class(
        users=[user_class("bench@example.org", "bench-login-1", fields)],
        mail_plugins=["mail_crypt"] if mail_crypt else [],
        plugin_settings=(
            {
                "mail_crypt_curve": "secp521r1",
                "mail_crypt_save_version": "2",
                "mail_crypt_require_encrypted_user_key": "yes",
            }
            if mail_crypt
            else {}
        ),
        lmtp=True,
    )
    server.start()
    try:
        if mail_crypt:
            server.doveadm("mailbox", "cryptokey", "generate", "-u", "bench@example.org", "-U")
        assert server._process is not None
        yield server._process.pid, server.lmtp_port
        stored = next(iter(server.maildir("bench@example.org").glob("*/*,S=*")))
        sealed = stored.read_bytes().startswith(b"CRYPTED")
        if sealed != mail_crypt:
            raise RuntimeError(f"Dovecot stored {stored.name} sealed={sealed}, want {mail_crypt}")
    finally:
        server.stop()


def _print_rows(rows: list[Row]) -> None:
    head = ("size", "conc", "server", "msgs", "msg/s", "MB/s", "cpu ms/msg", "peak RSS MiB")
    print("  ".join(f"{h:>16}" for h in head))
    for size, conc, label, count, rate, mbs, cpu_ms, rss in rows:
        cells = (
            size,
            conc,
            label,
            count,
            f"{rate:.1f}",
            f"{mbs:.2f}",
            f"{cpu_ms:.2f}",
            f"{rss:.0f}" if rss else "-",
        )
        print("  ".join(f"{c!s:>16}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-dovecot", action="store_true", help="cryptmail only")
    args = parser.parse_args()
    counts = {4096: 200, 200_000: 20} if args.quick else {4096: 2000, 200_000: 200}
    sets = {size: [_message(size, i) for i in range(count)] for size, count in counts.items()}
    rows: list[Row] = []
    by: dict[tuple[int, int, str], Row] = {}

    def run(
        label: str, port: int, rcpt: str, cpu: Callable[[], float], rss: Callable[[], float]
    ) -> None:
        for size, messages in sets.items():
            for concurrency in (1, 8):
                row = _measure(port, rcpt, label, messages, concurrency, cpu, rss)
                rows.append(row)
                by[(size, concurrency, label)] = row

    with _cryptmail() as (pid, port):
        for rcpt, label in (("c2@example.org", "cryptmail c2"), ("c0@example.org", "cryptmail c0")):
            run(label, port, rcpt, lambda: _cpu_s(pid), lambda: _hwm_mib(pid))
    if not args.no_dovecot:
        for mail_crypt, label in ((True, "dovecot crypt"), (False, "dovecot plain")):
            with _dovecot(mail_crypt) as (pid, port):
                run(label, port, "bench@example.org", lambda: _tree_cpu_s(pid), lambda: 0.0)
    rows.sort(key=lambda r: (int(r[0].split()[0]), r[1]))
    _print_rows(rows)
    print()
    for size in counts:
        for concurrency in (1, 8):
            c2 = by[(size, concurrency, "cryptmail c2")]
            c0 = by[(size, concurrency, "cryptmail c0")]
            where = f"{size // 1000} KB, concurrency {concurrency}"
            print(f"CPU ratio crypt2/crypt0, {where}: {c2[6] / c0[6]:.2f}x (target <= 1.3x)")
            if args.no_dovecot:
                continue
            dc = by[(size, concurrency, "dovecot crypt")]
            dp = by[(size, concurrency, "dovecot plain")]
            print(
                f"  msg/s cryptmail crypt2 / Dovecot mail-crypt, {where}: "
                f"{c2[4] / dc[4]:.2f}x (target >= 2x); Dovecot's own crypt/plain CPU "
                f"{dc[6] / dp[6]:.2f}x"
            )
    if args.no_dovecot:
        print("Dovecot baseline: not run (--no-dovecot)")


if __name__ == "__main__":
    main()
