"""Argon2 in hashing processes: the same answers as argon2-cffi here, many threads at
once, a child killed mid-derivation, the idle exit, and no secret in argv or environ.
Real child interpreters throughout (`python -I _child.py`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import Type, low_level
from argon2.exceptions import HashingError, VerificationError, VerifyMismatchError

from cryptmail import hashing
from cryptmail.errors import KdfBusy, KdfUnavailable
from cryptmail.hashing import HashingProcesses

SALT = b"0123456789abcdef"
SECRET = b"pw-\xe4-only-on-the-pipe-7f3a"
COST = (1, 1024, 1, 32)  # time, memory KiB, lanes, length: fast, and still real Argon2id


@pytest.fixture
def pool() -> Iterator[HashingProcesses]:
    processes = hashing.use_hashing_processes(60.0)
    yield processes
    hashing.use_this_process()


def _wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_same_answers_as_argon2_here(pool: HashingProcesses) -> None:
    raw = hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID)
    assert raw == low_level.hash_secret_raw(SECRET, SALT, *COST, Type.ID)
    encoded = hashing.hash_secret(SECRET, SALT, *COST, Type.I, version=16)
    assert encoded == low_level.hash_secret(SECRET, SALT, *COST, Type.I, version=16)
    assert hashing.verify_secret(encoded, SECRET, Type.I) is True
    with pytest.raises(VerifyMismatchError):
        hashing.verify_secret(encoded, SECRET + b"x", Type.I)
    with pytest.raises(VerificationError):
        hashing.verify_secret(b"$argon2id$v=19$m=8,t=1,p=1$bad", SECRET, Type.ID)
    with pytest.raises(HashingError):
        hashing.hash_secret_raw(SECRET, b"short", *COST, Type.ID)  # salt below 8 bytes
    assert len(pool.pids()) == 1  # one caller at a time: one child, reused


def test_this_process_again_after_use_this_process(pool: HashingProcesses) -> None:
    hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID)
    (pid,) = pool.pids()
    hashing.use_this_process()
    assert hashing.hashing_processes() is None
    _wait_for(lambda: not pool.pids(), "the child did not exit at the end of its input")
    assert not Path(f"/proc/{pid}").exists()
    assert hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID) == low_level.hash_secret_raw(
        SECRET, SALT, *COST, Type.ID
    )


def test_many_threads_at_once_each_get_their_own_answer(pool: HashingProcesses) -> None:
    results: dict[int, bytes] = {}
    start = threading.Barrier(6)

    def run(n: int) -> None:
        start.wait()
        for round_ in range(3):
            secret = b"user-%d-round-%d" % (n, round_)
            results[n * 10 + round_] = hashing.hash_secret_raw(secret, SALT, *COST, Type.ID)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key, value in results.items():
        secret = b"user-%d-round-%d" % (key // 10, key % 10)
        assert value == low_level.hash_secret_raw(secret, SALT, *COST, Type.ID), key
    assert len(results) == 18
    assert 1 <= len(pool.pids()) <= 6


def test_killed_child_fails_that_call_and_the_next_starts_a_new_one(
    pool: HashingProcesses,
) -> None:
    outcome: list[BaseException | bytes] = []

    def slow() -> None:
        try:
            outcome.append(hashing.hash_secret_raw(SECRET, SALT, 200, 8192, 1, 32, Type.ID))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    _wait_for(lambda: pool.pids(), "no hashing process started")
    (victim,) = pool.pids()
    os.kill(victim, signal.SIGKILL)
    thread.join(60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], KdfUnavailable)
    assert isinstance(outcome[0], KdfBusy)  # every login path answers it as temporary
    _wait_for(lambda: victim not in pool.pids(), "the killed child was not reaped")
    assert hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID) == low_level.hash_secret_raw(
        SECRET, SALT, *COST, Type.ID
    )
    (replacement,) = pool.pids()
    assert replacement != victim


def test_idle_child_exits_and_the_next_call_starts_another() -> None:
    pool = hashing.use_hashing_processes(0.5)
    try:
        hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID)
        (first,) = pool.pids()
        _wait_for(lambda: not pool.pids(), "the idle child did not exit")
        assert not Path(f"/proc/{first}").exists()  # reaped: no zombie left
        hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID)
        (second,) = pool.pids()
        assert second != first
    finally:
        hashing.use_this_process()


def test_no_secret_in_the_childs_arguments_or_environment(
    pool: HashingProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYPTMAIL_TEST_SERVER_SECRET", "do-not-pass-on")
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(
            hashing.hash_secret_raw(SECRET, SALT, 100, 8192, 1, 32, Type.ID)
        )
    )
    thread.start()
    _wait_for(lambda: pool.pids(), "no hashing process started")
    (pid,) = pool.pids()
    # The pid is known from the fork on; until the exec the kernel shows the parent's
    # (or, mid-exec, an empty) command line, so wait for the child to name itself.
    _wait_for(
        lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "cryptmail-hash",
        "the hashing process never named itself",
    )
    # Read while the derivation runs: the password is in the child's memory only.
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    thread.join(60)
    assert outcome and isinstance(outcome[0], bytes)
    for needle in (SECRET, b"only-on-the-pipe", b"do-not-pass-on", b"CRYPTMAIL"):
        assert needle not in cmdline
        assert needle not in environ
    assert cmdline.split(b"\0")[1:4] == [
        b"-I",
        b"-S",
        str(hashing._processes.CHILD_SCRIPT).encode(),
    ]
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "cryptmail-hash"


def test_child_imports_no_cryptmail(pool: HashingProcesses) -> None:
    hashing.hash_secret_raw(SECRET, SALT, *COST, Type.ID)
    (pid,) = pool.pids()
    maps = Path(f"/proc/{pid}/maps").read_text()
    # The interpreter and argon2-cffi's library; not cryptography's, not SQLAlchemy's.
    assert "_argon2" in maps or "argon2" in maps
    assert "_rust" not in maps and "cryptography" not in maps
    assert "sqlalchemy" not in maps.lower()


def test_a_child_that_cannot_start_is_a_temporary_error() -> None:
    pool = HashingProcesses(60.0, python="/nonexistent/python3")
    with pytest.raises(KdfUnavailable):
        pool.call(bytes([0]))
    assert pool.pids() == []


def test_idle_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_s"):
        HashingProcesses(0)
