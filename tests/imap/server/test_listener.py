"""The listener's connection caps."""

from __future__ import annotations

import gc
import imaplib
import logging
import os
import socket
import time
from pathlib import Path

import pytest

from ..server_rig import PASSWORD, USER, start_rig


def test_the_global_connection_cap_says_bye_and_closes(tmp_path: Path) -> None:
    """(h) imap.max_connections counts every client; the next one is told why and closed."""
    rig_iter = start_rig(tmp_path, **{"imap.max_connections": 2})
    rig = next(rig_iter)
    try:
        held = [socket.create_connection(("127.0.0.1", rig.port), timeout=10) for _ in range(2)]
        files = [sock.makefile("rb") for sock in held]
        for file in files:
            assert file.readline().startswith(b"* OK")
        extra = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
        extra_file = extra.makefile("rb")
        assert (
            extra_file.readline()
            == b"* BYE Too many connections to this server; try again later.\r\n"
        )
        assert extra_file.readline() == b""  # closed
        extra.close()
        held[0].close()
        files[0].close()
        # A freed place is taken again (the count went down when the session ended).
        for _ in range(50):
            again = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
            greeting = again.makefile("rb").readline()
            again.close()
            if greeting.startswith(b"* OK"):
                break
            time.sleep(0.1)  # the server has not seen the close yet
        else:
            raise AssertionError("the closed connection's place was never freed")
        for sock, file in zip(held[1:], files[1:], strict=True):
            file.close()
            sock.close()
    finally:
        next(rig_iter, None)


def _serve_once(tmp_path: Path) -> None:
    """A rig's whole life with two sessions that log in and search (the key cache, the
    credential watcher and the search index each start for them)."""
    rig_iter = start_rig(tmp_path, **{"imap.fts_index": True})
    rig = next(rig_iter)
    try:
        rig.deliver(b"Subject: hello\r\n\r\nsome words\r\n")
        clients = [imaplib.IMAP4("127.0.0.1", rig.port) for _ in range(2)]
        for client in clients:
            client.login(USER, PASSWORD)
            client.select("INBOX")
            assert client.search(None, "BODY", "words") == ("OK", [b"1"])
        for client in clients:
            client.logout()
    finally:
        next(rig_iter, None)


def test_a_stopped_listener_leaves_no_descriptor_or_task_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started and stopped again and again in one process (the test suite, an embedding
    program), the listener leaves no task of the per-engine parts it shares pending,
    and the disposed engine no file open: the descriptor count stays flat."""
    counts = []
    for round_ in range(4):
        _serve_once(tmp_path / str(round_))
        gc.collect()
        counts.append(len(os.listdir("/proc/self/fd")))
    assert counts[1:] == counts[:1] * 3, counts
    # asyncio logs "Task was destroyed but it is pending!" for a task left at the stop.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
