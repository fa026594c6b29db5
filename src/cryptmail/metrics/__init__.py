"""cryptmail.metrics: counters and histograms for Prometheus, at the bottom of the layers.

Code anywhere reports events to the process's sink (`current()`, one method per event of
`MetricsSink`); `serve` installs a `PrometheusMetrics` on a registry of its own and
serves it on the metrics listener, and each LMTP worker installs a `PipeMetrics` that
forwards its events to the main process (`MetricsReader`). Label values come only from
the fixed sets of `_labels`: never a user, an address or a mailbox name.
"""

from cryptmail.metrics._current import current, install_metrics
from cryptmail.metrics._forward import MetricsReader, PipeMetrics, replay
from cryptmail.metrics._labels import IMAP_COMMANDS, OTHER, bounded
from cryptmail.metrics._prometheus import PrometheusMetrics
from cryptmail.metrics._sink import MetricsSink, NoMetrics

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
