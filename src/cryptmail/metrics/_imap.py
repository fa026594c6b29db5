"""IMAP metrics: connections, and commands by name with their latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from cryptmail.metrics._labels import IMAP_COMMANDS, bounded


class ImapMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Counter(
            "cryptmail_imap_connections", "IMAP connections accepted.", registry=registry
        )
        self.commands = Histogram(
            "cryptmail_imap_command_seconds",
            "IMAP commands answered, by command name (unknown names count as other), and "
            "the time each took.",
            ["command"],
            registry=registry,
        )

    def connection(self) -> None:
        self.connections.inc()

    def command(self, name: str, seconds: float) -> None:
        self.commands.labels(command=bounded(name.upper(), IMAP_COMMANDS)).observe(seconds)
