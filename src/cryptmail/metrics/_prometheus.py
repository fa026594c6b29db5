"""`PrometheusMetrics`: the sink that counts, on a registry of its own, and renders it."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from cryptmail.metrics._blobs import BlobMetrics
from cryptmail.metrics._delivery import DeliveryMetrics
from cryptmail.metrics._imap import ImapMetrics
from cryptmail.metrics._keys import KeyMetrics
from cryptmail.metrics._logins import LoginMetrics
from cryptmail.metrics._process import PoolUse, ProcessMetrics


class PrometheusMetrics:
    """Every metric of one server, in `registry` (a new one if not given)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        kdf_load: Callable[[], int] = lambda: 0,
        pool_use: PoolUse | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._delivery = DeliveryMetrics(self.registry)
        self._imap = ImapMetrics(self.registry)
        self._logins = LoginMetrics(self.registry)
        self._keys = KeyMetrics(self.registry, kdf_load)
        self._blobs = BlobMetrics(self.registry)
        self._process = ProcessMetrics(self.registry, pool_use)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def delivered(self, result: str, seconds: float) -> None:
        self._delivery.delivered(result, seconds)

    def imap_connection(self) -> None:
        self._imap.connection()

    def imap_command(self, name: str, seconds: float) -> None:
        self._imap.command(name, seconds)

    def login(self, protocol: str, result: str) -> None:
        self._logins.login(protocol, result)

    def argon2_wait(self, seconds: float) -> None:
        self._keys.argon2_wait(seconds)

    def key_cache(self, hit: bool) -> None:
        self._keys.key_cache(hit)

    def blob_operation(self, operation: str, result: str, seconds: float) -> None:
        self._blobs.operation(operation, result, seconds)

    def worker_restart(self) -> None:
        self._process.worker_restart()
