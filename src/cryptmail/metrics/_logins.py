"""Login metrics: credential checks by protocol and result, and throttle refusals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from cryptmail.metrics._labels import LOGIN_RESULTS, PROTOCOLS, bounded


class LoginMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter(
            "cryptmail_logins",
            "Credential checks, by protocol and result (ok, failed = wrong credentials, "
            "refused = throttled before any check, error).",
            ["protocol", "result"],
            registry=registry,
        )
        self.refusals = Counter(
            "cryptmail_throttle_refusals",
            "Logins the throttle refused (too many wrong passwords for an address or from "
            "a client), by protocol.",
            ["protocol"],
            registry=registry,
        )

    def login(self, protocol: str, result: str) -> None:
        protocol = bounded(protocol, PROTOCOLS)
        result = bounded(result, LOGIN_RESULTS)
        self.total.labels(protocol=protocol, result=result).inc()
        if result == "refused":
            self.refusals.labels(protocol=protocol).inc()
