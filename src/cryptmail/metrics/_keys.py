"""Key metrics: the Argon2 queue (length, wait) and the unlocked-account cache."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class KeyMetrics:
    def __init__(self, registry: CollectorRegistry, kdf_load: Callable[[], int]) -> None:
        self.queue = Gauge(
            "cryptmail_argon2_load",
            "Argon2 derivations running or waiting for the pool, at scrape time.",
            registry=registry,
        )
        self.queue.set_function(lambda: float(kdf_load()))
        self.wait = Histogram(
            "cryptmail_argon2_wait_seconds",
            "Time a derivation waited for a free Argon2 worker.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.cache = Counter(
            "cryptmail_key_cache_lookups",
            "Logins served from the unlocked-account cache (result=hit) or needing "
            "Argon2 (result=miss).",
            ["result"],
            registry=registry,
        )
        for result in ("hit", "miss"):
            self.cache.labels(result=result)

    def argon2_wait(self, seconds: float) -> None:
        self.wait.observe(seconds)

    def key_cache(self, hit: bool) -> None:
        self.cache.labels(result="hit" if hit else "miss").inc()
