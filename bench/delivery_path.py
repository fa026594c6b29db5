"""CPU per message of the in-process part of a delivery, sealed against plain.

    python bench/delivery_path.py [--quick]

Runs a message the way an LMTP worker does after the socket: DATA dot-unstuffed by
`LmtpInput` from 64 KiB reads, written into a `Spool` (with its SHA-256), then read
back and sealed by `BlobSealer` (crypt 2) or taken as it is (crypt 0). No disk, no
database, no socket: it isolates the per-byte work (copies, hashing, AES-GCM) that
`bench/delivery.py` sees only through the noise of a whole server. Prints CPU
microseconds per message for ~4 KB and ~206 KB messages and the crypt 2 / crypt 0
ratio, once with malloc tuned as `serve`'s processes tune it (`tune_malloc`) and once
with glibc's defaults, each in its own interpreter. No asserts: numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptmail.crypto import BlobSealer, generate_private_key, public_info
from cryptmail.delivery._input import LmtpInput
from cryptmail.serve import tune_malloc
from cryptmail.store import Spool

READ = 64 * 1024


class _Wire:
    """A socket that has the whole DATA ready, handed out in `READ`-sized reads."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._at = 0

    async def read(self, n: int) -> bytes:
        piece = bytes(self._view[self._at : self._at + n])
        self._at += len(piece)
        return piece


async def _one(wire: bytes, spool_dir: Path, sealed: bool, recipient: object) -> int:
    pieces = [piece async for piece in LmtpInput(_Wire(wire), 10).data()]
    spool = Spool(spool_dir)
    for piece in pieces:
        await spool.write(piece)
    await spool.close()
    written = 0
    sealer = BlobSealer(recipient, os.urandom(16)) if sealed else None  # type: ignore[arg-type]
    async for chunk in spool.chunks():
        written += len(sealer.update(chunk) if sealer else chunk)
    if sealer is not None:
        written += len(sealer.finalize())
    spool.discard()
    return written


async def _cpu_us(wire: bytes, spool_dir: Path, sealed: bool, count: int) -> float:
    recipient = public_info(generate_private_key("x25519"))
    for _ in range(max(5, count // 10)):
        await _one(wire, spool_dir, sealed, recipient)
    start = time.process_time()
    for _ in range(count):
        await _one(wire, spool_dir, sealed, recipient)
    return (time.process_time() - start) / count * 1e6


def _measure(quick: bool) -> None:
    line = b"A" * 74 + b"\r\n"
    with tempfile.TemporaryDirectory() as tmp:
        for label, lines, count in (("4 KB", 54, 2000), ("206 KB", 2700, 300)):
            count = count // 10 if quick else count
            wire = line * lines + b".\r\n"
            # Taking turns: a slow phase of the machine lands on both sides.
            plain, sealed = [], []
            for _ in range(3):
                plain.append(asyncio.run(_cpu_us(wire, Path(tmp), False, count)))
                sealed.append(asyncio.run(_cpu_us(wire, Path(tmp), True, count)))
            c0, c2 = min(plain), min(sealed)
            print(
                f"  {label}: crypt 2 {c2:.0f} us, crypt 0 {c0:.0f} us of CPU per message; "
                f"crypt 2 / crypt 0 {c2 / c0:.2f}x",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--malloc", choices=("tuned", "default"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.malloc:
        if args.malloc == "tuned":
            tune_malloc()
        _measure(args.quick)
        return
    for malloc in ("tuned", "default"):
        print(f"malloc {malloc} (input, spool, seal):", flush=True)
        command = [sys.executable, __file__, "--malloc", malloc]
        subprocess.run([*command, "--quick"] if args.quick else command, check=True)


if __name__ == "__main__":
    main()
