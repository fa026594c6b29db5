"""`serve` runs Argon2 in hashing processes: several users log in at once from one
address (wrong and right passwords) over real IMAP; the derivations run in
`cryptmail-hash` children with no secret in their argv or environment, and the main
process's peak memory does not grow by Argon2's; a hashing process killed mid-login makes
that login a temporary failure (`NO [UNAVAILABLE]`) and the next login starts a new one."""

from __future__ import annotations

import asyncio
import imaplib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine
from cryptmail.keys import create_user
from cryptmail.secret import Password

from .cryptmail_server import (
    PASSWORD,
    CryptmailServer,
    db_url,
    descendant_pids,
    make_users,
    vm_hwm_kib,
)

USERS = [f"user{n}@example.org" for n in range(4)]
SLOW = "slow@example.org"  # slots at t=16: a login's derivation runs long enough to kill
HASHER = "cryptmail-hash"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _hashers(server: CryptmailServer) -> list[int]:
    return [pid for pid in descendant_pids(server.pid) if _comm(pid) == HASHER]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def _make_slow_user(data_dir: Path) -> None:
    async def run() -> None:
        engine = create_engine(db_url(data_dir))
        slow = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=16))
        await create_user(engine, SLOW, Password.from_str(PASSWORD), slow, crypt=2)
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", dict.fromkeys(USERS, 2))
    _make_slow_user(data_dir)
    # Server-side new hashes at the test cost too (a first login rehashes the 19 MiB SQL
    # hash otherwise at the default 46 MiB: fine, but slower on a shared machine).
    running = CryptmailServer(
        data_dir,
        imap=True,
        config="[lmtp]\nprocesses = 1\n[crypto.argon2]\nmemory_kib = 19456\n",
    )
    running.start()
    yield running
    running.stop()


def _login(server: CryptmailServer, user: str, password: str) -> str:
    """'OK', or the server's NO text."""
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        client.login(user, password)
        client.select("INBOX")
        return "OK"
    except imaplib.IMAP4.error as exc:
        return str(exc)
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_many_logins_at_once_run_in_hashing_processes(server: CryptmailServer) -> None:
    assert _hashers(server) == []  # started on demand: an idle server has none
    main_rss = _rss_kib(server.pid)
    results: dict[tuple[str, int, str], str] = {}
    barrier = threading.Barrier(len(USERS) * 3)

    def one(user: str, n: int, password: str) -> None:
        barrier.wait()
        results[(user, n, password)] = _login(server, user, password)

    threads = [
        threading.Thread(target=one, args=(user, n, password))
        for user in USERS
        for n, password in enumerate([PASSWORD, PASSWORD, "wrong " + PASSWORD])
    ]
    for thread in threads:
        thread.start()
    hashers_seen: set[int] = set()
    while any(thread.is_alive() for thread in threads):
        for pid in _hashers(server):
            if pid not in hashers_seen:
                hashers_seen.add(pid)
                # Nothing secret on the command line or in the environment, read while
                # the process lives (it may be between derivations).
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
                assert PASSWORD.encode() not in cmdline + environ
                assert b"-I" in cmdline.split(b"\0")
        time.sleep(0.01)
    for (user, _n, password), answer in results.items():
        if password == PASSWORD:
            assert answer == "OK", (user, answer)
        else:
            assert "AUTHENTICATIONFAILED" in answer, (user, answer)
    assert len(results) == len(USERS) * 3
    assert hashers_seen, "no hashing process ran"
    # Twelve derivations of 19 MiB each (4 at a time) ran elsewhere: the main process
    # grew by the sessions, not by Argon2 (in-process it would be 4 x 19 MiB more).
    growth_mib = (vm_hwm_kib(server.pid) - main_rss) / 1024
    assert growth_mib < 40, f"serve's peak RSS grew {growth_mib:.1f} MiB over the logins"
    log = server.log_path.read_text()
    assert PASSWORD not in log


def test_hashing_process_killed_mid_login_is_a_temporary_failure(
    server: CryptmailServer,
) -> None:
    answer: list[str] = []
    thread = threading.Thread(target=lambda: answer.append(_login(server, SLOW, PASSWORD)))
    thread.start()
    deadline = time.monotonic() + 60
    while not _hashers(server):
        assert time.monotonic() < deadline, "no hashing process started for the login"
        assert thread.is_alive(), answer
        time.sleep(0.005)
    (victim,) = _hashers(server)
    os.kill(victim, signal.SIGKILL)
    thread.join(120)
    assert len(answer) == 1
    assert "[UNAVAILABLE]" in answer[0], answer
    # The next logins, several at once, start a new hashing process and succeed.
    again: list[str] = []
    threads = [
        threading.Thread(target=lambda u=user: again.append(_login(server, u, PASSWORD)))
        for user in (SLOW, *USERS[:2])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert again == ["OK"] * 3
    assert victim not in descendant_pids(server.pid)  # reaped, no zombie
    log = server.log_path.read_text()
    assert f"hashing process {victim} ended during a derivation" in log
    assert PASSWORD not in log
