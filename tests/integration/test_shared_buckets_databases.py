"""The login throttle's shared failure buckets on every database: failures recorded at
once by many logins (a guessing run spread over connections and nodes) all count:
each is one atomic upsert, never a read and a write back."""

from __future__ import annotations

import asyncio

import pytest

from cryptmail.keys._shared_buckets import SharedBuckets
from store.conftest import StoreRig

NOW = 1_000_000.0


async def test_parallel_failures_all_count_on_every_database(store_rig: StoreRig) -> None:
    shared = SharedBuckets(store_rig.engine, b"k" * 32, clock=lambda: NOW)
    for round_ in range(5):
        # As a login's failure: the address's and the client's bucket at once.
        keys = [
            shared.key(f"alice{round_}@example.org", 100, 10.0),
            shared.key(f"198.51.100.{round_}", 100, 10.0),
        ]
        await asyncio.gather(*(shared.spend(keys) for _ in range(8)))
        levels = await shared.levels(keys)
        assert levels == {k.key_hash: pytest.approx(100 - 8) for k in keys}, round_
