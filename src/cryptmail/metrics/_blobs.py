"""Blob store metrics: calls by operation and result, with their latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from cryptmail.metrics._labels import BLOB_OPERATIONS, BLOB_RESULTS, bounded


class BlobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "cryptmail_blob_seconds",
            "Blob store calls, by operation, and the time each took.",
            ["operation"],
            registry=registry,
        )
        self.errors = Counter(
            "cryptmail_blob_errors",
            "Blob store calls that failed, by operation.",
            ["operation"],
            registry=registry,
        )

    def operation(self, operation: str, result: str, seconds: float) -> None:
        operation = bounded(operation, BLOB_OPERATIONS)
        self.seconds.labels(operation=operation).observe(seconds)
        if bounded(result, BLOB_RESULTS) != "ok":
            self.errors.labels(operation=operation).inc()
