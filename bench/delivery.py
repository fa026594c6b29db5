"""LMTP delivery throughput and server CPU, crypt=2 against crypt=0 and Dovecot, in one run.

    python bench/delivery.py [--quick] [--no-dovecot]

Starts `cryptmail serve` on a fresh data directory, delivers ~4 KB and ~200 KB MIME
messages at concurrency 1 and 8, and prints messages/s, MB/s, server CPU ms per message
(from /proc schedstat, of `serve` and its LMTP worker processes: `lmtp.processes`
defaults to two per core), peak RSS (the processes' peaks added up), and the
crypt2/crypt0 CPU ratio (target <= 1.3x).
Each server and recipient first gets 50 unmeasured deliveries, then deliveries on 8
connections until its process count holds still (cryptmail starts LMTP workers on
demand), again before each row at concurrency 8 (a worker idle for a minute exits), so
the figures are the steady state, not start-up. All servers run side by
side; each set is delivered in five parts that go round the servers in turn, and each
row is the median part.
Temporary data directories (ours and Dovecot's) follow TMPDIR.

The baseline is Dovecot 2.3 LMTP on loopback, started by the integration runner
(`tests/integration/servers/dovecot.py`), with the same message sets: once with
mail-crypt per-user keys (secp521r1 as in the ISPmail guide, the user key locked by the
userdb field `mail_crypt_private_password`) and once without. Dovecot's CPU is that of
its whole process tree (live processes plus reaped children). Printed: cryptmail
crypt=2 msg/s over Dovecot mail-crypt msg/s (target >= 2x).

A third cryptmail server runs Sieve at delivery: the user's active script, 20 rules
(header, address and envelope tests, none of which match the bench's messages, so every
rule is evaluated), stored sealed as ManageSieve stores it, plus ISPmail's global
after-script (X-Spam into Junk) as `sieve.after`. Dovecot mail-crypt runs the same two
scripts with Pigeonhole (`sieve` and `sieve_after`, the sieve plugin for LMTP only).
Printed: Sieve msg/s over the same run's crypt=2 msg/s (target >= 0.8x), and cryptmail
with Sieve over Dovecot mail-crypt with Pigeonhole (target >= 2x).

CRYPTMAIL_BENCH_PROFILE=out.prof runs the cryptmail server under cProfile and writes
the profile there when it stops (see bench/_servers.py). No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from _servers import (
    DOVECOT_USER,
    check_dovecot_sealed,
    cryptmail_server,
    dovecot_server,
    lmtp_deliver,
    make_users,
    message,
    tree_cpu_s,
    tree_hwm_mib,
)

from cryptmail.db import create_engine
from cryptmail.sieve import ScriptLimits, put_script, set_active
from cryptmail.users import get_user

Row = tuple[str, int, str, int, float, float, float, float]
WARMUP_MESSAGES = 50
WARM_CONNECTIONS = 8
WARM_S = 15.0
ROUNDS = 5


@dataclass
class Target:
    """One server and recipient as the bench delivers to it."""

    label: str
    pid: int
    port: int
    rcpt: str
    cpu: Callable[[], float]
    rss: Callable[[], float]


def _tree_size(root: int) -> int:
    """How many processes `root`'s tree has (itself and its children)."""
    count = 1
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += int(stat[1]) == root
    return count


def _warm_workers(target: Target) -> None:
    """Deliver on WARM_CONNECTIONS connections until the server has as many processes as
    it starts for them (cryptmail starts LMTP workers on demand, each a new interpreter
    of about a second of CPU): the figures at 8 connections are then its steady state,
    not a part that paid for a start. At most WARM_S seconds."""
    deadline = time.monotonic() + WARM_S
    seen, steady = 0, 0
    serial = 0
    while time.monotonic() < deadline and steady < 3:
        streams = [
            [message(4096, 500_000 + serial + n * 10 + i) for i in range(10)]
            for n in range(WARM_CONNECTIONS)
        ]
        serial += WARM_CONNECTIONS * 10
        with ThreadPoolExecutor(WARM_CONNECTIONS) as pool:
            list(pool.map(partial(lmtp_deliver, target.port, target.rcpt), streams))
        size = _tree_size(target.pid)
        steady = steady + 1 if size == seen else 0
        seen = size
        time.sleep(0.3)


def _measure(targets: list[Target], messages: list[bytes], concurrency: int) -> list[Row]:
    """Deliver `messages` to every target in ROUNDS parts; each row is its median part.

    The parts go round the targets in turn: a shared machine has bursts of noise lasting
    seconds, and taking turns lets a burst fall on every server instead of deciding a
    ratio, while the median keeps one burst from deciding a row.
    """
    rounds: dict[str, list[tuple[float, float]]] = {t.label: [] for t in targets}
    for part in (messages[i::ROUNDS] for i in range(ROUNDS)):
        streams = [part[i::concurrency] for i in range(concurrency)]
        for target in targets:
            cpu0 = target.cpu()
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(partial(lmtp_deliver, target.port, target.rcpt), streams))
            wall = time.perf_counter() - start
            cpu_ms = (target.cpu() - cpu0) * 1000 / len(part)
            rounds[target.label].append((len(part) / wall, cpu_ms))
    size = len(messages[0])
    rows = []
    for target in targets:
        rate = statistics.median(r for r, _ in rounds[target.label])
        cpu_ms = statistics.median(c for _, c in rounds[target.label])
        rows.append(
            (
                f"{round(size / 1000)} KB",
                concurrency,
                target.label,
                len(messages),
                rate,
                rate * size / 1e6,
                cpu_ms,
                target.rss(),
            )  # fmt: skip
        )
    return rows


AFTER_SCRIPT = (
    'require ["fileinto"];\nif header :contains "X-Spam" "Yes" {\n  fileinto "Junk";\n  stop;\n}\n'
)
RULE = (
    'if anyof (header :contains "subject" "bench-rule-{n}", '
    'address :domain :is "from" "rule{n}.example", envelope :localpart :is "from" "r{n}") '
    '{{ fileinto "Archive"; stop; }}\n'
)
RULES_SCRIPT = 'require ["fileinto", "envelope"];\n' + "".join(RULE.format(n=n) for n in range(20))


def _activate(data_dir: Path, email: str, text: str) -> None:
    """Store `text` as the user's active script, as ManageSieve's PUTSCRIPT and
    SETACTIVE do (sealed under the server key `make_users` installed)."""

    async def run() -> None:
        engine = create_engine(f"sqlite:///{data_dir / 'cryptmail.db'}")
        async with engine.connect() as conn:
            user_id = (await get_user(conn, email)).id
        await put_script(engine, user_id, "rules", text, ScriptLimits())
        await set_active(engine, user_id, "rules")
        await engine.dispose()

    asyncio.run(run())


@contextmanager
def _cryptmail(sieve: bool = False) -> Iterator[tuple[int, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        make_users(data_dir, {"c2@example.org": 2, "c0@example.org": 0})
        config = None
        if sieve:
            _activate(data_dir, "c2@example.org", RULES_SCRIPT)
            (Path(tmp) / "after.sieve").write_text(AFTER_SCRIPT)
            config = Path(tmp) / "sieve.toml"
            config.write_text(f'[sieve]\nafter = "{tmp}/after.sieve"\n')
        with cryptmail_server(data_dir, "lmtp", config=config) as (pid, ports):
            yield pid, ports["lmtp"]


@contextmanager
def _dovecot(mail_crypt: bool, sieve: bool = False) -> Iterator[tuple[int, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        scripts = None
        if sieve:
            # Readable by Dovecot's mail user, which the temporary folder's 0700 is not.
            folder = Path(tmp)
            folder.chmod(0o755)
            scripts = (folder / "rules.sieve", folder / "after.sieve")
            scripts[0].write_text(RULES_SCRIPT)
            scripts[1].write_text(AFTER_SCRIPT)
        with dovecot_server(mail_crypt, lmtp=True, sieve=scripts) as server:
            if sieve:  # numbers only from a Dovecot that runs the scripts
                spam = b"X-Spam: Yes\r\n" + message(4096, 999_999)
                lmtp_deliver(server.lmtp_port, DOVECOT_USER, [spam])
                if not list(server.maildir(DOVECOT_USER, "Junk").glob("*/*")):
                    raise RuntimeError(f"Pigeonhole did not file into Junk: {server.log_path}")
            yield server._process.pid, server.lmtp_port
            check_dovecot_sealed(server, mail_crypt)


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
    # A set per size and concurrency: the same bytes twice to one user within the hour
    # are a retry, which the server recognises and does not store again.
    sets = {
        (size, concurrency): [message(size, concurrency * 1_000_000 + i) for i in range(count)]
        for size, count in counts.items()
        for concurrency in (1, 8)
    }
    rows: list[Row] = []
    by: dict[tuple[int, int, str], Row] = {}

    # Unmeasured warm-up per server and recipient: the first deliveries pay for imports,
    # caches and the first SQLite pages, which a short run would otherwise mostly measure.
    warmup = [message(4096, 100_000 + i) for i in range(WARMUP_MESSAGES)]

    with ExitStack() as running:
        pid, port = running.enter_context(_cryptmail())
        targets = [
            Target(label, pid, port, rcpt, partial(tree_cpu_s, pid), partial(tree_hwm_mib, pid))
            for rcpt, label in (
                ("c2@example.org", "cryptmail c2"),
                ("c0@example.org", "cryptmail c0"),
            )
        ]
        pid_s, port_s = running.enter_context(_cryptmail(sieve=True))
        targets.append(
            Target(
                "cryptmail c2 sieve",
                pid_s,
                port_s,
                "c2@example.org",
                partial(tree_cpu_s, pid_s),
                partial(tree_hwm_mib, pid_s),
            )
        )
        if not args.no_dovecot:
            for mail_crypt, sieve, label in (
                (True, False, "dovecot crypt"),
                (False, False, "dovecot plain"),
                (True, True, "dovecot crypt sieve"),
            ):
                pid_d, port_d = running.enter_context(_dovecot(mail_crypt, sieve))
                targets.append(
                    Target(
                        label, pid_d, port_d, DOVECOT_USER, partial(tree_cpu_s, pid_d), lambda: 0.0
                    )
                )
        for target in targets:
            lmtp_deliver(target.port, target.rcpt, warmup)
            _warm_workers(target)
        for (size, concurrency), messages in sets.items():
            if concurrency > 1:
                # Workers idle for `lmtp.process_idle_s` (60 s) exit, and the rows on
                # one connection leave all but one idle for about that long on a slow
                # machine: started again inside the measured parts, each would add
                # its second of CPU to them.
                for target in targets:
                    _warm_workers(target)
            for row in _measure(targets, messages, concurrency):
                rows.append(row)
                by[(size, concurrency, row[2])] = row
    rows.sort(key=lambda r: (int(r[0].split()[0]), r[1]))
    _print_rows(rows)
    print()
    for size in counts:
        for concurrency in (1, 8):
            c2 = by[(size, concurrency, "cryptmail c2")]
            c0 = by[(size, concurrency, "cryptmail c0")]
            where = f"{size // 1000} KB, concurrency {concurrency}"
            print(f"CPU ratio crypt2/crypt0, {where}: {c2[6] / c0[6]:.2f}x (target <= 1.3x)")
            sv = by[(size, concurrency, "cryptmail c2 sieve")]
            print(
                f"  msg/s with Sieve (20 rules + after) / without, {where}: "
                f"{sv[4] / c2[4]:.2f}x (target >= 0.8x)"
            )
            if args.no_dovecot:
                continue
            dc = by[(size, concurrency, "dovecot crypt")]
            dp = by[(size, concurrency, "dovecot plain")]
            print(
                f"  msg/s cryptmail crypt2 / Dovecot mail-crypt, {where}: "
                f"{c2[4] / dc[4]:.2f}x (target >= 2x); Dovecot's own crypt/plain CPU "
                f"{dc[6] / dp[6]:.2f}x"
            )
            ds = by[(size, concurrency, "dovecot crypt sieve")]
            print(
                f"  msg/s with Sieve, cryptmail crypt2 / Dovecot mail-crypt + Pigeonhole, "
                f"{where}: {sv[4] / ds[4]:.2f}x (target >= 2x)"
            )
    if args.no_dovecot:
        print("Dovecot baseline: not run (--no-dovecot)")


if __name__ == "__main__":
    main()
