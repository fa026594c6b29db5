"""Metrics of the server process itself: worker restarts and the database pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PoolUse = Callable[[], tuple[int, int]]
"""Connections (checked out, idle in the pool) of the database engine, now."""


class _PoolCollector(Collector):
    def __init__(self, pool_use: PoolUse) -> None:
        self._pool_use = pool_use

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use, idle = self._pool_use()
        family = GaugeMetricFamily(
            "cryptmail_db_connections",
            "Database connections of the main process, by state (in_use, idle).",
            labels=["state"],
        )
        family.add_metric(["in_use"], in_use)
        family.add_metric(["idle"], idle)
        yield family


class ProcessMetrics:
    def __init__(self, registry: CollectorRegistry, pool_use: PoolUse | None) -> None:
        self.restarts = Counter(
            "cryptmail_worker_restarts",
            "LMTP worker processes that died and were started again.",
            registry=registry,
        )
        if pool_use is not None:
            registry.register(_PoolCollector(pool_use))

    def worker_restart(self) -> None:
        self.restarts.inc()
