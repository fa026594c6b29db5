"""Delivery metrics: recipients delivered, deferred or rejected, and how long each took."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from cryptmail.metrics._labels import DELIVERY_RESULTS, bounded

# Deliveries range from a few ms (small mail, local disk) to seconds (S3, big mail).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter(
            "cryptmail_deliveries",
            "Recipients whose delivery ended, by result (delivered, deferred = 4xx, "
            "rejected = 5xx).",
            ["result"],
            registry=registry,
        )
        self.seconds = Histogram(
            "cryptmail_delivery_seconds",
            "Time to store one recipient's copy, from the end of DATA.",
            buckets=_BUCKETS,
            registry=registry,
        )
        for result in DELIVERY_RESULTS:
            self.total.labels(result=result)  # every series from the start: rate() works

    def delivered(self, result: str, seconds: float) -> None:
        self.total.labels(result=bounded(result, DELIVERY_RESULTS)).inc()
        self.seconds.observe(seconds)
