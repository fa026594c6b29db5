"""ManageSieve on a live `cryptmail serve --managesieve`, with real clients over
STARTTLS (the certificate verified against the server's self-signed one): sievelib's
`Client` and Debian's `sieve-connect` (its password on a pipe, never on the command
line). Several users and several sessions of one user at once from one address; a
database dump shows no script name or text; bad input is refused and changes nothing;
a server killed in the middle of PUTSCRIPT leaves the old script."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from sievelib.managesieve import Client

from cryptmail.db import create_engine
from cryptmail.sieve import load_active_script
from cryptmail.users import get_user

from .cryptmail_server import PASSWORD, CryptmailServer, db_url, make_users, read_all

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
SECRET = (
    'require ["fileinto", "vacation"];\r\n'
    'if header :contains "subject" "quokka-marmalade" { fileinto "Wombat-Archive"; }\r\n'
    'vacation :days 3 :addresses ["alice@example.org"] "Away until the narwhal-festival.";\r\n'
)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2, CAROL: 0})
    served = CryptmailServer(data_dir, managesieve=True)
    served.start()
    # sievelib verifies the certificate with the default context: trust the server's.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate(served)))
    yield served
    served.stop()


def as_read(text: str) -> str:
    """A script as sievelib's getscript returns it: its lines joined by LF."""
    return "\n".join(text.splitlines())


def certificate(server: CryptmailServer) -> Path:
    return server.data_dir / "imap-selfsigned.pem"


def client(server: CryptmailServer, user: str = ALICE, password: str = PASSWORD) -> Client:
    sieve = Client("127.0.0.1", server.managesieve_port)
    assert sieve.connect(user, password, starttls=True, authmech="PLAIN"), "login failed"
    return sieve


def active_script(server: CryptmailServer, user: str) -> str | None:
    """What delivery reads, through the storage API in this process."""

    async def run() -> str | None:
        engine = create_engine(db_url(server.data_dir))
        try:
            async with engine.connect() as conn:
                user_id = (await get_user(conn, user)).id
            return await load_active_script(engine, user_id)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_sievelib_client(server: CryptmailServer) -> None:
    sieve = client(server)
    assert sieve.get_implementation() == "cryptmail"
    assert "fileinto" in sieve.get_sieve_capabilities()
    assert sieve.checkscript(SECRET)
    assert sieve.havespace("main", len(SECRET))
    assert sieve.putscript("main", SECRET)
    assert sieve.putscript("spare", "keep;\r\n")
    assert sieve.setactive("main")
    assert sieve.listscripts() == ("main", ["spare"])
    assert sieve.getscript("main") == as_read(SECRET)
    assert not sieve.deletescript("main")  # active: refused
    assert sieve.renamescript("spare", "old-spare")
    assert not sieve.renamescript("old-spare", "main")  # exists
    assert not sieve.putscript("broken", 'require "fileinto";\r\nfileinto;\r\n')
    assert sieve.errmsg.startswith(b"line 2:")
    assert sieve.listscripts() == ("main", ["old-spare"])
    sieve.logout()
    assert active_script(server, ALICE) == SECRET
    assert active_script(server, BOB) is None


def test_sievelib_hears_the_warnings(server: CryptmailServer) -> None:
    """A script that compiles but whose redirect and vacation cannot go out (this server
    has no sieve.smtp_relay) is stored with OK (WARNINGS); sievelib takes it as stored.
    sievelib keeps an OK's text to itself, so its own command sender shows it."""
    script = 'require "vacation";\r\nredirect "a@example.net";\r\nvacation "Away.";\r\n'
    sieve = client(server)
    assert sieve.putscript("fwd", script)
    assert sieve.checkscript(script)
    send, prepare = sieve._Client__send_command, sieve._Client__prepare_content  # name-mangled
    code, text = send("CHECKSCRIPT", [prepare(script)])
    assert code == "OK"
    assert text.startswith('(WARNINGS) "line 2: redirect is not sent')
    assert "line 3: vacation replies are not sent" in text
    code, text = send("CHECKSCRIPT", [prepare("keep;\r\n")])
    assert (code, text) == ("OK", '"The script is valid."')
    assert sieve.listscripts() == (None, ["fwd"])
    sieve.logout()


def sieve_connect(
    server: CryptmailServer, user: str, *args: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """One `sieve-connect` run over STARTTLS, the password on a pipe (its fd number
    given, the same in the child: pass_fds keeps it open there)."""
    binary = shutil.which("sieve-connect")
    if binary is None:
        pytest.skip("sieve-connect is not installed (scripts/install-deps.sh)")
    read_end, write_end = os.pipe()
    os.write(write_end, password.encode() + b"\n")
    os.close(write_end)
    try:
        return subprocess.run(
            [
                binary,
                "--server",
                "127.0.0.1",
                "--port",
                str(server.managesieve_port),
                "--user",
                user,
                "--passwordfd",
                str(read_end),
                "--tlscafile",
                str(certificate(server)),
                "--tlshostname",
                "localhost",
                "--authmech",
                "PLAIN",
                *args,
            ],  # fmt: skip
            pass_fds=(read_end,),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(read_end)


def test_sieve_connect(server: CryptmailServer, tmp_path: Path) -> None:
    local = tmp_path / "filter.sieve"
    local.write_bytes(SECRET.encode())
    uploaded = sieve_connect(
        server, BOB, "--localsieve", str(local), "--remotesieve", "filters", "--upload"
    )
    assert uploaded.returncode == 0, uploaded.stderr
    activated = sieve_connect(server, BOB, "--remotesieve", "filters", "--activate")
    assert activated.returncode == 0, activated.stderr
    listed = sieve_connect(server, BOB, "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == '"filters" ACTIVE\n'
    back = tmp_path / "back.sieve"
    got = sieve_connect(
        server, BOB, "--remotesieve", "filters", "--localsieve", str(back), "--download"
    )
    assert got.returncode == 0, got.stderr
    assert back.read_bytes() == SECRET.encode()
    assert active_script(server, BOB) == SECRET
    # A script that does not compile: refused with its line, nothing stored.
    local.write_text("keep;\r\nif true {\r\n")
    refused = sieve_connect(
        server, BOB, "--localsieve", str(local), "--remotesieve", "bad", "--upload"
    )
    assert refused.returncode != 0
    assert "line" in (refused.stdout + refused.stderr)
    # A wrong password is refused (and counted by the throttle, shared with IMAP).
    wrong = sieve_connect(server, BOB, "--list", password="not the password")
    assert wrong.returncode != 0
    listed = sieve_connect(server, BOB, "--list")
    assert listed.stdout.count("filters") == 1 and "bad" not in listed.stdout


def test_many_sessions_and_users_at_once(server: CryptmailServer) -> None:
    """Two sessions of alice PUT while a third LISTs and SETACTIVEs; bob and carol work
    on their own scripts meanwhile; all from 127.0.0.1."""
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        sieve = client(server)
        for i in range(10):
            assert sieve.putscript(f"{prefix}{i}", f"# {prefix} {i}\r\nkeep;\r\n")
        sieve.logout()

    def switcher() -> None:
        sieve = client(server)
        for _ in range(15):
            active, others = sieve.listscripts()
            if others:
                assert sieve.setactive(others[-1])
        sieve.logout()

    def other(user: str) -> None:
        sieve = client(server, user)
        for i in range(8):
            assert sieve.putscript(f"{user[0]}{i}", f"# {user} {i}\r\ndiscard;\r\n")
            assert sieve.setactive(f"{user[0]}{i}")
        sieve.logout()

    def guarded(work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        return threading.Thread(target=run)

    threads = [
        guarded(lambda: writer("x")),
        guarded(lambda: writer("y")),
        guarded(switcher),
        guarded(lambda: other(BOB)),
        guarded(lambda: other(CAROL)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    sieve = client(server)
    active, others = sieve.listscripts()
    assert len(others) + (active is not None) == 20
    assert active_script(server, BOB) == f"# {BOB} 7\r\ndiscard;\r\n"
    assert active_script(server, CAROL) == f"# {CAROL} 7\r\ndiscard;\r\n"


def test_a_database_dump_shows_no_script(server: CryptmailServer) -> None:
    sieve = client(server)
    assert sieve.putscript("quokka-marmalade-name", SECRET)
    assert sieve.setactive("quokka-marmalade-name")
    assert sieve.renamescript("quokka-marmalade-name", "narwhal-festival-name")
    sieve.logout()
    server.stop()
    database = server.data_dir / "cryptmail.db"
    files = [p for p in server.data_dir.iterdir() if p.name.startswith("cryptmail.db")]
    raw = b"".join(p.read_bytes() for p in files)
    with sqlite3.connect(database) as conn:
        dump = "\n".join(conn.iterdump()).encode()
    for marker in (b"quokka-marmalade", b"narwhal-festival", b"Wombat-Archive"):
        for data in (raw, dump, raw.lower(), dump.lower()):
            assert marker.lower() not in data.lower()
    assert active_script(server, ALICE) == SECRET  # yet the server key opens it


def raw_session(server: CryptmailServer) -> tuple[ssl.SSLSocket, BinaryIO]:
    """A STARTTLS session logged in as alice, for bytes sievelib will not send."""
    sock = socket.create_connection(("127.0.0.1", server.managesieve_port), timeout=60)
    reader = sock.makefile("rb")
    while not reader.readline().startswith(b"OK"):
        pass
    sock.sendall(b"STARTTLS\r\n")
    assert reader.readline().startswith(b"OK")
    context = ssl.create_default_context(cafile=str(certificate(server)))
    tls = context.wrap_socket(sock, server_hostname="localhost")
    reader = tls.makefile("rb")
    while not reader.readline().startswith(b"OK"):
        pass
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    tls.sendall(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n')
    assert reader.readline().startswith(b"OK")
    return tls, reader


def test_bad_input_is_refused_and_changes_nothing(server: CryptmailServer) -> None:
    sieve = client(server)
    assert sieve.putscript("main", SECRET)
    assert sieve.setactive("main")
    # A 1 MB script, 10,000 rules, a malformed one: each a clear NO.
    assert not sieve.putscript("main", "# " + "x" * 1_000_000 + "\r\nkeep;\r\n")
    assert b"limit" in sieve.errmsg
    rules = "".join(f'if header :is "x-n" "{i}" {{ keep; }}\r\n' for i in range(10_000))
    assert not sieve.putscript("main", rules)
    assert not sieve.putscript("main", 'if header :is "a" {\r\n')
    assert sieve.errmsg.startswith(b"line ")
    sieve.logout()
    tls, reader = raw_session(server)
    for garbage in (b"\xff\xfe\x00garbage\r\n", b"PUTSCRIPT\r\n", b"X" * 10000 + b"\r\n"):
        tls.sendall(garbage)
        assert reader.readline().startswith(b"NO")
    tls.sendall(b"LOGOUT\r\n")
    assert reader.readline().startswith(b"OK")
    assert client(server).getscript("main") == as_read(SECRET)
    assert active_script(server, ALICE) == SECRET


def test_a_kill_mid_putscript_leaves_the_old_script(server: CryptmailServer) -> None:
    sieve = client(server)
    assert sieve.putscript("main", SECRET)
    sieve.logout()
    tls, reader = raw_session(server)
    replacement = b"discard;\r\n" * 5000
    tls.sendall(b'PUTSCRIPT "main" {%d+}\r\n' % len(replacement) + replacement[:20000])
    assert tls.fileno() >= 0
    server.kill()
    tls.close()
    server.start()
    assert client(server).getscript("main") == as_read(SECRET)
    assert active_script(server, ALICE) is None


def test_delivery_runs_the_script_stored_over_managesieve(server: CryptmailServer) -> None:
    """The whole path: a script PUT and made active over ManageSieve, read by the LMTP
    workers' delivery from the sealed store, files matching mail into Junk."""
    sieve = client(server)
    script = (
        'require "fileinto";\r\n'
        'if header :contains "subject" "lottery" { fileinto "Junk"; stop; }\r\n'
    )
    assert sieve.putscript("spam", script)
    assert sieve.setactive("spam")
    sieve.logout()
    with smtplib.LMTP("127.0.0.1", server.port) as lmtp:
        for subject in ("You won the lottery", "Lunch"):
            message = f"From: x@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n"
            for to in (ALICE, BOB):  # smtplib reads one reply after DATA: one recipient
                lmtp.sendmail("x@example.net", [to], message.encode())
    alice, bob = read_all(server.data_dir, ALICE), read_all(server.data_dir, BOB)
    assert [b"lottery" in m for m in alice["Junk"]] == [True]
    assert [b"Lunch" in m for m in alice["INBOX"]] == [True]
    assert len(bob["INBOX"]) == 2 and not bob["Junk"]  # bob has no script
