"""cryptmail.metrics: counters and histograms for Prometheus, at the bottom of the layers.

Code anywhere reports events to the process's sink (`current()`, one method per event of
`MetricsSink`); `serve` installs a `PrometheusMetrics` on a registry of its own and
serves it on the metrics listener, and each LMTP worker installs a `PipeMetrics` that
forwards its events to the main process (`MetricsReader`). Label values come only from
the fixed sets of `_labels`: never a user, an address or a mailbox name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptmail.metrics._current import current, install_metrics
from cryptmail.metrics._forward import MetricsReader, PipeMetrics, replay
from cryptmail.metrics._labels import IMAP_COMMANDS, OTHER, bounded
from cryptmail.metrics._sink import MetricsSink, NoMetrics

if TYPE_CHECKING:
    from cryptmail.metrics._prometheus import PrometheusMetrics

__all__ = [
    "IMAP_COMMANDS",
    "OTHER",
    "MetricsReader",
    "MetricsSink",
    "NoMetrics",
    "PipeMetrics",
    "PrometheusMetrics",
    "bounded",
    "current",
    "install_metrics",
    "replay",
]


def __getattr__(name: str) -> Any:
    # prometheus_client (about 5 MB with the http.server and wsgiref it imports) is loaded
    # only by a server that serves /metrics (PEP 562); every other process reports to
    # the sink it was given, without it.
    if name == "PrometheusMetrics":
        from cryptmail.metrics._prometheus import PrometheusMetrics

        globals()[name] = PrometheusMetrics
        return PrometheusMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
