"""A running LMTP worker, started the way `serve` starts one, has after a real delivery
loaded none of what delivery does not run (issue 17: at most 40 MB per worker).

`LmtpWorkers` starts the worker (`python -m cryptmail.serve._worker_process`) with
PYTHONPROFILEIMPORTTIME set, so the worker writes each module it imports to its stderr,
which it shares with this test; this process read that variable at its own start only,
so every such line is the worker's. Deliveries import lazily too (a name of a package
is loaded on first use), which is why a delivery runs before the list is read.
"""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from cryptmail.config import load_config
from cryptmail.serve import LmtpWorkers, WorkerSetup
from cryptmail.store import ChangeBus
from serve.test_worker_process import NOT_IN_A_WORKER

from .cryptmail_server import make_users, read_all
from .servers._ports import free_port

MESSAGE = b"Subject: imports\r\nMessage-ID: <imports@example.net>\r\n\r\nbody\r\n"


def _deliver(port: int) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail("s@example.net", ["alice@example.org"], MESSAGE)


async def _one_worker_delivers(data_dir: Path, port: int) -> None:
    config = load_config(None, data_dir=str(data_dir), **{"lmtp.process_idle_s": 0})
    workers = LmtpWorkers(
        WorkerSetup(config, "%(message)s", {}, 10.0), f"127.0.0.1:{port}", 1, ChangeBus()
    )
    await workers.start()
    try:
        assert len(workers.pids) == 1
        await asyncio.to_thread(_deliver, port)
    finally:
        await workers.stop(10.0)


def _imported(stderr: str) -> list[str]:
    """The module names of PYTHONPROFILEIMPORTTIME's lines `import time: us | us | name`."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and not line.endswith("imported package"):
            names.append(line.rpartition("|")[2].strip())
    return names


def test_a_worker_after_a_delivery_holds_only_what_delivery_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    asyncio.run(_one_worker_delivers(data_dir, free_port()))
    modules = _imported(capfd.readouterr().err)
    assert read_all(data_dir, "alice@example.org")["INBOX"][-1].endswith(MESSAGE)
    # The worker did import: the list is not empty for want of a line to read.
    assert "cryptmail.delivery._handler" in modules
    assert "cryptmail.store._append" in modules
    unwanted = sorted(
        name
        for name in modules
        if any(name == group or name.startswith(group + ".") for group in NOT_IN_A_WORKER)
    )
    assert unwanted == []
