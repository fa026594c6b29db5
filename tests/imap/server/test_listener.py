"""The listener's connection caps."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import imaplib
import logging
import os
import socket
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

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


def _serve_once(tmp_path: Path) -> weakref.ref[AsyncEngine]:
    """A rig's whole life with two sessions that log in and search (the key cache, the
    credential watcher and the search index each start for them); its engine, weakly."""
    rig_iter = start_rig(tmp_path, **{"imap.fts_index": True})
    rig = next(rig_iter)
    engine = weakref.ref(rig.engine)
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
    return engine


def test_a_stopped_listener_leaves_no_descriptor_or_task_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started and stopped again and again in one process (the test suite, an embedding
    program), the listener leaves no task of the per-engine parts it shares pending,
    and the disposed engine no file open: the descriptor count stays flat, and the
    engines themselves are freed."""
    counts = []
    engines = []
    for round_ in range(4):
        engines.append(_serve_once(tmp_path / str(round_)))
        gc.collect()
        counts.append(len(os.listdir("/proc/self/fd")))
    assert counts[1:] == counts[:1] * 3, counts
    assert [engine() for engine in engines] == [None] * 4
    # asyncio logs "Task was destroyed but it is pending!" for a task left at the stop.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_all(sock: socket.socket) -> None:
    """Take whatever the server sends until it hangs up (a client that keeps reading)."""
    with contextlib.suppress(OSError):
        while sock.recv(1 << 16):
            pass


def test_a_stop_mid_command_waits_for_every_session_and_leaves_nothing_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 sessions from one address, four users: ten in IDLE (polling all the time, so
    some are between two waits when the stop comes) and ten in the middle of a long
    pipeline of STATUS, LIST, EXAMINE and FETCH. When `stop` returns, no session or task
    of one is left on the loop and no database connection is checked out; disposing
    the engine and closing the loop then leaves no "Task was destroyed" or
    "Event loop is closed" behind."""
    unraisable: list[sys.UnraisableHookArgs] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    socks: list[socket.socket] = []
    readers: list[threading.Thread] = []
    try:
        rig_iter = start_rig(tmp_path)
        rig = next(rig_iter)
        try:
            listener = rig.listener
            assert listener is not None
            # Every IDLE loop turn then passes the point where a swallowed stop hid.
            listener.context.idle_poll_s = 0.001
            users = [f"stop{n}@example.org" for n in range(4)]
            for email in users:
                rig.add_user(email, PASSWORD)
                for n in range(3):
                    rig.deliver(b"Subject: m%d\r\n\r\n" % n + b"some words\r\n" * 50, email)
            pipeline = b"".join(
                b's%d STATUS INBOX (MESSAGES UNSEEN)\r\nl%d LIST "" *\r\n'
                b"e%d EXAMINE INBOX\r\nf%d FETCH 1:3 (ENVELOPE BODY.PEEK[])\r\n" % (k, k, k, k)
                for k in range(300)
            )
            for n in range(20):
                sock = socket.create_connection(("127.0.0.1", rig.port), timeout=30)
                socks.append(sock)
                replies = sock.makefile("rb")
                assert replies.readline().startswith(b"* OK")
                login = f"a LOGIN {users[n % 4]} {_quoted(PASSWORD)}\r\nb SELECT INBOX\r\n"
                sock.sendall(login.encode())
                while not replies.readline().startswith(b"b OK"):
                    pass
                if n % 2:
                    sock.sendall(b"c IDLE\r\n")
                    assert replies.readline().startswith(b"+ ")
                else:
                    sock.sendall(pipeline)
                    reader = threading.Thread(target=_read_all, args=(sock,), daemon=True)
                    reader.start()
                    readers.append(reader)
                replies.close()
            time.sleep(0.3)  # the pipelines are under way

            async def stop() -> tuple[list[str], int]:
                await listener.stop()
                here = asyncio.current_task()
                left = [repr(t) for t in asyncio.all_tasks() if t is not here]
                return left, rig.engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]

            left, checked_out = rig.run(stop())
            assert left == []
            assert checked_out == 0
        finally:
            next(rig_iter, None)  # disposes the engine, closes the loop
        gc.collect()
    finally:
        sys.unraisablehook = previous_hook
        for sock in socks:
            sock.close()
        for reader in readers:
            reader.join(10)
    assert [str(u.exc_value) for u in unraisable] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
