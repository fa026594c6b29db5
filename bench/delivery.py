"""LMTP delivery throughput and server CPU, crypt=2 against crypt=0, in one run.

    python bench/delivery.py [--quick]

Starts `cryptmail serve` on a fresh data directory, delivers ~4 KB and ~200 KB MIME
messages at concurrency 1 and 8, and prints messages/s, MB/s, server CPU ms per message
(from /proc/<pid>/stat), peak RSS, and the crypt2/crypt0 CPU ratio (target <= 1.3x).
No asserts: numbers only.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import create_user
from cryptmail.secret import Password
from cryptmail.users import add_domain

TICKS = os.sysconf("SC_CLK_TCK")


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


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    counts = {4096: 200, 200_000: 20} if args.quick else {4096: 2000, 200_000: 200}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        asyncio.run(_users(data_dir))
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
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
            rows = []
            cpu_by: dict[tuple[int, int, str], float] = {}
            for size, count in counts.items():
                messages = [_message(size, i) for i in range(count)]
                total_mb = sum(len(m) for m in messages) / 1e6
                for concurrency in (1, 8):
                    for rcpt, label in (
                        ("c2@example.org", "crypt=2"),
                        ("c0@example.org", "crypt=0"),
                    ):
                        cpu0 = _cpu_s(server.pid)
                        start = time.perf_counter()
                        parts = [messages[i::concurrency] for i in range(concurrency)]
                        with ThreadPoolExecutor(concurrency) as pool:
                            list(pool.map(lambda p, r=rcpt: _deliver(port, r, p), parts))
                        wall = time.perf_counter() - start
                        cpu_ms = (_cpu_s(server.pid) - cpu0) * 1000 / count
                        cpu_by[(size, concurrency, label)] = cpu_ms
                        rows.append(
                            (
                                f"{size // 1000} KB",
                                concurrency,
                                label,
                                count,
                                f"{count / wall:.1f}",
                                f"{total_mb / wall:.2f}",
                                f"{cpu_ms:.2f}",
                                f"{_hwm_mib(server.pid):.0f}",
                            )
                        )
            head = ("size", "conc", "mode", "msgs", "msg/s", "MB/s", "cpu ms/msg", "peak RSS MiB")
            print("  ".join(f"{h:>12}" for h in head))
            for row in rows:
                print("  ".join(f"{c!s:>12}" for c in row))
            print()
            for size in counts:
                for concurrency in (1, 8):
                    c2 = cpu_by[(size, concurrency, "crypt=2")]
                    c0 = cpu_by[(size, concurrency, "crypt=0")]
                    print(
                        f"CPU ratio crypt2/crypt0, {size // 1000} KB, concurrency {concurrency}: "
                        f"{c2 / c0:.2f}x (target <= 1.3x)"
                    )
            print("Dovecot baseline: not run")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
