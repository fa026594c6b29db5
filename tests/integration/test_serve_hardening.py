"""A running `serve` and each of its LMTP workers cannot dump core (keys would be in
the core file): the core limit is 0 in /proc/<pid>/limits, and each process says, once
it has read back PR_GET_DUMPABLE, that it is not dumpable."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cryptmail_server import CryptmailServer, make_users

WORKERS = 2


@pytest.fixture(params=["forked", "on-demand"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    # Forked at the start: WORKERS workers; on demand: workers started by connections.
    idle_s = 0 if request.param == "forked" else 60
    config = f"[lmtp]\nprocesses = {WORKERS}\nprocess_idle_s = {idle_s}\n"
    running = CryptmailServer(data_dir, config=config)
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
    assert server.config_path is not None
    forked = "process_idle_s = 0" in server.config_path.read_text()
    # On demand, two connections start a worker (or two).
    held = [] if forked else [socket.create_connection(("127.0.0.1", server.port)) for _ in "ab"]
    for sock in held:
        sock.recv(1024)  # the greeting: a worker holds the connection
    wanted = WORKERS if forked else WORKERS - 1
    try:
        while len(server.worker_pids) < wanted:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
    pids = [server.pid, *server.worker_pids]
    for pid in pids:
        assert _core_limit(pid) == ["0", "0"], pid
    said = [f"process {pid}: core dumps off (not dumpable, core limit 0)" for pid in pids]
    while not all(line in server.log_path.read_text() for line in said):
        assert time.monotonic() < deadline, server.log_path.read_text()[-2000:]
        time.sleep(0.05)
