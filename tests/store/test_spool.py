"""The transit spool: sealed on disk, digest of the plaintext, crash leftovers swept."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptmail.store import Spool, sweep_spools

MARKER = b"spool-marker-5c1d"


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_spool_on_disk_never_holds_the_plaintext(tmp_path: Path) -> None:
    message = (MARKER + b" " + os.urandom(64).hex().encode() + b"\r\n") * 5000
    spool = Spool(tmp_path, memory_limit=64 * 1024)
    for start in range(0, len(message), 10_000):
        await spool.write(message[start : start + 10_000])
    await spool.close()
    files = _files(tmp_path)
    assert len(files) == 1
    on_disk = files[0].read_bytes()
    assert MARKER not in on_disk
    assert message[:64] not in on_disk
    assert spool.size == len(message)
    assert spool.digest == hashlib.sha256(message).digest()
    # Readable any number of times, and equal to what went in.
    assert b"".join([c async for c in spool.chunks()]) == message
    assert b"".join([c async for c in spool.chunks()]) == message
    spool.discard()
    assert _files(tmp_path) == []


async def test_a_small_message_never_touches_the_disk(tmp_path: Path) -> None:
    message = MARKER + b"\r\n" * 100
    spool = Spool(tmp_path / "spool", memory_limit=len(message))
    await spool.write(message)
    await spool.close()
    assert not spool.on_disk
    assert not (tmp_path / "spool").exists()
    assert b"".join([c async for c in spool.chunks()]) == message
    assert spool.digest == hashlib.sha256(message).digest()
    spool.discard()


async def test_one_byte_over_the_limit_moves_to_a_sealed_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=100)
    await spool.write(MARKER * 5)
    assert not spool.on_disk
    await spool.write(MARKER * 2)  # 119 bytes: over the limit
    await spool.close()
    assert spool.on_disk
    [file] = _files(tmp_path)
    assert MARKER not in file.read_bytes()
    assert b"".join([c async for c in spool.chunks()]) == MARKER * 7
    spool.discard()
    assert _files(tmp_path) == []


async def test_empty_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.close()
    assert b"".join([c async for c in spool.chunks()]) == b""
    assert spool.digest == hashlib.sha256(b"").digest()
    spool.discard()


def test_sweep_spools_spares_live_writers(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    live = tmp_path / f"spool-{os.getpid()}-aa"
    gone = tmp_path / f"spool-{dead_pid}-bb"
    odd = tmp_path / "spool-notapid-cc"
    other = tmp_path / "unrelated"
    for path in (live, gone, odd, other):
        path.write_bytes(b"x")
    assert sweep_spools(tmp_path) == 2
    assert live.exists()
    assert other.exists()
    assert not gone.exists()
    assert not odd.exists()
    assert sweep_spools(tmp_path / "absent") == 0


@pytest.mark.parametrize(
    ("message", "head"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n", b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1\nB: 2\n\nbody\r\n\r\n", b"A: 1\nB: 2\n\n"),
        (b"A: 1\r\n\r\nbody\n\nmore", b"A: 1\r\n\r\n"),
        (b"A: 1\r\nno empty line", b"A: 1\r\nno empty line"),
        (b"", b""),
        # An empty header: the body's lines are not header fields (RFC 5322 3.5).
        (b"\r\nX-Spam: Yes\r\n\r\nbody", b"\r\n"),
        (b"\nX-Spam: Yes\n\nbody", b"\n"),
    ],
)
async def test_head_is_the_header_through_the_first_empty_line(
    tmp_path: Path, message: bytes, head: bytes
) -> None:
    spool = Spool(tmp_path)
    await spool.write(message)
    await spool.close()
    assert spool.head() == head
    spool.discard()


async def test_head_of_a_spool_on_disk_is_read_from_chunks(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=16)
    await spool.write(b"A: 1\r\n\r\n" + b"x" * 64)
    await spool.close()
    assert spool.on_disk and spool.head() is None
    spool.discard()
