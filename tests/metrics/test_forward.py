"""A worker's events reach the main process's registry through a real pipe; a line that
is not one of the known events is dropped, never executed."""

from __future__ import annotations

import asyncio
import os

from cryptmail.metrics import MetricsReader, PipeMetrics, PrometheusMetrics, replay


def _count(metrics: PrometheusMetrics, needle: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(needle):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(needle)


async def test_events_cross_the_pipe() -> None:
    metrics = PrometheusMetrics()
    read_end, write_end = os.pipe()
    reader = MetricsReader(read_end, metrics)
    try:
        sink = PipeMetrics(write_end)
        for _ in range(3):
            sink.delivered("delivered", 0.25)
        sink.blob_operation("write", "ok", 0.01)
        sink.worker_restart()
        for _ in range(100):
            if _count(metrics, 'cryptmail_deliveries_total{result="delivered"}') == 3:
                break
            await asyncio.sleep(0.01)
        assert _count(metrics, 'cryptmail_deliveries_total{result="delivered"}') == 3
        assert _count(metrics, 'cryptmail_blob_seconds_count{operation="write"}') == 1
        assert _count(metrics, "cryptmail_worker_restarts_total") == 1
    finally:
        reader.close()
        os.close(write_end)


def test_malformed_lines_are_dropped() -> None:
    metrics = PrometheusMetrics()
    assert replay(b'["delivered","delivered",0.5]', metrics)
    for line in (
        b"not json",
        b'["__init__"]',
        b'["render"]',
        b'["delivered","delivered"]',
        b'["delivered",1,0.5]',
        b'["key_cache","yes"]',
        b'{"delivered": 1}',
    ):
        assert not replay(line, metrics), line
    assert _count(metrics, 'cryptmail_deliveries_total{result="delivered"}') == 1


def test_a_full_pipe_drops_events_instead_of_blocking() -> None:
    read_end, write_end = os.pipe()
    try:
        sink = PipeMetrics(write_end)
        for _ in range(10_000):  # ~0.5 MB into a 64 KiB pipe nobody reads: returns
            sink.delivered("delivered", 0.25)
        metrics = PrometheusMetrics()
        first = os.read(read_end, 4096).split(b"\n")[0]
        assert replay(first, metrics)  # what did fit arrived whole
    finally:
        os.close(read_end)
        os.close(write_end)
