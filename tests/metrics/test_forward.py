"""A worker's events reach the main process's registry through a real pipe, in batches
(one write per flush, at most PIPE_BUF bytes, ending at a line end); a line that is not
one of the known events is dropped, never executed."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from cryptmail.metrics import MetricsReader, PipeMetrics, PrometheusMetrics, replay

NEVER_S = 3600.0  # a flush interval no test waits out: only flush() or a full batch writes


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
        # Kept for the flush interval, then written: wait for the last of them, long
        # enough for a loaded machine.
        for _ in range(1000):
            if _count(metrics, "cryptmail_worker_restarts_total") == 1:
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
        b'["delivered","delivered",true]',  # a bool is no number here
        b'["delivered","delivered",null]',
        b'["key_cache",1]',
        b"[]",
        b"123",
        b'"delivered"',
        b'["delivered","d\xff",0.5]',  # not UTF-8
    ):
        assert not replay(line, metrics), line
    assert _count(metrics, 'cryptmail_deliveries_total{result="delivered"}') == 1
    assert replay(b'["argon2_wait",2]', metrics)  # a whole number is a float's value
    assert _count(metrics, "cryptmail_argon2_wait_seconds_sum") == 2.0


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


async def test_a_full_pipe_drops_batches_instead_of_blocking() -> None:
    read_end, write_end = os.pipe()
    try:
        sink = PipeMetrics(write_end, flush_s=NEVER_S)
        for _ in range(10_000):  # full batches written as they fill, into a full pipe
            sink.delivered("delivered", 0.25)
        sink.flush()  # and the rest: dropped too, without an error
        data = os.read(read_end, 65536)
        assert data.endswith(b"\n")  # only whole batches went in
        metrics = PrometheusMetrics()
        assert all(replay(line, metrics) for line in data.split(b"\n")[:-1])
    finally:
        os.close(read_end)
        os.close(write_end)


def _readable(fd: int) -> bytes | None:
    """What the pipe holds now, or None if it is empty."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


async def test_events_wait_for_the_flush_then_go_in_one_write() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        sink = PipeMetrics(write_end)
        sink.delivered("delivered", 0.25)
        sink.blob_operation("write", "ok", 0.01)
        sink.delivered("deferred", 0.5)
        assert _readable(read_end) is None  # nothing written at the event itself
        arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(read_end, arrived.set)
        try:
            await arrived.wait()  # the timer's flush, FLUSH_S later
        finally:
            asyncio.get_running_loop().remove_reader(read_end)
        data = _readable(read_end)
        assert data is not None
        lines = data.split(b"\n")
        assert lines[-1] == b""  # one write: every line whole in one read
        metrics = PrometheusMetrics()
        assert all(replay(line, metrics) for line in lines[:-1])
        assert _count(metrics, 'cryptmail_deliveries_total{result="delivered"}') == 1
        assert _count(metrics, 'cryptmail_deliveries_total{result="deferred"}') == 1
        assert _count(metrics, 'cryptmail_blob_seconds_count{operation="write"}') == 1
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_a_burst_goes_in_writes_of_at_most_pipe_buf_each_ending_a_line() -> None:
    # A datagram socket keeps each write apart, so the test sees the writes themselves.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sink = PipeMetrics(ours.fileno(), flush_s=NEVER_S)
        # ~16 KB of events at once: a few full batches, under the socket's queue of 10.
        for i in range(400):
            sink.blob_operation("write", "ok", i / 1000)
        sink.flush()
        theirs.setblocking(False)
        writes: list[bytes] = []
        while True:
            try:
                writes.append(theirs.recv(65536))
            except BlockingIOError:
                break
        assert len(writes) > 3
        assert all(len(write) <= 4096 and write.endswith(b"\n") for write in writes)
        metrics = PrometheusMetrics()
        lines = b"".join(writes).split(b"\n")[:-1]
        assert len(lines) == 400
        assert all(replay(line, metrics) for line in lines)
    finally:
        ours.close()
        theirs.close()


async def test_a_long_burst_is_written_before_the_timer() -> None:
    """Events are kept unencoded until the write; a burst of _MAX_KEPT goes at once, so
    what a worker keeps stays bounded whatever its timer."""
    from cryptmail.metrics._forward import _MAX_KEPT

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    try:
        sink = PipeMetrics(ours.fileno(), flush_s=NEVER_S)
        for i in range(_MAX_KEPT - 1):
            sink.blob_operation("write", "ok", i / 1000)
        with pytest.raises(BlockingIOError):
            theirs.recv(65536)  # kept, not written
        sink.blob_operation("write", "ok", 1.0)
        lines = theirs.recv(65536).split(b"\n")
        metrics = PrometheusMetrics()
        while True:
            assert all(replay(line, metrics) for line in lines[:-1])
            try:
                lines = theirs.recv(65536).split(b"\n")
            except BlockingIOError:
                break
        assert _count(metrics, 'cryptmail_blob_seconds_count{operation="write"}') == _MAX_KEPT
    finally:
        ours.close()
        theirs.close()


def test_flush_after_the_loop_ended_writes_what_was_kept() -> None:
    # The worker's end: its loop stopped with events kept for a timer that never fires.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        sink = PipeMetrics(write_end, flush_s=NEVER_S)

        async def deliver() -> None:
            sink.delivered("delivered", 0.25)
            sink.delivered("delivered", 0.5)

        asyncio.run(deliver())
        assert _readable(read_end) is None
        sink.flush()
        metrics = PrometheusMetrics()
        data = _readable(read_end)
        assert data is not None
        assert all(replay(line, metrics) for line in data.split(b"\n")[:-1])
        assert _count(metrics, 'cryptmail_deliveries_total{result="delivered"}') == 2
        # A second loop later (none armed on it yet) still gets a timer of its own.
        asyncio.run(deliver())
        sink.flush()
        assert _readable(read_end) == data
    finally:
        os.close(read_end)
        os.close(write_end)


def test_an_event_without_a_loop_is_written_at_once() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        sink = PipeMetrics(write_end, flush_s=NEVER_S)
        sink.worker_restart()  # no loop in this thread
        assert _readable(read_end) == b'["worker_restart"]\n'
        thread = threading.Thread(target=sink.argon2_wait, args=(0.5,))  # a pool thread's
        thread.start()
        thread.join()
        assert _readable(read_end) == b'["argon2_wait",0.5]\n'
    finally:
        os.close(read_end)
        os.close(write_end)
