"""Sieve interpreter CPU per message, in process: bench/delivery.py's scripts (the
20-rule user script and the after-script) run on one bench message, as delivery runs
them for one recipient's copy (a new SieveMessage of the trace lines and the header,
then run_scripts).

    python bench/sieve.py [--count N] [--repeat N] [--profile]

Prints CPU µs per message, the best and the median of REPEAT runs of COUNT messages
(the best is the least disturbed by other load on a shared machine), split into
building the SieveMessages and running the scripts on them. --profile runs COUNT
messages under cProfile and prints the top functions by own time instead. No asserts:
numbers only.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from _servers import message

from cryptmail.sieve import (
    CompiledScript,
    DuplicateMark,
    SieveEnvelope,
    SieveMessage,
    SieveSettings,
    compile_script,
    run_scripts,
)
from delivery import AFTER_SCRIPT, RULES_SCRIPT

SENDER = "bench@example.net"
RECIPIENT = "c2@example.org"
_BATCH = 100
# As delivery builds it: the trace lines (delivery/_trace.py), then the spooled header.
TRACE = f"Return-Path: <{SENDER}>\r\nDelivered-To: {RECIPIENT}\r\n".encode()


class _NoWorld:
    """The bench scripts ask the world nothing (no mailboxexists, duplicate, include)."""

    def mailbox_exists(self, name: str) -> bool:
        return False

    def duplicate_seen(self, mark: DuplicateMark) -> bool:
        return False

    def include(self, location: str, name: str) -> CompiledScript | None:
        return None


def _head(raw: bytes) -> bytes:
    """The header and its blank line, as SieveCopy.data(False) reads it off the spool."""
    return raw[: raw.index(b"\r\n\r\n") + 4]


def _run(scripts: list[CompiledScript], head: bytes, size: int, count: int) -> tuple[float, float]:
    """CPU seconds spent building `count` messages, and running the scripts on them."""
    envelope = SieveEnvelope(SENDER, RECIPIENT)
    world = _NoWorld()
    settings = SieveSettings()
    clock = time.process_time  # CPU, not wall: the machine is shared
    built = ran = 0.0
    # In batches: a clock read per message would cost as much as building one, and all
    # of them alive at once would make each garbage collection walk them all.
    for _ in range(0, count, _BATCH):
        start = clock()
        batch = [SieveMessage(TRACE + head, size=size) for _ in range(_BATCH)]
        middle = clock()
        for sieve_message in batch:
            run_scripts(scripts, sieve_message, envelope, world, settings)
        end = clock()
        built += middle - start
        ran += end - middle
    return built, ran


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000, help="a multiple of 100")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    scripts = [
        compile_script(RULES_SCRIPT, name="rules"),
        compile_script(AFTER_SCRIPT, name="after"),
    ]
    raw = message(4096, 1)
    head = _head(raw)
    size = len(TRACE) + len(raw)
    result = run_scripts(
        scripts, SieveMessage(TRACE + head, size=size), SieveEnvelope(SENDER, RECIPIENT), _NoWorld()
    )
    print(f"actions: {[type(a).__name__ for a in result.actions]}; errors: {list(result.errors)}")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        _run(scripts, head, size, args.count)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    _run(scripts, head, size, min(args.count, 1000))  # warm-up
    rows = [_run(scripts, head, size, args.count) for _ in range(args.repeat)]
    per = 1e6 / args.count
    totals = [(b + r) * per for b, r in rows]
    builds = [b * per for b, _ in rows]
    runs = [r * per for _, r in rows]
    print(f"{args.count} messages x {args.repeat} runs, µs per message (best / median):")
    print(f"  total       {min(totals):7.1f} / {statistics.median(totals):7.1f}")
    print(f"  SieveMessage{min(builds):7.1f} / {statistics.median(builds):7.1f}")
    print(f"  run_scripts {min(runs):7.1f} / {statistics.median(runs):7.1f}")


if __name__ == "__main__":
    main()
