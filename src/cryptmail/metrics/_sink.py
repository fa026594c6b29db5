"""What the server's code reports, as one method per event (`MetricsSink`).

The Prometheus side (`PrometheusMetrics`) counts the events in a registry; an LMTP worker
process forwards them to the main process instead (`_forward`), which counts them in
its own registry, so a delivery in any worker shows on the one `/metrics`.
"""

from __future__ import annotations

from typing import Protocol


class MetricsSink(Protocol):
    """Where the server's events go. Every argument is a bounded label or a number."""

    def delivered(self, result: str, seconds: float) -> None:
        """One recipient's delivery ended: "delivered", "deferred" (4xx) or "rejected"."""

    def imap_connection(self) -> None:
        """An IMAP client connected."""

    def imap_command(self, name: str, seconds: float) -> None:
        """An IMAP command was answered after `seconds`."""

    def login(self, protocol: str, result: str) -> None:
        """A credential check ended: "ok", "failed", "refused" (throttled), "error"."""

    def argon2_wait(self, seconds: float) -> None:
        """A derivation waited `seconds` in the Argon2 queue before it ran."""

    def key_cache(self, hit: bool) -> None:
        """A login was served from the unlocked-account cache (hit) or needed Argon2."""

    def blob_operation(self, operation: str, result: str, seconds: float) -> None:
        """A blob store call ("read", "write", "delete", "size") ended "ok" or "error"."""

    def worker_restart(self) -> None:
        """A worker process died and another was started."""


class NoMetrics:
    """The sink before `serve` installs one (the admin commands, unit tests)."""

    def delivered(self, result: str, seconds: float) -> None:
        pass

    def imap_connection(self) -> None:
        pass

    def imap_command(self, name: str, seconds: float) -> None:
        pass

    def login(self, protocol: str, result: str) -> None:
        pass

    def argon2_wait(self, seconds: float) -> None:
        pass

    def key_cache(self, hit: bool) -> None:
        pass

    def blob_operation(self, operation: str, result: str, seconds: float) -> None:
        pass

    def worker_restart(self) -> None:
        pass
