"""Token buckets by key, in a table of bounded size that forgets the harmless first.

A bucket holds up to `burst` tokens and gains one every `refill_s` seconds. A key with
no bucket is full; a bucket that fills up again is dropped, so the table holds only the
keys that owe something. When it is full anyway, the buckets closest to full are
evicted first, so a flood of fresh keys cannot wash out the deepest debts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class BucketTable:
    burst: int
    refill_s: float
    max_entries: int
    clock: Callable[[], float]
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._buckets)

    def level(self, key: str) -> float:
        """Tokens in `key`'s bucket now (`burst` when it has none)."""
        bucket = self._buckets.get(key)
        return float(self.burst) if bucket is None else self._refilled(bucket, self.clock())

    def wait_s(self, key: str) -> float:
        """Seconds until `key` has a whole token; 0 when it has one now."""
        return max(0.0, (1.0 - self.level(key)) * self.refill_s)

    def take(self, key: str) -> None:
        """Spend one token (the caller checked `wait_s` first)."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_entries:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = self._refilled(bucket, now) - 1.0
        bucket.stamp = now

    def lower_to(self, key: str, level: float) -> None:
        """Make `key`'s bucket hold at most `level` tokens now (another node's failures,
        read from the shared table)."""
        now = self.clock()
        bucket = self._buckets.get(key)
        current = float(self.burst) if bucket is None else self._refilled(bucket, now)
        if level >= current:
            return
        if bucket is None:
            if len(self._buckets) >= self.max_entries:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(level, now)
        bucket.tokens = level
        bucket.stamp = now

    def give_back(self, key: str) -> None:
        """Return one token spent by `take`."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        bucket.tokens = min(float(self.burst), self._refilled(bucket, now) + 1.0)
        bucket.stamp = now
        if bucket.tokens >= self.burst:
            del self._buckets[key]

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        gained = (now - bucket.stamp) / self.refill_s if self.refill_s > 0 else float("inf")
        return min(float(self.burst), bucket.tokens + gained)

    def _make_room(self, now: float) -> None:
        # Full buckets carry no memory: drop them all. If that is not enough, drop the
        # tenth closest to full, so that sweeps stay rare under a flood of new keys.
        for key in [k for k, b in self._buckets.items() if self._refilled(b, now) >= self.burst]:
            del self._buckets[key]
        target = self.max_entries - max(1, self.max_entries // 10)
        excess = len(self._buckets) - target
        if excess > 0:
            levels = ((self._refilled(b, now), k) for k, b in self._buckets.items())
            for _level, key in heapq.nlargest(excess, levels):
                del self._buckets[key]
