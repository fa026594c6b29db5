"""The process's one installed sink.

The events come from deep inside the layers (the Argon2 pool, the blob backends, the
account cache), reached by many paths; passing a sink through every constructor on
those paths would change dozens of signatures for a counter. So `serve` (or a worker)
installs its sink once at start, and the code reports to `current()`. The registry
itself is never the library's global one: `serve` builds its own, and tests build as
many as they like and install each in turn.
"""

from __future__ import annotations

from cryptmail.metrics._sink import MetricsSink, NoMetrics

_installed: MetricsSink = NoMetrics()


def install_metrics(sink: MetricsSink) -> None:
    """From now on this process reports to `sink`."""
    global _installed
    _installed = sink


def current() -> MetricsSink:
    """The installed sink (a no-op one until `install_metrics`)."""
    return _installed
