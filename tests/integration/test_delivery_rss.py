"""A 50 MB delivery raises the server's peak RSS by well under the message size.

`serve` delivers in LMTP workers started on demand (the default), in its main process
and workers started on demand (`lmtp.deliver_in_main`), or in workers forked at its
start (`lmtp.process_idle_s = 0`), and the big message may land in any of them: the
growth counted is that of every process, the main one included, added up, after each
delivering process has made a delivery (the first one loads what a delivery needs, which
is not the message's cost).
"""

from __future__ import annotations

import os
import signal
import smtplib
from pathlib import Path

import pytest

from .cryptmail_server import CryptmailServer, make_users, read_all, vm_hwm_kib


def _deliver(port: int, message: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail("s@example.net", ["alice@example.org"], message)


def _warm_each_worker(server: CryptmailServer, pids: list[int]) -> None:
    """One small delivery made by each worker: the others are stopped meanwhile, so
    only that one can accept the connection."""
    for pid in pids:
        # Distinct bytes: the same message again would be taken for a retry.
        small = f"Subject: warm-up {pid}\r\n\r\nx\r\n".encode()
        others = [other for other in pids if other != pid]
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            _deliver(server.port, small)
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)


@pytest.mark.parametrize(
    "config",
    ["", "[lmtp]\ndeliver_in_main = true\n", "[lmtp]\nprocess_idle_s = 0\n"],
    ids=["on-demand", "in-main", "forked"],
)
def test_50mb_delivery_peak_rss(tmp_path: Path, config: str) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    server = CryptmailServer(data_dir, config=config)
    server.start()
    try:
        if "process_idle_s = 0" in config:  # forked workers run from the start
            workers = server.worker_pids
            assert workers
            _warm_each_worker(server, workers)
            warm_ups = len(workers)
        else:
            # One connection at a time: the main process's alone (in-main), or the one
            # worker's that a waiting connection started (on demand).
            _deliver(server.port, b"Subject: warm-up\r\n\r\nx\r\n")
            workers = server.worker_pids
            assert len(workers) == (0 if "in_main" in config else 1)
            warm_ups = 1
        pids = [server.pid, *workers]
        before = {pid: vm_hwm_kib(pid) for pid in pids}
        line = b"0123456789" * 7 + b"ABCDEFGH\r\n"
        big = b"Subject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
        _deliver(server.port, big)
        after = {pid: vm_hwm_kib(pid) for pid in pids}
    finally:
        server.stop()
    grown_mib = sum(after[pid] - before[pid] for pid in pids) / 1024
    print(
        f"\n{len(pids)} process(es): peak RSS before {sum(before.values()) // 1024} MiB, "
        f"after {sum(after.values()) // 1024} MiB, +{grown_mib:.1f} MiB"
    )
    assert grown_mib < 32
    stored = read_all(data_dir, "alice@example.org")["INBOX"]
    # Delivery puts Return-Path and Delivered-To on top of the message it was given.
    assert len(stored) == 1 + warm_ups and stored[-1].endswith(big)
    assert stored[-1][: -len(big)] == (
        b"Return-Path: <s@example.net>\r\nDelivered-To: alice@example.org\r\n"
    )
