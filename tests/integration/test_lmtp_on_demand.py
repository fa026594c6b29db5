"""`serve` with LMTP workers on demand (`lmtp.process_idle_s` > 0, the default).

Both layouts: by default the main process delivers nothing and starts a worker (a new
interpreter) when a connection waits and none runs; with `lmtp.deliver_in_main` it
delivers as the first delivering process and starts a worker while it holds connections
and more come. Either way, while every delivering process holds a connection and more
come another worker starts, and a worker with no connection for `process_idle_s` exits.
Several users deliver over several connections at once from the first second; a worker
SIGKILLed mid-delivery loses nothing (the client sees the connection drop, as Postfix
would, and retries; the next delivery is stored); SIGTERM stops the main process and its
workers promptly.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from cryptmail.delivery import delivery_headers

from .cryptmail_server import CryptmailServer, make_users, read_all
from .servers._process import pid_alive, stop_between_writes

USERS = [f"u{n}@example.org" for n in range(4)]
CONNECTIONS_PER_USER = 3
MESSAGES_PER_CONNECTION = 4


def _message(user: str, conn: int, index: int) -> bytes:
    tag = f"{user.split('@')[0]}-{conn}-{index}"
    return f"Subject: {tag}\r\nMessage-ID: <{tag}@example.net>\r\n\r\nbody {tag}\r\n".encode()


def _stored(user: str, message: bytes) -> bytes:
    return delivery_headers("s@example.net", user) + message


def _deliver(port: int, user: str, messages: list[bytes]) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        for message in messages:
            client.sendmail("s@example.net", [user], message)


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def _state(pid: int) -> str:
    """The process's state letter in /proc (T: stopped by a signal)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _logged(server: CryptmailServer, line: str) -> bool:
    return line in server.log_path.read_text()


def _greeted(port: int) -> socket.socket:
    """An LMTP connection that has read its greeting and said LHLO, kept open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.recv(4096)
    sock.sendall(b"LHLO test.example.net\r\n")
    _read_reply(sock)
    return sock


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        if data.endswith(b"\r\n") and len(last) >= 4 and last[3:4] == b" ":
            return data


LAYOUTS = {"isolated": False, "in-main": True}


@pytest.fixture(params=list(LAYOUTS))
def in_main(request: pytest.FixtureRequest) -> bool:
    return LAYOUTS[request.param]


def _running(tmp_path: Path, idle_s: float, in_main: bool) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(USERS, 2))
    config = (
        f"[lmtp]\nprocesses = 2\nprocess_idle_s = {idle_s}\n"
        f"deliver_in_main = {str(in_main).lower()}\n"
    )
    running = CryptmailServer(data_dir, config=config, imap=True)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def quick_idle(tmp_path: Path, in_main: bool) -> Iterator[CryptmailServer]:
    yield from _running(tmp_path, 2.0, in_main)


@pytest.fixture
def slow_idle(tmp_path: Path, in_main: bool) -> Iterator[CryptmailServer]:
    yield from _running(tmp_path, 120.0, in_main)


def _start_a_worker(server: CryptmailServer, in_main: bool) -> int:
    """One worker started: by a connection waiting (isolated), or by two connections
    the main process holds (in-main)."""
    held = [_greeted(server.port) for _ in range(2 if in_main else 1)]
    try:
        _wait_for("a worker started", lambda: len(server.worker_pids) == 1)
    finally:
        for sock in held:
            sock.close()
    return server.worker_pids[0]


def test_users_deliver_at_once_from_the_start_and_idle_workers_exit(
    quick_idle: CryptmailServer, in_main: bool
) -> None:
    server = quick_idle
    # Idle: the main process alone (isolated, the start-up probe's worker exits first).
    _wait_for("idle: the main process alone", lambda: server.worker_pids == [])
    jobs = [
        (user, conn, [_message(user, conn, i) for i in range(MESSAGES_PER_CONNECTION)])
        for user in USERS
        for conn in range(CONNECTIONS_PER_USER)
    ]
    sent: dict[str, list[bytes]] = {user: [] for user in USERS}

    def deliver(user: str, messages: list[bytes]) -> None:
        _deliver(server.port, user, messages)
        sent[user].extend(messages)

    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(lambda job: deliver(job[0], job[2]), jobs))
        # More rounds (distinct messages: the same one again would be taken for a retry)
        # until the worker the main process started runs, and two with it running.
        deadline = time.monotonic() + 60

        def one_round(n: int) -> None:
            list(pool.map(lambda job: deliver(job[0], [_message(job[0], job[1], n)]), jobs))

        rounds = 0
        while not server.worker_pids:
            assert time.monotonic() < deadline, "no worker started"
            one_round(100 + rounds)
            rounds += 1
        one_round(100 + rounds)
        one_round(101 + rounds)
    for user in USERS:
        inbox = read_all(server.data_dir, user)["INBOX"]
        assert sorted(inbox) == sorted(_stored(user, m) for m in sent[user])  # each once
    log = server.log_path.read_text()
    started = re.findall(r"LMTP worker (\d+) started \(slot (\d+)\)", log)
    slots = {slot for _pid, slot in started}
    # processes = 2: with the main process delivering one worker, else two may run.
    assert started and (slots == {"1"} if in_main else "0" in slots <= {"0", "1"})
    # No connection for process_idle_s (2 s): the worker exits, and is not a failure.
    _wait_for("the idle worker exited", lambda: server.worker_pids == [])
    for pid, _slot in started:
        ended = f"LMTP worker {pid} exited after"
        _wait_for(f"worker {pid} reaped", partial(_logged, server, ended))
        assert f"LMTP worker {pid} exited (" not in server.log_path.read_text()
    # The main process delivers alone again, or a worker starts again for it.
    _deliver(server.port, USERS[0], [_message("again", 0, 0)])
    assert read_all(server.data_dir, USERS[0])["INBOX"][-1] == _stored(
        USERS[0], _message("again", 0, 0)
    )
    again = re.findall(r"LMTP worker \d+ started", server.log_path.read_text())
    assert len(again) == len(started) + (0 if in_main else 1)


def test_a_worker_killed_mid_delivery_loses_nothing(
    slow_idle: CryptmailServer, in_main: bool
) -> None:
    server = slow_idle
    victim = _start_a_worker(server, in_main)
    user = USERS[1]
    stop_between_writes(server.pid, server.data_dir)  # only the worker can take it
    try:
        # The signal is delivered asynchronously: until the main process is stopped it
        # could still take the connection below (in-main, after deferring a moment).
        _wait_for("the main process stopped", lambda: _state(server.pid) == "T")
        sock = _greeted(server.port)
        sock.sendall(b"MAIL FROM:<s@example.net>\r\n")
        assert _read_reply(sock).startswith(b"250")
        sock.sendall(f"RCPT TO:<{user}>\r\n".encode())
        assert _read_reply(sock).startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert _read_reply(sock).startswith(b"354")
        sock.sendall(b"Subject: half\r\n\r\nthe first half of a message\r\n")
        os.kill(victim, signal.SIGKILL)
        # The connection drops (closed, or reset: unread input) before any reply, so the
        # client keeps the message for a retry, as Postfix does.
        try:
            reply = _read_reply(sock)
        except ConnectionResetError:
            reply = b""
        assert reply == b""
        sock.close()
    finally:
        os.kill(server.pid, signal.SIGCONT)
    _wait_for("the killed worker reaped", lambda: victim not in server.worker_pids)
    _wait_for(
        "the kill logged",
        lambda: f"LMTP worker {victim} exited (-9)" in server.log_path.read_text(),
    )
    # The client's retry, and others at once: delivered (by the main process, or a new
    # worker started for them), none of the half message stored.
    retry = [_message(user, 9, i) for i in range(3)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda u: _deliver(server.port, u, retry), [user, *USERS[2:], USERS[0]]))
    for name in (user, *USERS[2:], USERS[0]):
        inbox = read_all(server.data_dir, name)["INBOX"]
        assert sorted(inbox) == sorted(_stored(name, m) for m in retry)


def test_sigterm_stops_the_main_process_and_its_workers(
    slow_idle: CryptmailServer, in_main: bool
) -> None:
    server = slow_idle
    worker = _start_a_worker(server, in_main)
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    print(f"\nstopped in {time.monotonic() - started:.2f} s")
    _wait_for("the worker stopped", lambda: not pid_alive(worker), timeout=10)
