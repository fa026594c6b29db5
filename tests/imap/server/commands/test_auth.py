"""LOGIN and the login throttle, over real sessions from one client address.

No test here looks at a clock: the throttle's `refusals` counter and the replies say
whether anything was held back.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptmail.errors import KdfBusy
from cryptmail.keys import ensure_recovery_code, unlock_account
from cryptmail.secret import Password
from cryptmail.users import add_user, hash_password

from ...server_rig import PASSWORD, USER, ImapRig, start_rig

BOB = "bob@example.org"
BOB_PASSWORD = "bob's long passphrase"
# Slow refills: nothing comes back while a test runs, however slow the machine.
SLOW = {"auth.address_refill_s": 3600, "auth.client_refill_s": 3600}


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rwb")
        self.greeting = self.file.readline()
        self.count = 0

    def ask(self, command: str) -> bytes:
        self.count += 1
        tag = b"t%d" % self.count
        self.file.write(tag + b" " + command.encode() + b"\r\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            if line.startswith(tag + b" "):
                return line.rstrip(b"\r\n")

    def login(self, address: str, password: str) -> bytes:
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        return self.ask(f'LOGIN "{address}" "{quoted}"')

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def in_parallel(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` on `count` threads that start together; their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path, **SLOW)


@pytest.fixture
def kdf_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts password derivations (Argon2 unlocks and hash checks)."""
    import cryptmail.concurrency

    real = cryptmail.concurrency.run_kdf
    calls: list[int] = []

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr("cryptmail.keys._kdf.run_kdf", counting)
    return calls


def wrong_login(port: int, address: str = USER) -> bytes:
    conn = Conn(port)
    try:
        return conn.login(address, "not the password")
    finally:
        conn.close()


def test_parallel_correct_logins_from_one_address_are_never_held_back(rig: ImapRig) -> None:
    """(a) Ten clients behind one address log in and out at once, three rounds."""
    users = [f"user{n}@example.org" for n in range(10)]
    for user in users:
        rig.add_user(user, PASSWORD)

    def session(i: int) -> list[bytes]:
        replies = []
        for _ in range(3):
            conn = Conn(rig.port)
            replies.append(conn.login(users[i], PASSWORD))
            replies.append(conn.ask("LOGOUT"))
            conn.close()
        return replies

    for replies in in_parallel(10, session):
        assert all(b" OK " in reply for reply in replies), replies
    assert rig.throttle.refusals == 0
    assert rig.throttle.debt(USER, "127.0.0.1") == 0


def test_failures_for_one_user_do_not_hold_back_another_from_the_same_address(
    rig: ImapRig,
) -> None:
    """(b) Six failed logins for alice from 127.0.0.1; bob from there is let in at once."""
    rig.add_user(BOB, BOB_PASSWORD)
    replies = [wrong_login(rig.port) for _ in range(6)]
    assert all(b"[AUTHENTICATIONFAILED]" in reply for reply in replies[:5]), replies
    assert b"NO [UNAVAILABLE]" in replies[5]
    refused_before = rig.throttle.refusals
    conn = Conn(rig.port)
    assert b" OK " in conn.login(BOB, BOB_PASSWORD)
    conn.close()
    assert rig.throttle.refusals == refused_before


def test_parallel_guesses_beyond_the_burst_are_refused_unchecked(
    rig: ImapRig, kdf_calls: list[int]
) -> None:
    """(c) Twenty wrong guesses at once for one address: five are checked, fifteen get
    NO [UNAVAILABLE] without a derivation."""
    rig.add_user(BOB, BOB_PASSWORD)
    kdf_calls.clear()
    assert b"[AUTHENTICATIONFAILED]" in wrong_login(rig.port, BOB)
    per_guess = len(kdf_calls)
    assert per_guess >= 1
    kdf_calls.clear()
    replies = in_parallel(20, lambda _i: wrong_login(rig.port))
    checked = [r for r in replies if b"[AUTHENTICATIONFAILED]" in r]
    refused = [r for r in replies if b"NO [UNAVAILABLE]" in r]
    assert (len(checked), len(refused)) == (5, 15), replies
    assert len(kdf_calls) <= 5 * per_guess


def test_the_victims_success_does_not_reset_the_address(rig: ImapRig) -> None:
    """(d)"""
    for _ in range(4):
        assert b"[AUTHENTICATIONFAILED]" in wrong_login(rig.port)
    conn = Conn(rig.port)
    assert b" OK " in conn.login(USER, PASSWORD)
    conn.close()
    assert b"[AUTHENTICATIONFAILED]" in wrong_login(rig.port)
    assert b"NO [UNAVAILABLE]" in wrong_login(rig.port)


def test_the_address_is_folded_as_the_user_look_up_folds_it(rig: ImapRig) -> None:
    """(e) A padded, upper-case spelling reaches bob's bucket, not a fresh one."""
    rig.add_user(BOB, BOB_PASSWORD)
    for _ in range(5):
        assert b"[AUTHENTICATIONFAILED]" in wrong_login(rig.port, " BOB@example.org\t")
    conn = Conn(rig.port)
    assert b"NO [UNAVAILABLE]" in conn.login(BOB, BOB_PASSWORD)
    conn.close()


def test_a_full_argon2_queue_refuses_at_once_and_costs_nothing(
    rig: ImapRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def busy(*args: Any, **kwargs: Any) -> Any:
        raise KdfBusy()

    monkeypatch.setattr("cryptmail.keys._kdf.run_kdf", busy)
    conn = Conn(rig.port)
    assert b"NO [UNAVAILABLE]" in conn.login(USER, PASSWORD)
    monkeypatch.undo()
    assert rig.throttle.debt(USER, "127.0.0.1") == 0
    assert b" OK " in conn.login(USER, PASSWORD)
    conn.close()


def test_a_trusted_webmail_host_passes_the_real_client(tmp_path: Path) -> None:
    """(g) From a trusted network, ID x-originating-ip names the client to count, and
    the host's own address has no bucket; the address bucket still applies."""
    rig_iter = start_rig(tmp_path, **SLOW, **{"auth.trusted_networks": ["127.0.0.0/8"]})
    rig = next(rig_iter)
    try:
        conn = Conn(rig.port)
        assert b" OK " in conn.ask('ID ("name" "roundcube" "x-originating-ip" "198.51.100.7")')
        assert b"[AUTHENTICATIONFAILED]" in conn.login(USER, "wrong")
        conn.close()
        assert rig.throttle.debt("someone@example.org", "198.51.100.7") == pytest.approx(
            1, abs=0.01
        )
        assert rig.throttle.entries() == (1, 1)  # alice's and 198.51.100.7's, not the host's
        for _ in range(4):
            assert b"[AUTHENTICATIONFAILED]" in wrong_login(rig.port)
        assert b"NO [UNAVAILABLE]" in wrong_login(rig.port)
    finally:
        next(rig_iter, None)


def test_an_untrusted_clients_originating_ip_is_ignored(rig: ImapRig) -> None:
    """(g) Without a trusted network, the field names nobody: the peer is counted."""
    conn = Conn(rig.port)
    assert b" OK " in conn.ask('ID ("x-originating-ip" "198.51.100.7")')
    assert b"[AUTHENTICATIONFAILED]" in conn.login(USER, "wrong")
    conn.close()
    assert rig.throttle.debt("someone@example.org", "127.0.0.1") == pytest.approx(1, abs=0.01)
    assert rig.throttle.debt("someone@example.org", "198.51.100.7") == 0


def test_ten_sessions_logging_in_and_out_again_run_argon2_once(
    tmp_path: Path, kdf_calls: list[int]
) -> None:
    """A webmail's pattern: one user, ten connections from one address, each logging in
    and out again and again; only the first login derives a key (the login cache).

    Every login, a cache hit too, holds a token of the address's bucket while it is
    checked. Ten at the very same moment are more than the default burst of five: the
    ones beyond it wait for those in flight to settle, and none is refused."""
    rig_iter = start_rig(tmp_path, **SLOW)
    rig = next(rig_iter)
    try:
        _ten_sessions(rig, kdf_calls)
    finally:
        next(rig_iter, None)


def _ten_sessions(rig: ImapRig, kdf_calls: list[int]) -> None:
    kdf_calls.clear()
    conn = Conn(rig.port)
    assert b" OK " in conn.login(USER, PASSWORD)
    conn.ask("LOGOUT")
    conn.close()
    assert len(kdf_calls) == 1

    def session(_i: int) -> list[bytes]:
        replies = []
        for _ in range(3):
            conn = Conn(rig.port)
            replies.append(conn.login(USER, PASSWORD))
            replies.append(conn.ask("LOGOUT"))
            conn.close()
        return replies

    for replies in in_parallel(10, session):
        assert all(b" OK " in reply for reply in replies), replies
    assert len(kdf_calls) == 1
    assert rig.throttle.refusals == 0
    # A wrong password is still checked the full way, and fails.
    assert b"[AUTHENTICATIONFAILED]" in wrong_login(rig.port)
    assert len(kdf_calls) > 1


def _login_lines(port: int, address: str, password: str) -> list[bytes]:
    """Every line the server sends in answer to one LOGIN, untagged ones too."""
    conn = Conn(port)
    try:
        conn.file.write(f'a LOGIN "{address}" "{password}"\r\n'.encode())
        conn.file.flush()
        lines: list[bytes] = []
        while not lines or not lines[-1].startswith(b"a "):
            line = conn.file.readline()
            assert line, "connection closed"
            lines.append(line.rstrip(b"\r\n"))
        conn.ask("LOGOUT")
        return lines
    finally:
        conn.close()


def test_a_user_without_a_recovery_code_is_alerted_at_login_until_they_have_one(
    rig: ImapRig,
) -> None:
    """An ISPmail row gets its keys at the first (IMAP) login but no recovery code:
    each login says so in an ALERT (RFC 3501 7.1) until the web sign-in made one."""
    legacy, secret = "legacy@example.org", "legacy passphrase 1"

    async def add_row() -> None:
        async with rig.engine.begin() as conn:
            await add_user(conn, legacy, hash_password(Password.from_str(secret)), crypt=2)

    async def web_sign_in() -> str | None:
        account, _slot = await unlock_account(
            rig.engine, legacy, Password.from_str(secret), rig.config.crypto
        )
        return await ensure_recovery_code(rig.engine, account, rig.config.crypto)

    rig.run(add_row())
    alert = b"* OK [ALERT] You have no recovery code"
    for _ in range(2):  # the first login makes the keys; the second finds them
        lines = _login_lines(rig.port, legacy, secret)
        assert lines[-1].startswith(b"a OK ")
        (line,) = [x for x in lines if x.startswith(b"* OK [ALERT]")]
        assert line.startswith(alert) and b"web pages" in line
    assert rig.run(web_sign_in()) is not None
    lines = _login_lines(rig.port, legacy, secret)
    assert lines[-1].startswith(b"a OK ") and not any(b"[ALERT]" in x for x in lines)
    assert not any(b"[ALERT]" in x for x in _login_lines(rig.port, USER, "p%ss"))  # wrong pw
    conn = Conn(rig.port)  # a user made with a code (user add) is never alerted
    try:
        conn.file.write(b"a LOGIN " + USER.encode() + b" {%d}\r\n" % len(PASSWORD.encode()))
        conn.file.flush()
        assert conn.file.readline().startswith(b"+")
        conn.file.write(PASSWORD.encode() + b"\r\n")
        conn.file.flush()
        reply = [conn.file.readline()]
        while not reply[-1].startswith(b"a "):
            reply.append(conn.file.readline())
        assert reply[-1].startswith(b"a OK ") and not any(b"[ALERT]" in x for x in reply)
    finally:
        conn.close()
