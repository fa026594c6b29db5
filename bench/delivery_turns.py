"""Server CPU per message of several `cryptmail serve`s taking turns: an A/B of two trees.

    python bench/delivery_turns.py [--size N] [--count N] [--rounds N] LABEL=SRC:SIEVE ...

Each LABEL=SRC:SIEVE starts a server from the source tree SRC (its PYTHONPATH: compare
a branch with main, `/work/main/src`), with bench/delivery.py's Sieve setup (the 20-rule
user script and the after-script) when SIEVE is 1. Every server gets 50 unmeasured
messages, then ROUNDS parts of COUNT messages each, one connection, the servers in turn;
each row is the median part: server CPU ms per message (schedstat of the server and its
workers) and msg/s, and the CPU as a ratio of the first server's. On a shared machine
CPU taken this way is what to compare: load moves msg/s far more, and py-spy's samples
count time a process waits for a core. Add the same server twice to see the noise.
No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from _servers import lmtp_deliver, message, tree_cpu_s

from delivery import WARMUP_MESSAGES, _cryptmail

RCPT = "c2@example.org"


@contextmanager
def _server(source: str, sieve: bool) -> Iterator[tuple[int, int]]:
    """bench/delivery.py's server, started with `source` first on its PYTHONPATH."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (source, before)))
    try:
        with _cryptmail(sieve=sieve) as (pid, port):
            _restore(before)
            yield pid, port
    finally:
        _restore(before)


def _restore(value: str | None) -> None:
    if value is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("servers", nargs="+", metavar="LABEL=SRC:SIEVE")
    args = parser.parse_args()
    with ExitStack() as running:
        servers: list[tuple[str, int, int]] = []
        for spec in args.servers:
            label, _, rest = spec.partition("=")
            source, _, sieve = rest.rpartition(":")
            pid, port = running.enter_context(_server(source, sieve == "1"))
            servers.append((label, pid, port))
        warmup = [message(4096, 100_000 + i) for i in range(WARMUP_MESSAGES)]
        for _label, _pid, port in servers:
            lmtp_deliver(port, RCPT, warmup)
        parts: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in servers}
        part = 0
        for _round in range(args.rounds):
            for label, pid, port in servers:
                # Other bytes every part: the same bytes again within the hour are a retry.
                batch = [
                    message(args.size, 7_000_000 + part * 10_000 + i) for i in range(args.count)
                ]
                part += 1
                cpu0, start = tree_cpu_s(pid), time.perf_counter()
                lmtp_deliver(port, RCPT, batch)
                wall = time.perf_counter() - start
                parts[label].append(
                    ((tree_cpu_s(pid) - cpu0) * 1000 / args.count, args.count / wall)
                )
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.size} B x {args.count} a part, {args.rounds} rounds; load average now {load}")
    first = statistics.median(c for c, _ in parts[servers[0][0]])
    for label, _pid, _port in servers:
        cpu = statistics.median(c for c, _ in parts[label])
        rate = statistics.median(r for _, r in parts[label])
        print(
            f"{label:>16}: {cpu:.3f} ms CPU/msg ({cpu / first:.2f}x of the first), {rate:.1f} msg/s"
        )


if __name__ == "__main__":
    main()
