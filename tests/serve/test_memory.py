"""Server processes keep the cyclic garbage collector off the per-message path."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cryptmail.serve._memory import GC_YOUNG_THRESHOLD, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_gc_freezes_what_start_loaded_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    loaded_at_start = [object(), [1, 2], {"a": 1}]
    settle_gc()
    assert gc.get_freeze_count() > len(loaded_at_start)
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    tracked = {id(o) for o in gc.get_objects()}
    assert id(loaded_at_start[1]) not in tracked  # frozen: no collection walks it again
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle made after the freeze is still collected
    del garbage
    assert gc.collect() >= 1


_FAULTS = """
import asyncio, os, resource, sys, tempfile
from pathlib import Path
from cryptmail.serve._memory import tune_malloc
from cryptmail.crypto import BlobSealer, generate_private_key, public_info
from cryptmail.store import Spool

if sys.argv[1] == "tuned":
    assert tune_malloc()
recipient = public_info(generate_private_key("x25519"))
pieces = [os.urandom(65536) for _ in range(3)] + [os.urandom(13000)]

async def deliver(directory):
    # What a worker does with a 210 KB message between the socket and the blob file.
    spool = Spool(directory)
    for piece in pieces:
        await spool.write(piece)
    await spool.close()
    sealer = BlobSealer(recipient, bytes(16))
    async for chunk in spool.chunks():
        sealer.update(chunk)
    sealer.finalize()
    spool.discard()

async def main():
    with tempfile.TemporaryDirectory() as directory:
        await deliver(Path(directory))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            await deliver(Path(directory))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

asyncio.run(main())
"""


def _page_faults(mode: str) -> int:
    # glibc's default mmap threshold is dynamic: it rises once a mapped chunk is freed, so
    # how many faults "default" shows depends on what the imports allocated and freed. The
    # tunable pins it at glibc's starting value, the case tune_malloc exists for.
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}
    found = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True, env=env
    )
    return int(found.stdout)


def test_tune_malloc_reuses_freed_message_buffers_instead_of_faulting_in_new_pages() -> None:
    # 50 messages of 210 KB: about 170 fresh pages each by default (measured 8,400).
    assert _page_faults("default") > 50 * 50
    assert _page_faults("tuned") < 500
