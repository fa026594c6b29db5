"""`cryptmail serve` as a subprocess on a free loopback port, plus store helpers.

Users are made and mail is read through the store API with the password, the way a
session would; the server process only ever holds public keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.keys import create_user, server_key, unlock_account
from cryptmail.secret import Password
from cryptmail.serve._lmtp_worker import WORKER_NAME
from cryptmail.store import list_mailboxes, load_messages, open_blob, read_plaintext
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain

from .servers._ports import free_port

PASSWORD = "correct horse battery staple"  # the test users' password
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))


def db_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'cryptmail.db'}"


def share_server_key(data_dir: Path) -> None:
    """Give a server on `data_dir` the server key of this test process (tests/conftest.py),
    as every node of one database needs the same one: the key rows this process writes
    are then the ones the server's delivery verifies."""
    target = data_dir / "server.key"
    if not target.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(server_key().path, target)


def make_users(data_dir: Path, domain: str, users: dict[str, int]) -> None:
    """Create the domain and `{email: crypt}` users."""
    share_server_key(data_dir)

    async def run() -> None:
        engine = create_engine(db_url(data_dir))
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, domain)
        for email, crypt in users.items():
            await create_user(engine, email, Password.from_str(PASSWORD), CRYPTO, crypt=crypt)
        await engine.dispose()

    asyncio.run(run())


def read_all(data_dir: Path, email: str) -> dict[str, list[bytes]]:
    """{folder name: [message bytes in UID order]} of `email`, opened with the password."""

    async def run() -> dict[str, list[bytes]]:
        engine = create_engine(db_url(data_dir))
        blobs = LocalBlobStore(data_dir / "blobs")
        account, _ = await unlock_account(engine, email, Password.from_str(PASSWORD), CRYPTO)
        out: dict[str, list[bytes]] = {}
        async with engine.connect() as conn:
            for box in await list_mailboxes(conn, account.user.id, account):
                rows = await load_messages(conn, account, box.id)
                out[box.name] = [
                    await read_plaintext(blobs, await open_blob(blobs, account, r.blob_id))
                    for r in rows
                ]
        await engine.dispose()
        return out

    return asyncio.run(run())


def store_check(data_dir: Path, grace_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptmail",
            "--data-dir",
            str(data_dir),
            "store",
            "check",
            "--fix",
            "--grace",
            str(grace_s),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def wait_for_greeting(
    process: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float = 30.0
) -> None:
    """Until the listener on `port` greets (LMTP 220, IMAP * OK, SASL's VERSION line,
    POP3 +OK, ManageSieve's first capability, a quoted string);
    RuntimeError with the end of the server's log if the process exits or nothing
    answers in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cryptmail serve exited: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100)[:1] in (b"2", b"*", b"V", b"+", b'"'):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"cryptmail serve did not answer on port {port} within {timeout:.0f} s")


def wait_for_web(
    process: subprocess.Popen[bytes],
    port: int,
    log_path: Path,
    timeout: float = 30.0,
    *,
    tls: bool = False,
) -> None:
    """Until the web listener on `port` answers /healthz (over TLS, any certificate,
    with `tls`); RuntimeError as above."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a test certificate; the test checks it itself
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cryptmail serve exited: {log_path.read_text()[-2000:]}")
        try:
            url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz"
            # http or https to loopback only, never a scheme from outside
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the web listener did not answer on port {port} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (serve finishes what is in flight), SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendant_pids(pid: int) -> list[int]:
    """The live processes below `pid`: its children, theirs, and so on."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = child_pids(frontier.pop())
        found += children
        frontier += children
    return found


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"process {pid} has no VmHWM")


class CryptmailServer:
    """`python -m cryptmail serve --lmtp 127.0.0.1:PORT` over `data_dir`, with `config`
    (TOML) as its configuration file when given. LMTP is served by `serve`'s worker
    processes, two per core by default (`lmtp.processes = 0`)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        verbose: bool = False,
        config: str = "",
        imap: bool = False,
        sasl: bool = False,
        pop3: bool = False,
        managesieve: bool = False,
        web: bool = False,
        web_tls: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.web_tls = web_tls  # `config` gives web.tls_cert and web.tls_key
        self.port = free_port()
        self.imap_port = free_port() if imap else 0
        self.sasl_port = free_port() if sasl else 0
        self.pop3_port = free_port() if pop3 else 0
        self.managesieve_port = free_port() if managesieve else 0
        self.web_port = free_port() if web else 0
        self.verbose = verbose
        self.log_path = data_dir.parent / "serve.log"
        self.config_path: Path | None = None
        if config:
            self.config_path = data_dir.parent / "cryptmail.toml"
            self.config_path.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def lmtp(self) -> str:
        return f"inet:127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        share_server_key(self.data_dir)
        argv = [sys.executable, "-m", "cryptmail", "--data-dir", str(self.data_dir)]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        if self.verbose:
            argv.append("-v")
        argv += ["serve", "--lmtp", f"127.0.0.1:{self.port}"]
        if self.imap_port:
            argv += ["--imap", f"127.0.0.1:{self.imap_port}"]
        if self.sasl_port:
            argv += ["--sasl", f"127.0.0.1:{self.sasl_port}"]
        if self.pop3_port:
            argv += ["--pop3", f"127.0.0.1:{self.pop3_port}"]
        if self.managesieve_port:
            argv += ["--managesieve", f"127.0.0.1:{self.managesieve_port}"]
        if self.web_port:
            argv += ["--web", f"127.0.0.1:{self.web_port}"]
        log = open(self.log_path, "ab")  # handed to the child
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=dict(os.environ))
        log.close()
        wait_for_greeting(self.process, self.port, self.log_path, timeout)
        for port in (self.imap_port, self.sasl_port, self.pop3_port, self.managesieve_port):
            if port:
                wait_for_greeting(self.process, port, self.log_path, timeout)
        if self.web_port:
            wait_for_web(self.process, self.web_port, self.log_path, timeout, tls=self.web_tls)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def worker_pids(self) -> list[int]:
        """The LMTP worker processes running now (children of `serve`)."""
        return [pid for pid in child_pids(self.pid) if _comm(pid) == WORKER_NAME]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one LMTP worker; `serve` starts another."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def kill_all(self) -> None:
        """SIGKILL the LMTP workers mid-delivery, then `serve` (a worker left alone
        would hear of its parent's death and finish what it holds first)."""
        workers = self.worker_pids if self.process is not None else []
        for pid in workers:
            self.kill_worker(pid)
        self.kill()

    def __enter__(self) -> CryptmailServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
