"""A burst of first logins: how many the Argon2 queue refuses, and what it costs.

    python bench/login_burst.py [--logins 100] [--queues 32,128,256] [--untrusted]

For each `crypto.argon2.max_queued` in `--queues`, a fresh `cryptmail serve` (IMAP, one
LMTP worker, the default Argon2 settings otherwise) over `--logins` users made at
19 MiB (each first login opens the slot, then rehashes it to the server's 46 MiB), and
one LOGIN per user, all at once from 127.0.0.1, which is in `auth.trusted_networks`
(a webmail host) unless `--untrusted` (then the throttle's client bucket holds the
burst first). Printed per queue: logins accepted, NO [UNAVAILABLE], the time until the
last answer, the median answer, the peak PSS of serve and its children (sampled every
50 ms), and the refusals the server logged by cause; then each queue's accepted logins
against the first queue's. No asserts: numbers only (docs/configuration.md).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from _servers import PASSWORD, cryptmail_server, make_users, tree_pids


def _pss_mib(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
    return total


async def _login(port: int, user: str) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        start = time.monotonic()
        writer.write(f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
        while not (line := await reader.readline()).startswith(b"a "):
            if not line:
                return b"closed", time.monotonic() - start
        return line, time.monotonic() - start
    finally:
        writer.close()


async def _burst(pid: int, port: int, users: list[str]) -> tuple[list[tuple[bytes, float]], float]:
    peak = 0.0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _pss_mib(tree_pids(pid)))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        replies = await asyncio.gather(*(_login(port, user) for user in users))
    finally:
        sampler.cancel()
    return replies, peak


def _run(queue: int, logins: int, trusted: bool) -> int:
    users = [f"b{n}@example.org" for n in range(logins)]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        make_users(data_dir, dict.fromkeys(users, 2))
        config = Path(tmp) / "bench.toml"
        auth = '[auth]\ntrusted_networks = ["127.0.0.0/8"]\n' if trusted else ""
        config.write_text(
            f"[imap]\nmax_connections_per_ip = {logins + 100}\n{auth}"
            f"[crypto.argon2]\nmax_queued = {queue}\n[lmtp]\nprocesses = 1\n"
        )
        with cryptmail_server(data_dir, "imap", config=config) as (pid, ports):
            start = time.monotonic()
            replies, peak = asyncio.run(_burst(pid, ports["imap"], users))
            wall = time.monotonic() - start
        causes = collections.Counter(
            line.split(": ", 1)[-1].strip()[:70]
            for line in (Path(tmp) / "serve.log").read_text(errors="replace").splitlines()
            if "login refused" in line
        )
    accepted = sum(1 for line, _ in replies if line.startswith(b"a OK"))
    unavailable = sum(1 for line, _ in replies if b"[UNAVAILABLE]" in line)
    median = statistics.median(seconds for _, seconds in replies)
    print(
        f"| {queue} | {accepted} | {unavailable} | {wall:.1f} s | {median:.1f} s "
        f"| {peak:.0f} MiB | {dict(causes) or '-'} |",
        flush=True,
    )
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--queues", default="32,128,256")
    parser.add_argument("--untrusted", action="store_true")
    args = parser.parse_args()
    queues = [int(n) for n in args.queues.split(",")]
    print(f"{args.logins} simultaneous first logins, one per user, from 127.0.0.1")
    print(
        "| max_queued | logged in | NO [UNAVAILABLE] | last answer | median | peak PSS | refused |"
    )
    print("|---|---|---|---|---|---|---|")
    accepted = [_run(queue, args.logins, not args.untrusted) for queue in queues]
    for queue, count in zip(queues[1:], accepted[1:], strict=True):
        print(f"max_queued {queue}: {count / max(1, accepted[0]):.2f}x the logins of {queues[0]}")


if __name__ == "__main__":
    main()
