"""`serve` and its LMTP worker processes (`lmtp.processes`), always running
(`lmtp.process_idle_s = 0`; workers on demand: test_lmtp_on_demand.py).

The workers deliver on the main process's listener (even while it is stopped), IDLE
in the main process hears of their deliveries, their command lines carry no
configuration, one that dies is replaced, and they stop with the main process: on
SIGTERM, and on SIGKILL too, when they finish what is in flight and free the port for
the next start.
"""

from __future__ import annotations

import fcntl
import os
import signal
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from imapclient import IMAPClient

from cryptmail.crypto import generate_private_key, public_info
from cryptmail.db import tables as t
from cryptmail.delivery import delivery_headers

from .cryptmail_server import PASSWORD, CryptmailServer, make_users, read_all
from .servers._process import pid_alive, stop_between_writes

WORKERS = 3
CONFIG = f"[lmtp]\nprocesses = {WORKERS}\nprocess_idle_s = 0\n"


def _message(index: int) -> bytes:
    head = f"Subject: worker {index}\r\nMessage-ID: <w{index}@example.net>\r\n"
    return f"{head}\r\nbody {index}\r\n".encode()


def _stored(message: bytes) -> bytes:
    """The copy `_deliver` stores: the trace lines of final delivery, then the message."""
    return delivery_headers("s@example.net", "alice@example.org") + message


def _deliver(port: int, message: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail("s@example.net", ["alice@example.org"], message)


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def _workers(server: CryptmailServer) -> list[int]:
    _wait_for("the workers started", lambda: len(server.worker_pids) == WORKERS)
    return server.worker_pids


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2})
    running = CryptmailServer(data_dir, config=CONFIG, imap=True)
    running.start()
    yield running
    running.stop()


def test_workers_deliver_while_the_main_process_is_stopped(server: CryptmailServer) -> None:
    workers = _workers(server)
    main_argv = Path(f"/proc/{server.pid}/cmdline").read_bytes()
    for pid in workers:
        # Forked by serve: its own command line, no configuration on it (the
        # configuration came over a socket pair).
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == main_argv
    stop_between_writes(server.pid, server.data_dir)
    try:
        for index in range(6):
            _deliver(server.port, _message(index))
    finally:
        os.kill(server.pid, signal.SIGCONT)
    stored = read_all(server.data_dir, "alice@example.org")["INBOX"]
    assert stored == [_stored(_message(index)) for index in range(6)]


def test_idle_in_the_main_process_hears_of_a_workers_delivery(server: CryptmailServer) -> None:
    _workers(server)
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=30)
    try:
        client.login("alice@example.org", PASSWORD)
        client.select_folder("INBOX")
        client.idle()
        stop_between_writes(server.pid, server.data_dir)  # only a worker can deliver
        try:
            _deliver(server.port, _message(1))
        finally:
            os.kill(server.pid, signal.SIGCONT)
        started = time.monotonic()
        responses = client.idle_check(timeout=10)
        print(f"\nEXISTS {1000 * (time.monotonic() - started):.0f} ms after SIGCONT")
        client.idle_done()
        assert (1, b"EXISTS") in responses
    finally:
        client.logout()


def test_a_worker_that_dies_is_replaced(server: CryptmailServer) -> None:
    victim, *survivors = _workers(server)
    os.kill(victim, signal.SIGKILL)
    _wait_for(
        "a new worker",
        lambda: len(server.worker_pids) == WORKERS and victim not in server.worker_pids,
    )
    assert set(survivors) <= set(server.worker_pids)
    stop_between_writes(server.pid, server.data_dir)
    try:
        _deliver(server.port, _message(7))
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert read_all(server.data_dir, "alice@example.org")["INBOX"] == [_stored(_message(7))]
    assert f"LMTP worker {victim} exited (-9)" in server.log_path.read_text()


def test_sigterm_stops_every_process(server: CryptmailServer) -> None:
    workers = _workers(server)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    assert not [pid for pid in workers if pid_alive(pid)]


def test_workers_stop_when_the_main_process_is_killed(server: CryptmailServer) -> None:
    workers = _workers(server)
    server.kill()
    _wait_for("the workers stopped", lambda: not [pid for pid in workers if pid_alive(pid)])
    server.start()  # the port is free again
    _deliver(server.port, _message(2))
    assert read_all(server.data_dir, "alice@example.org")["INBOX"] == [_stored(_message(2))]


def test_a_public_key_replaced_in_sql_is_a_4xx_from_the_workers(
    server: CryptmailServer,
) -> None:
    """Finding 4 of issue 14 through the real listener: a SQL writer puts their public
    key in alice's key-pair row; the workers (which read the server key file themselves)
    answer 451, so Postfix keeps the message, and nothing is sealed to that key."""
    _workers(server)
    _deliver(server.port, _message(1))  # the key as cryptmail wrote it: delivered
    attacker = public_info(generate_private_key("x25519"))
    engine = sqlalchemy.create_engine(f"sqlite:///{server.data_dir / 'cryptmail.db'}")
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.update(t.cm_key_pairs)
            .where(t.cm_key_pairs.c.active.is_(True))
            .values(key_id=attacker.key_id, public_key=attacker.encoded)
        )
    blobs_before = sorted((server.data_dir / "blobs").rglob("*"))
    stop_between_writes(server.pid, server.data_dir)  # only a worker can deliver
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _deliver(server.port, _message(2))
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert refused.value.smtp_code == 451
    assert sorted((server.data_dir / "blobs").rglob("*")) == blobs_before
    with engine.connect() as conn:
        count = conn.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(t.cm_messages))
        assert count.scalar() == 1
        events = conn.execute(sqlalchemy.select(t.cm_key_events.c.event)).scalars().all()
    engine.dispose()
    assert "key_rows_changed" in events
    log = server.log_path.read_text()
    assert "deferred: the public key or crypt in the database is not the one" in log


def _blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").glob("??/*") if p.is_file()]


def test_a_writer_turn_held_elsewhere_is_a_4xx_not_a_hang(server: CryptmailServer) -> None:
    """A process that holds the database's writer turn and never gives it back (here the
    test; in life a cryptmail process stopped or hung inside a write) costs a delivery a
    4xx after the writer's wait (30 s), so Postfix retries: the worker neither hangs nor
    keeps anything of the refused copy, and delivers once the turn is free."""
    _workers(server)
    _deliver(server.port, _message(1))
    blobs_before = {p.name for p in _blob_files(server.data_dir)}
    fd = os.open(server.data_dir / "cryptmail.db-writers", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with smtplib.LMTP("127.0.0.1", server.port, timeout=120) as client:
            client.ehlo()
            client.mail("s@example.net")
            code, _ = client.rcpt("alice@example.org")
            if code == 250:
                code, _ = client.data(_message(2))
        assert 400 <= code < 500
    finally:
        os.close(fd)  # the flock goes with it
    # A blob written before the commit failed stays, named by no row, for the orphan
    # sweep (store/_append.py: a failed commit's fate is unknown in general).
    new_blobs = {p.name for p in _blob_files(server.data_dir)} - blobs_before
    assert len(new_blobs) <= 1
    engine = sqlalchemy.create_engine(f"sqlite:///{server.data_dir / 'cryptmail.db'}")
    with engine.connect() as conn:
        named = conn.execute(sqlalchemy.select(t.cm_messages.c.blob_id)).scalars().all()
    engine.dispose()
    assert not new_blobs & {blob_id.hex() for blob_id in named}
    assert "stayed busy" in server.log_path.read_text()
    _deliver(server.port, _message(2))
    stored = read_all(server.data_dir, "alice@example.org")["INBOX"]
    assert stored == [_stored(_message(1)), _stored(_message(2))]
