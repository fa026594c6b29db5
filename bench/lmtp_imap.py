"""IMAP latency while LMTP delivers, and the delivery rate, by LMTP process layout.

    python bench/lmtp_imap.py [--rounds 2] [--seconds 6] [--conns 8] [--recipients 40]
                              [--size 4096]

Three layouts of `serve` (LMTP and IMAP, `lmtp.processes = 2`) take turns, `--rounds`
times each, a fresh server each: "forked" (`lmtp.process_idle_s = 0`: two workers forked
at the start deliver, the main process only serves IMAP), "on demand" (the default:
workers start as new interpreters while connections come, the main process only serves
IMAP) and "in main" (`lmtp.deliver_in_main`: the main process delivers too, and starts
one worker while it holds connections and more come). In each, one IMAP session (logged
in, INBOX of 20 x 4 KB selected) sends NOOP and `FETCH n BODY.PEEK[]` one after another:
first with nothing else running, then while `--conns` LMTP connections deliver messages
of `--size` bytes (4 KB) to `--recipients` users each, as fast as the server answers,
for `--seconds`. Printed per layout: the median and 95th percentile of each command's
round trip, idle and under delivery, and the stored copies per second. No asserts:
numbers only.
"""

from __future__ import annotations

import argparse
import imaplib
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _servers import PASSWORD, cryptmail_server, lmtp_deliver, make_users, message
from mix import Transaction, deliver

LAYOUTS = {
    "forked": "process_idle_s = 0\n",
    "on demand": "",
    "in main": "deliver_in_main = true\n",
}


def _timed(client: imaplib.IMAP4, until: float, count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"NOOP": [], "FETCH": []}
    n = 0
    while (until and time.monotonic() < until) or (not until and n < count):
        start = time.perf_counter()
        client.noop()
        times["NOOP"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        client.fetch(str(1 + n % 20), "(BODY.PEEK[])")
        times["FETCH"].append((time.perf_counter() - start) * 1000)
        n += 1
    return times


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def _one(layout: str, args: argparse.Namespace) -> dict[str, float]:
    users = [f"r{i}@example.org" for i in range(args.recipients)]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_users(data_dir, dict.fromkeys(users, 2))
        config = Path(tmp) / "bench.toml"
        config.write_text(f"[lmtp]\nprocesses = 2\n{LAYOUTS[layout]}")
        with cryptmail_server(data_dir, "lmtp", "imap", config=config) as (_pid, ports):
            lmtp_deliver(ports["lmtp"], users[0], [message(4096, i) for i in range(20)])
            client = imaplib.IMAP4("127.0.0.1", ports["imap"])
            client.login(users[0], PASSWORD)
            client.select("INBOX")
            idle = _timed(client, 0.0, 200)
            stop = threading.Event()
            copies = [0]
            lock = threading.Lock()
            rcpts = tuple(str(n) for n in range(args.recipients))

            def sender(conn: int) -> None:
                n = 0
                while not stop.is_set():
                    batch = [
                        Transaction(message(args.size, 100_000 * (conn + 1) + n + i), rcpts)
                        for i in range(5)
                    ]
                    n += 5
                    deliver(ports["lmtp"], batch, users=users)
                    with lock:
                        copies[0] += 5 * len(rcpts)

            threads = [threading.Thread(target=sender, args=(c,)) for c in range(args.conns)]
            start = time.monotonic()
            for thread in threads:
                thread.start()
            busy = _timed(client, start + args.seconds, 0)
            stop.set()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - start
            client.logout()
    result = {"copies/s": copies[0] / wall}
    for name in ("NOOP", "FETCH"):
        result[f"{name} idle p50"] = statistics.median(idle[name])
        result[f"{name} idle p95"] = _p95(idle[name])
        result[f"{name} busy p50"] = statistics.median(busy[name])
        result[f"{name} busy p95"] = _p95(busy[name])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--recipients", type=int, default=40)
    parser.add_argument("--size", type=int, default=4096, help="delivered messages' size")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {layout: [] for layout in LAYOUTS}
    for _round in range(args.rounds):
        for layout in LAYOUTS:
            results[layout].append(_one(layout, args))
            print(f"{layout}: {results[layout][-1]}", flush=True)
    rows = list(results["forked"][0])
    print(
        f"\n| medians of {args.rounds} rounds | " + " | ".join(LAYOUTS) + " | on demand / forked |"
    )
    print("|---|" + "---|" * (len(LAYOUTS) + 1))
    for row in rows:
        values = [statistics.median(r[row] for r in results[layout]) for layout in LAYOUTS]
        unit = "" if row == "copies/s" else " ms"
        cells = " | ".join(f"{v:.2f}{unit}" for v in values)
        print(f"| {row} | {cells} | {values[1] / values[0]:.2f}x |")


if __name__ == "__main__":
    main()
