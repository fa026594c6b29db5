"""ManageSieve sessions against a live listener: login, every command, response codes,
and bad input that gets a clear NO and changes nothing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cryptmail.db import create_engine
from cryptmail.keys import (
    add_app_password,
    change_password,
    revoke_app_password,
    unlock_account,
)
from cryptmail.secret import Password
from cryptmail.sieve import get_script, list_scripts, load_active_script, put_script

from .conftest import OTHER, PASSWORD, USER, SieveRig, Wire, plain, start_rig

KEEP = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "Junk"; }\r\n'


def put(wire: Wire, name: str, script: bytes, marker: str = "+") -> list[bytes]:
    head = b'PUTSCRIPT "%s" {%d%s}\r\n' % (name.encode(), len(script), marker.encode())
    return wire.command(head + script + b"\r\n")


def stored(rig: SieveRig, user: str = USER) -> dict[str, tuple[bool, str]]:
    user_id = rig.user_id(user)
    infos = rig.run(list_scripts(rig.engine, user_id))
    return {
        info.name: (info.active, rig.run(get_script(rig.engine, user_id, info.name)))
        for info in infos
    }


@pytest.fixture
def tls_only(tmp_path: Path) -> Iterator[SieveRig]:
    yield from start_rig(tmp_path, **{"managesieve.allow_plaintext_login_on_loopback": False})


@pytest.fixture
def big(tmp_path: Path) -> Iterator[SieveRig]:
    yield from start_rig(tmp_path, **{"sieve.max_script_size": 2 * 1024 * 1024})


def test_greeting_and_starttls(rig: SieveRig) -> None:
    wire = rig.wire(greeting=False)
    greeting = wire.until_status()
    assert greeting[-1] == b'OK "cryptmail ManageSieve ready."'
    assert b'"IMPLEMENTATION" "cryptmail"' in greeting
    assert b'"SASL" "PLAIN"' in greeting
    assert b'"VERSION" "1.0"' in greeting
    assert b'"STARTTLS"' in greeting
    assert any(line.startswith(b'"SIEVE" "') and b"fileinto" in line for line in greeting)
    again = wire.starttls()
    assert again[-1].startswith(b"OK")
    assert b'"STARTTLS"' not in again
    assert wire.command(b"STARTTLS\r\n")[-1].startswith(b"NO")
    assert wire.login()[-1] == b'OK "Logged in."'


def test_login_with_a_continuation(rig: SieveRig) -> None:
    wire = rig.wire()
    wire.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert wire.line() == b'""'
    assert wire.command(b'"%s"\r\n' % plain(USER, PASSWORD).encode()) == [b'OK "Logged in."']
    wire = rig.wire()
    wire.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert wire.line() == b'""'
    response = plain(USER, PASSWORD).encode()
    assert wire.command(b"{%d+}\r\n%s\r\n" % (len(response), response)) == [b'OK "Logged in."']
    wire = rig.wire()
    wire.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert wire.line() == b'""'
    assert wire.command(b'"*"\r\n')[-1].startswith(b"NO")


def test_login_with_a_literal_initial_response(rig: SieveRig) -> None:
    wire = rig.wire()
    response = plain(USER, PASSWORD).encode()
    reply = wire.command(b'AUTHENTICATE "PLAIN" {%d+}\r\n%s\r\n' % (len(response), response))
    assert reply == [b'OK "Logged in."']


def test_three_wrong_passwords_end_the_connection(tmp_path: Path) -> None:
    for rig in start_rig(tmp_path, **{"auth.address_burst": 10}):
        wire = rig.wire()
        assert wire.login(password="wrong")[-1] == b'NO "Authentication failed."'
        assert wire.login(password="wrong")[-1] == b'NO "Authentication failed."'
        assert wire.login(password="wrong")[-1].startswith(b"BYE")
        assert wire.line() == b""  # closed


def test_wrong_passwords_count_in_the_throttle(rig: SieveRig) -> None:
    replies = []
    for _ in range(6):
        replies.append(rig.wire().login(password="wrong")[-1])
    assert replies[0] == b'NO "Authentication failed."'
    assert replies[-1].startswith(b"NO (TRYLATER)")
    # Now even the right password waits; another address does not.
    assert rig.wire().login()[-1].startswith(b"NO (TRYLATER)")
    assert rig.wire().login(OTHER)[-1] == b'OK "Logged in."'


def test_the_other_user_is_not_throttled(rig: SieveRig) -> None:
    wire = rig.wire()
    for _ in range(2):
        wire.login(password="wrong")
    assert rig.wire().login(OTHER)[-1] == b'OK "Logged in."'


def test_an_app_password_logs_in(rig: SieveRig) -> None:
    async def make() -> str:
        account, _ = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        return await add_app_password(rig.engine, account, "roundcube", rig.config.crypto)

    code = rig.run(make())
    assert rig.wire().login(USER, code)[-1] == b'OK "Logged in."'
    assert rig.wire().login(USER, code + "x")[-1] == b'NO "Authentication failed."'


def test_a_password_change_ends_the_session(rig: SieveRig) -> None:
    wire = rig.logged_in()
    other = rig.logged_in(OTHER)
    new = Password.from_str("a new password 2")
    rig.run(change_password(rig.engine, USER, Password.from_str(PASSWORD), new, rig.config.crypto))
    # Waiting in a read: the session is told and closed.
    assert wire.line().startswith(b"BYE")
    assert wire.line() == b""
    assert other.command(b"LISTSCRIPTS\r\n") == [b'OK "Listscripts completed."']
    assert rig.wire().login(USER, "a new password 2")[-1] == b'OK "Logged in."'


def test_a_revoked_app_password_ends_its_session(rig: SieveRig) -> None:
    async def make() -> str:
        account, _ = await unlock_account(
            rig.engine, USER, Password.from_str(PASSWORD), rig.config.crypto
        )
        return await add_app_password(rig.engine, account, "phone", rig.config.crypto)

    code = rig.run(make())
    wire = rig.wire()
    assert wire.login(USER, code)[-1] == b'OK "Logged in."'
    rig.run(revoke_app_password(rig.engine, rig.user_id(), "phone"))
    assert wire.line().startswith(b"BYE")
    assert rig.wire().login(USER, code)[-1] == b'NO "Authentication failed."'


def test_plaintext_login_needs_tls_when_configured(tls_only: SieveRig) -> None:
    wire = tls_only.wire(greeting=False)
    assert b'"SASL" ""' in wire.until_status()
    assert wire.login()[-1].startswith(b"NO (ENCRYPT-NEEDED)")
    assert b'"SASL" "PLAIN"' in wire.starttls()
    assert wire.login()[-1] == b'OK "Logged in."'


def test_bytes_pipelined_after_starttls_are_refused(rig: SieveRig) -> None:
    wire = rig.wire()
    wire.send(b"STARTTLS\r\nCAPABILITY\r\n")
    assert wire.until_status()[-1].startswith(b"BYE")
    assert wire.line() == b""


def test_commands_before_login_are_refused(rig: SieveRig) -> None:
    wire = rig.wire()
    assert wire.command(b"LISTSCRIPTS\r\n") == [b'NO "Command not valid in this state."']
    assert wire.command(b'NOOP "t1"\r\n') == [b'OK (TAG "t1") "Done."']
    assert wire.command(b"LOGOUT\r\n") == [b'OK "Logout completed."']


def test_script_lifecycle(rig: SieveRig) -> None:
    wire = rig.logged_in()
    assert put(wire, "main", KEEP) == [b'OK "Script stored."']
    assert put(wire, "other", b"keep;\r\n", marker="") == [b'OK "Script stored."']
    assert wire.command(b"LISTSCRIPTS\r\n") == [
        b'"main"',
        b'"other"',
        b'OK "Listscripts completed."',
    ]
    assert wire.command(b'SETACTIVE "main"\r\n') == [b'OK "Active script set."']
    assert wire.command(b"LISTSCRIPTS\r\n")[0] == b'"main" ACTIVE'
    assert wire.command(b'GETSCRIPT "main"\r\n') == [KEEP, b'OK "Getscript completed."']
    assert wire.command(b'DELETESCRIPT "main"\r\n')[0].startswith(b"NO (ACTIVE)")
    assert wire.command(b'RENAMESCRIPT "other" "main"\r\n')[0].startswith(b"NO (ALREADYEXISTS)")
    assert wire.command(b'RENAMESCRIPT "main" "renamed"\r\n') == [b'OK "Script renamed."']
    assert wire.command(b'GETSCRIPT "main"\r\n')[0].startswith(b"NO (NONEXISTENT)")
    assert wire.command(b'SETACTIVE "nope"\r\n')[0].startswith(b"NO (NONEXISTENT)")
    assert wire.command(b'DELETESCRIPT "nope"\r\n')[0].startswith(b"NO (NONEXISTENT)")
    assert wire.command(b'SETACTIVE ""\r\n') == [b'OK "No script is active now."']
    assert wire.command(b'DELETESCRIPT "renamed"\r\n') == [b'OK "Script deleted."']
    assert stored(rig) == {"other": (False, "keep;\r\n")}
    assert stored(rig, OTHER) == {}


def test_a_script_name_as_a_literal(rig: SieveRig) -> None:
    wire = rig.logged_in()
    name = 'ünï "quoted" name'.encode()
    head = b"PUTSCRIPT {%d+}\r\n%s {7+}\r\n" % (len(name), name)
    assert wire.command(head + b"keep;\r\n\r\n") == [b'OK "Script stored."']
    assert stored(rig) == {name.decode(): (False, "keep;\r\n")}
    assert wire.command(b"LISTSCRIPTS\r\n")[0] == '"ünï \\"quoted\\" name"'.encode()


def test_syntax_errors_name_the_line_and_keep_the_old_script(rig: SieveRig) -> None:
    wire = rig.logged_in()
    put(wire, "main", KEEP)
    reply = put(wire, "main", b"keep;\r\nif true {\r\n  fileinto;\r\n}\r\n")
    assert reply[0].startswith(b'NO "line 3: ')
    reply = wire.command(b"CHECKSCRIPT {11+}\r\nunknownx;\r\n\r\n")
    assert reply[0].startswith(b'NO "line 1: ')
    assert wire.command(b"CHECKSCRIPT {7+}\r\nkeep;\r\n\r\n") == [b'OK "The script is valid."']
    reply = put(
        wire,
        "main",
        'require "fileinto";\r\nfileinto "caf\udcff";\r\n'.encode(errors="surrogateescape"),
    )
    assert reply[0] == b'NO "A script must be UTF-8."'
    assert stored(rig) == {"main": (False, KEEP.decode())}


def test_limits_and_havespace(rig: SieveRig) -> None:
    wire = rig.logged_in()
    assert wire.command(b'HAVESPACE "x" 100\r\n') == [b"OK"]
    assert wire.command(b'HAVESPACE "x" 65537\r\n')[0].startswith(b"NO (QUOTA/MAXSIZE)")
    # A 1 MB script sent as a non-synchronizing literal: read, dropped, refused.
    script = b"# " + b"x" * 1_000_000 + b"\r\nkeep;\r\n"
    assert put(wire, "huge", script)[0].startswith(b"NO (QUOTA/MAXSIZE)")
    assert wire.command(b"NOOP\r\n") == [b'OK "Done."']  # the stream is still in step
    assert stored(rig) == {}


def test_the_script_count_limit(tmp_path: Path) -> None:
    for rig in start_rig(tmp_path, **{"managesieve.max_scripts": 2}):
        wire = rig.logged_in()
        put(wire, "a", b"keep;\r\n")
        put(wire, "b", b"keep;\r\n")
        assert put(wire, "c", b"keep;\r\n")[0].startswith(b"NO (QUOTA/MAXSCRIPTS)")
        assert wire.command(b'HAVESPACE "c" 1\r\n')[0].startswith(b"NO (QUOTA/MAXSCRIPTS)")
        assert put(wire, "a", b"discard;\r\n") == [b'OK "Script stored."']


def test_ten_thousand_rules(big: SieveRig) -> None:
    wire = big.logged_in()
    rules = b"".join(b'if header :is "x-n" "%d" { keep; }\r\n' % i for i in range(10_000))
    reply = put(wire, "many", rules)
    assert reply[0].startswith(b"NO ")
    assert b"command" in reply[0].lower()
    assert stored(big) == {}
    # Within the limit, a large script is stored and read back whole.
    rules = b"".join(b'if header :is "x-n" "%d" { keep; }\r\n' % i for i in range(2_000))
    assert put(wire, "fewer", rules) == [b'OK "Script stored."']
    assert wire.command(b'GETSCRIPT "fewer"\r\n')[0] == rules


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",
        b"PUTSCRIPT\r\n",
        b'PUTSCRIPT "a"\r\n',
        b'PUTSCRIPT "a" "keep;"  \r\n',
        b'GETSCRIPT "a" "b"\r\n',
        b'HAVESPACE 12 "a"\r\n',
        b"GETSCRIPT " + b"x" * 20000 + b"\r\n",
        b"NOOP!! {6+}\r\nNOOP\r\n\r\n",
        b"RENAMESCRIPT {3+}\r\nabc\r\n",
    ],
)
def test_garbage_gets_a_no_and_changes_nothing(rig: SieveRig, garbage: bytes) -> None:
    wire = rig.logged_in()
    put(wire, "a", b"keep;\r\n")
    reply = wire.command(garbage)
    assert reply[-1].startswith(b"NO")
    assert wire.command(b'NOOP "sync"\r\n') == [b'OK (TAG "sync") "Done."']
    assert stored(rig) == {"a": (False, "keep;\r\n")}


def test_many_bad_commands_end_the_connection(rig: SieveRig) -> None:
    wire = rig.wire()
    wire.send(b"BOGUS\r\n" * 30)
    replies = [wire.line() for _ in range(22)]
    assert replies[-1].startswith(b"BYE")


def test_a_disconnect_mid_putscript_keeps_the_old_script(rig: SieveRig) -> None:
    wire = rig.logged_in()
    put(wire, "main", KEEP)
    wire.send(b'PUTSCRIPT "main" {1000+}\r\n' + b"discard;\r\n" * 20)
    wire.sock.shutdown(socket.SHUT_RDWR)
    wire.close()
    later = rig.logged_in()
    assert later.command(b'GETSCRIPT "main"\r\n')[0] == KEEP


def test_unauthenticate(rig: SieveRig) -> None:
    wire = rig.logged_in()
    assert wire.command(b"UNAUTHENTICATE\r\n") == [b'OK "Unauthenticated."']
    assert wire.command(b"LISTSCRIPTS\r\n")[0].startswith(b"NO")
    assert wire.login(OTHER)[-1] == b'OK "Logged in."'
    assert wire.command(b"LISTSCRIPTS\r\n") == [b'OK "Listscripts completed."']


def test_capability_after_login_names_the_owner(rig: SieveRig) -> None:
    wire = rig.logged_in()
    caps = wire.command(b"CAPABILITY\r\n")
    assert b'"OWNER" "alice@example.org"' in caps
    assert b'"STARTTLS"' not in caps


def test_sessions_of_two_users_and_one_user_at_once(rig: SieveRig) -> None:
    """Several sessions from one client address: alice PUTs in two sessions while a
    third LISTs and SETACTIVEs, and bob works on his own scripts meanwhile."""
    errors: list[BaseException] = []

    def alice_writer(prefix: str) -> None:
        wire = rig.logged_in()
        for i in range(15):
            assert put(wire, f"{prefix}{i}", b"# %d\r\nkeep;\r\n" % i) == [b'OK "Script stored."']

    def alice_reader() -> None:
        wire = rig.logged_in()
        for _ in range(15):
            lines = wire.command(b"LISTSCRIPTS\r\n")
            assert lines[-1] == b'OK "Listscripts completed."'
            names = [line.split(b'"')[1] for line in lines[:-1]]
            if names:
                reply = wire.command(b'SETACTIVE "%s"\r\n' % names[-1])
                assert reply == [b'OK "Active script set."']

    def bob() -> None:
        wire = rig.logged_in(OTHER)
        for i in range(10):
            assert put(wire, f"bob{i}", b"discard;\r\n") == [b'OK "Script stored."']
            assert wire.command(b'SETACTIVE "bob%d"\r\n' % i) == [b'OK "Active script set."']

    def guard(target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        return threading.Thread(target=run)

    threads = [guard(lambda: alice_writer("a")), guard(lambda: alice_writer("b")),
               guard(alice_reader), guard(bob)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    alice, bob_scripts = stored(rig), stored(rig, OTHER)
    assert len(alice) == 30 and sum(active for active, _ in alice.values()) <= 1
    assert len(bob_scripts) == 10
    assert [name for name, (active, _) in bob_scripts.items() if active] == ["bob9"]
    assert all(text == "discard;\r\n" for _, text in bob_scripts.values())


def test_a_database_that_does_not_answer_is_trylater(rig: SieveRig, tmp_path: Path) -> None:
    wire = rig.logged_in()
    put(wire, "main", b"keep;\r\n")
    # The database cannot be opened under a logged-in session (a directory where the
    # file should be: SQLITE_CANTOPEN, as for a file gone or a disk unmounted).
    (tmp_path / "gone.db").mkdir()
    gone = create_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    context = rig.listener.context
    engine, context.engine = context.engine, gone
    try:
        for command in (b"LISTSCRIPTS\r\n", b'GETSCRIPT "main"\r\n', b'SETACTIVE "main"\r\n'):
            assert wire.command(command)[0].startswith(b"NO (TRYLATER)")
        assert put(wire, "main", b"discard;\r\n")[0].startswith(b"NO (TRYLATER)")
    finally:
        context.engine = engine
        rig.run(gone.dispose())
    assert stored(rig) == {"main": (False, "keep;\r\n")}


def test_storage_is_what_delivery_reads(rig: SieveRig) -> None:
    user_id = rig.user_id()
    rig.run(put_script(rig.engine, user_id, "direct", "keep;\n", rig.listener.context.limits))
    wire = rig.logged_in()
    assert wire.command(b'SETACTIVE "direct"\r\n') == [b'OK "Active script set."']
    assert rig.run(load_active_script(rig.engine, user_id)) == "keep;\n"


def test_warnings_for_what_this_server_will_not_do(tmp_path: Path) -> None:
    """RFC 5804 1.3: stored (OK), with WARNINGS naming each line that will not work here."""
    folder = tmp_path / "global"
    folder.mkdir()
    (folder / "spam.sieve").write_text("keep;\n")
    script = (
        b'require ["include", "vacation"];\r\nredirect "a@example.net";\r\n'
        b'include :global "spam";\r\ninclude :global "other";\r\nvacation "Away.";\r\n'
    )
    for rig in start_rig(tmp_path, **{"sieve.global_dir": str(folder)}):
        wire = rig.logged_in()
        reply = put(wire, "main", script)
        assert reply == [
            b'OK (WARNINGS) "line 2: redirect is not sent: this server has no SMTP relay; '
            b"the message is kept; line 4: there is no global script 'other' on this server; "
            b"the script stops there and the message is kept; "
            b'line 5: vacation replies are not sent: this server has no SMTP relay"'
        ]
        assert stored(rig) == {"main": (False, script.decode())}
        head = b"CHECKSCRIPT {%d+}\r\n" % len(script)
        assert wire.command(head + script + b"\r\n") == reply
        assert put(wire, "plain", KEEP) == [b'OK "Script stored."']
    for rig in start_rig(tmp_path / "relay", **{"sieve.smtp_relay": "127.0.0.1:25"}):
        wire = rig.logged_in()
        assert put(wire, "fwd", b'redirect "a@example.net";\r\n') == [b'OK "Script stored."']
