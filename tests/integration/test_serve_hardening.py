"""A running `serve` and each of its LMTP workers cannot dump core (keys would be in
the core file): the core limit is 0 in /proc/<pid>/limits, and each process says, once
it has read back PR_GET_DUMPABLE, that it is not dumpable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cryptmail_server import CryptmailServer, make_users

WORKERS = 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    running = CryptmailServer(data_dir, config=f"[lmtp]\nprocesses = {WORKERS}\n")
    running.start()
    yield running
    running.stop()


def _core_limit(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError(f"no core limit for {pid}")


def test_main_process_and_workers_cannot_dump_core(server: CryptmailServer) -> None:
    deadline = time.monotonic() + 30
    while len(server.worker_pids) < WORKERS:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    pids = [server.pid, *server.worker_pids]
    for pid in pids:
        assert _core_limit(pid) == ["0", "0"], pid
    said = [f"process {pid}: core dumps off (not dumpable, core limit 0)" for pid in pids]
    while not all(line in server.log_path.read_text() for line in said):
        assert time.monotonic() < deadline, server.log_path.read_text()[-2000:]
        time.sleep(0.05)
