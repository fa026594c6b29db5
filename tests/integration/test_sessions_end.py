"""Sessions end when credentials change (issue 14, finding 3), against a live `serve`.

One `cryptmail serve --imap --web` over SQLite. The changes come from the CLI, another
process: nothing in the server is told but the database. Within 5 s of the CLI's exit,
every IMAP session of the user (one in IDLE, one SELECTed) reads
``* BYE [UNAVAILABLE] Credentials changed`` and the connection closes; bob's session is
untouched; alice's web session is signed out at its next request (the sign-in page, the
cookie cleared).
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cryptmail.db import create_engine
from cryptmail.keys import add_app_password, unlock_account
from cryptmail.secret import Password

from .cryptmail_server import CRYPTO, db_url, stop_process, wait_for_greeting
from .servers import free_port

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob@example.org"
PASSWORD = "sessions end password 1"  # both users' first password
NEW_PASSWORD = "sessions end password 2"
DEADLINE_S = 5.0
BYE = b"* BYE [UNAVAILABLE] Credentials changed"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _readable(sock: socket.socket, timeout_s: float) -> bool:
    """Whether `sock` has data within `timeout_s`. poll, not select: a test process that
    has opened many files hands out descriptors above select()'s limit of 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


@dataclass(frozen=True)
class Server:
    config: Path
    data_dir: Path
    imap: int
    web: int


def _cli(config: Path, *args: str, stdin: str = "") -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"


def _wait_for_web(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cryptmail serve exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/sign-in", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the web listener did not answer")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data_dir = tmp_path / "data"
    config = tmp_path / "cryptmail.toml"
    config.write_text(
        f"data_dir = '{data_dir}'\n"
        "[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n"
        "[web]\nsecure_cookies = false\n"
    )
    _cli(config, "db", "upgrade")
    _cli(config, "domain", "add", "example.org")
    for email in (ALICE, BOB):
        _cli(config, "user", "add", email, "--crypt", "2", "--password-stdin", stdin=PASSWORD)
    imap, web = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cryptmail", "--config", str(config), "serve"]
            + ["--imap", f"127.0.0.1:{imap}", "--web", f"127.0.0.1:{web}"],
            stdout=sink,
            stderr=sink,
        )
    try:
        wait_for_greeting(process, imap, log, timeout=60)
        _wait_for_web(process, web, log)
        yield Server(config, data_dir, imap, web)
    finally:
        stop_process(process)
    text = log.read_bytes()
    assert PASSWORD.encode() not in text and NEW_PASSWORD.encode() not in text


class Imap:
    """Just enough IMAP on a socket, with deadlines."""

    def __init__(self, port: int, email: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        assert self.line(30).startswith(b"* OK")
        self.command("l", f'LOGIN "{email}" "{password}"')

    def line(self, timeout: float) -> bytes:
        """The next line; b"" once the server closed the connection."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(self.sock, left):
                raise TimeoutError(f"no line within {timeout} s")
            chunk = self.sock.recv(4096)
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def command(self, tag: str, text: str) -> None:
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        while not (line := self.line(60)).startswith(tag.encode() + b" "):
            assert line, "closed"
        assert line.startswith(tag.encode() + b" OK"), line

    def selected(self) -> Imap:
        self.command("s", "SELECT INBOX")
        return self

    def idling(self) -> Imap:
        self.selected()
        self.sock.sendall(b"i IDLE\r\n")
        assert self.line(30).startswith(b"+")
        return self

    def ended(self, since: float) -> None:
        """BYE [UNAVAILABLE] within DEADLINE_S of `since`, then the connection closes."""
        line = self.line(DEADLINE_S + 5)
        waited = time.monotonic() - since
        assert line.startswith(BYE), line
        assert waited < DEADLINE_S, f"BYE after {waited:.1f} s"
        assert self.line(5) == b""

    def close(self) -> None:
        self.sock.close()


def _web_sign_in(port: int, password: str) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    form = client.get("/sign-in")
    token = _TOKEN.search(form.text)
    assert token is not None
    answer = client.post(
        "/sign-in", data={"csrf_token": token[1], "address": ALICE, "password": password}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/account"
    assert client.get("/account").status_code == 200
    return client


def _app_password(server: Server) -> str:
    async def make() -> str:
        engine = create_engine(db_url(server.data_dir))
        try:
            account, _slot = await unlock_account(
                engine, ALICE, Password.from_str(PASSWORD), CRYPTO
            )
            return await add_app_password(engine, account, "phone", CRYPTO)
        finally:
            await engine.dispose()

    return asyncio.run(make())


def test_cli_changes_end_imap_and_web_sessions_of_that_user_only(server: Server) -> None:
    secret = _app_password(server)
    bob = Imap(server.imap, BOB, PASSWORD).selected()
    sessions: list[Imap] = [bob]
    try:
        # An app password revoked: the session it opened ends, and so does one opened
        # with the password (the re-key left both with a stale account key).
        phone = Imap(server.imap, ALICE, secret).idling()
        desk = Imap(server.imap, ALICE, PASSWORD).selected()
        sessions += [phone, desk]
        _cli(server.config, "app-password", "revoke", ALICE, "phone")
        since = time.monotonic()
        phone.ended(since)
        desk.ended(since)

        # The password changed: IDLE, SELECTed and web sessions of alice end.
        idle = Imap(server.imap, ALICE, PASSWORD).idling()
        selected = Imap(server.imap, ALICE, PASSWORD).selected()
        sessions += [idle, selected]
        web = _web_sign_in(server.web, PASSWORD)
        _cli(
            server.config,
            "user",
            "passwd",
            ALICE,
            "--password-stdin",
            stdin=f"{PASSWORD}\n{NEW_PASSWORD}\n",
        )
        since = time.monotonic()
        idle.ended(since)
        selected.ended(since)
        answer = web.get("/account")
        assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"
        assert "Max-Age=0" in answer.headers["set-cookie"]
        web.close()

        bob.command("n", "NOOP")  # bob's session went on throughout
        Imap(server.imap, ALICE, NEW_PASSWORD).command("o", "LOGOUT")
    finally:
        for session in sessions:
            session.close()
