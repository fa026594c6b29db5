"""What the benches share: test messages, the servers they measure, and /proc readings.

`cryptmail_server` runs `cryptmail serve` on a data directory made by `make_users`;
`dovecot_server` runs Debian's Dovecot 2.3 through the integration runner
(`tests/integration/servers/dovecot.py`), with or without mail-crypt (secp521r1 per-user
keys locked by the userdb field `mail_crypt_private_password`, as in the ISPmail guide).
CRYPTMAIL_BENCH_PROFILE=out.prof runs the cryptmail server under cProfile.
`wait_until_indexed` reads a served data directory as its users (their password) to tell
when the server's background work on their mail is done.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.db import tables as t
from cryptmail.keys import (
    UnlockedAccount,
    create_user,
    install_server_key,
    load_server_key,
    unlock_account,
)
from cryptmail.secret import Password
from cryptmail.store import ensure_default_mailboxes
from cryptmail.store.fulltext import UserIndex, user_blobs
from cryptmail.users import add_domain, get_user

TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
PROFILE_ENV = "CRYPTMAIL_BENCH_PROFILE"
PASSWORD = "bench password 1"
DOVECOT_USER = "bench@example.org"
DOVECOT_LOGIN = "bench-login-1"
DOVECOT_PASSWORD = "bench-key-password-1"
UVLOOP_SITECUSTOMIZE = """import asyncio, uvloop
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
"""
BENCH_CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))


def message(size: int, index: int) -> bytes:
    """A multipart MIME message of about `size` bytes with a base64 attachment."""
    payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        (
            b"From: bench@example.net\r\nTo: user@example.org\r\nSubject: bench\r\n"
            b"Message-ID: <b%d@example.net>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            % index
        )
        + payload
        + b"--b--\r\n"
    )


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """CPU time of a live process, user and system, to the nanosecond: the sum over its
    threads of /proc/<pid>/task/<tid>/schedstat. /proc/<pid>/stat counts in ticks of
    10 ms, a tenth of what 40 deliveries of 200 KB cost."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


def tree_cpu_s(root: int) -> float:
    """CPU of `root`, its live descendants, and the children it has reaped."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0.0
    for pid in tree:
        try:
            total += cpu_s(pid)
            if pid == root:  # reaped children are counted in ticks only
                fields = _stat(pid)
                total += (int(fields[13]) + int(fields[14])) / TICKS
        except OSError:
            continue
    return total


def hwm_mib(pid: int) -> float:
    """Peak resident memory of one process (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_hwm_mib(root: int) -> float:
    """Peak resident memory of `root` and its live descendants, added up (an upper
    bound of the tree's peak: each process peaks at its own moment)."""
    total = 0.0
    for pid in tree_pids(root):
        try:
            total += hwm_mib(pid)
        except OSError:
            continue
    return total


def tree_pids(root: int) -> list[int]:
    """`root` and its live descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.append(pid)
                frontier.append(pid)
    return tree


def lmtp_deliver(port: int, rcpt: str, messages: list[bytes]) -> None:
    """Deliver `messages` to `rcpt` over one LMTP connection on loopback, as Postfix's
    LMTP client does with a server that announces PIPELINING (RFC 2920; RFC 2033
    requires it of every LMTP server): MAIL, RCPT and DATA go in one write and their
    three replies are read after it, then the message, then its reply. Two round trips a
    message; sending each command on its own made four, and the waits between them
    (this client's threads scheduled on a loaded machine) were measured as the server's.

    A fraction of smtplib's CPU: smtplib rewrites every line end and dot-stuffs with
    regular expressions, 1.5 ms of client CPU per 200 KB message, which at these rates
    took a quarter of a core from whichever server was measured. The messages must have
    CRLF line ends already (`message` makes them so); they are only dot-stuffed here.
    """
    envelope = b"MAIL FROM:<bench@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt.encode()
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as replies:
        _expect(replies, b"2")
        sock.sendall(b"LHLO bench.example.net\r\n")
        _expect(replies, b"2")
        for data in messages:
            sock.sendall(envelope)
            for reply in (b"2", b"2", b"3"):
                _expect(replies, reply)
            stuffed = (b"." if data.startswith(b".") else b"") + data.replace(b"\r\n.", b"\r\n..")
            ending = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
            sock.sendall(stuffed + ending)
            _expect(replies, b"2")
        sock.sendall(b"QUIT\r\n")


def _expect(replies: BinaryIO, first: bytes) -> None:
    """Read one (possibly multi-line) reply; RuntimeError unless it starts with `first`."""
    while True:
        line = replies.readline()
        if not line.startswith(first):
            raise RuntimeError(f"LMTP server replied {line!r}")
        if line[3:4] != b"-":
            return


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _make_users(data_dir: Path, users: Mapping[str, int], crypto: CryptoConfig) -> None:
    # The key rows are sealed under the server key the served process reads.
    install_server_key(load_server_key(data_dir / "server.key"))
    engine = create_engine(f"sqlite:///{data_dir / 'cryptmail.db'}")
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    for email, crypt in users.items():
        await create_user(engine, email, Password.from_str(PASSWORD), crypto, crypt=crypt)
        async with engine.begin() as conn:
            await ensure_default_mailboxes(conn, (await get_user(conn, email)).id)
    await engine.dispose()


def make_users(
    data_dir: Path, users: Mapping[str, int], crypto: CryptoConfig = BENCH_CRYPTO
) -> None:
    """A fresh SQLite data dir with `users` (address: crypt level), password PASSWORD,
    their key slots made with `crypto` (default: Argon2id at 19 MiB, quick to make)."""
    asyncio.run(_make_users(data_dir, users, crypto))


async def _left_to_do(engine: Any, account: UnlockedAccount, index: UserIndex) -> int:
    """Messages of the user not yet in the full-text index, plus those without a message
    cache (what a session's first read of a message writes)."""
    await index.refresh()
    blobs = await user_blobs(engine, account.user.id)
    m, b = t.cm_messages, t.cm_mailboxes
    uncached = (
        select(func.count())
        .select_from(m.join(b, m.c.mailbox_id == b.c.id))
        .where(b.c.user_id == account.user.id, m.c.cache_sealed.is_(None))
    )
    async with engine.connect() as conn:
        without_cache = int((await conn.execute(uncached)).scalar_one())
    return len(set(blobs) - index.indexed) + without_cache


async def _wait_until_indexed(
    data_dir: Path, addresses: Sequence[str], timeout_s: float, poll_s: float
) -> dict[str, int]:
    install_server_key(load_server_key(data_dir / "server.key"))
    engine = create_engine(f"sqlite:///{data_dir / 'cryptmail.db'}")
    try:
        watched = []
        for address in addresses:
            account, _slot = await unlock_account(
                engine, address, Password.from_str(PASSWORD), BENCH_CRYPTO
            )
            watched.append((account, UserIndex(engine, account)))
        deadline = time.monotonic() + timeout_s
        first: dict[str, int] | None = None
        while True:
            left = {
                account.user.email: await _left_to_do(engine, account, index)
                for account, index in watched
            }
            first = left if first is None else first
            if not any(left.values()):
                return first
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server's indexing did not finish in {timeout_s} s: {left}")
            await asyncio.sleep(poll_s)
    finally:
        await engine.dispose()


def wait_until_indexed(
    data_dir: Path, addresses: Sequence[str], *, timeout_s: float = 900.0, poll_s: float = 0.25
) -> dict[str, int]:
    """Return once every message of each of `addresses` (users of `make_users`, at the
    served `data_dir`) is in the user's full-text index and has its message cache.

    The server does that work while a session of the user is open (the index in a
    background pass, the cache at a message's first read): keep one open meanwhile.
    It reads the database as the user would (their password unlocks their keys); the
    index lists which messages it holds only sealed, so nothing outside can count them.
    Returns what was left to do per address at the first look.
    """
    return asyncio.run(_wait_until_indexed(data_dir, addresses, timeout_s, poll_s))


def _compile_package() -> None:
    """Write the bytecode of every cryptmail module the server may import, as a
    `pip install` does: from an editable install under PYTHONDONTWRITEBYTECODE there is
    none, and each LMTP worker starting on demand then compiled the package again (CPU
    in the delivery rows, and its leftovers in a worker's memory). Quick when current."""
    import compileall

    import cryptmail

    compileall.compile_dir(Path(cryptmail.__file__).parent, quiet=1, workers=0)


@contextmanager
def cryptmail_server(
    data_dir: Path, *listeners: str, config: Path | None = None, uvloop: bool = False
) -> Iterator[tuple[int, dict[str, int]]]:
    """`cryptmail serve` with each listener ("lmtp", "imap") on a free loopback port,
    and the TOML file `config` if one is given; on uvloop's event loop with `uvloop`
    (a `sitecustomize` beside the data dir sets its policy before serve starts).

    Yields the server's pid and the port of each listener, once every port answers.
    """
    ports = {name: free_port() for name in listeners}
    _compile_package()
    env = dict(os.environ)
    if uvloop:
        site = data_dir.parent / "uvloop-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(UVLOOP_SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(site), env.get("PYTHONPATH"))))
    profile = os.environ.get(PROFILE_ENV)
    runner = ["-m", "cProfile", "-o", profile] if profile else []
    flags = [arg for name, port in ports.items() for arg in (f"--{name}", f"127.0.0.1:{port}")]
    options = ["--config", str(config)] if config else []
    # The server's log goes beside its data dir: a crash mid-run is then explained there.
    log = open(data_dir.parent / "serve.log", "ab")
    server = subprocess.Popen(
        [sys.executable, *runner, "-m", "cryptmail", "--data-dir", str(data_dir), *options]
        + ["serve", *flags],
        stderr=log,
        env=env,
    )
    log.close()
    try:
        for port in ports.values():
            for _ in range(400):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        yield server.pid, ports
    finally:
        died = server.poll() is not None
        server.terminate()
        server.wait(60)
        if died:  # the data dir goes with the bench's temporary directory: show why now
            tail = (data_dir.parent / "serve.log").read_text(errors="replace")[-4000:]
            print(f"cryptmail serve exited with {server.returncode}:\n{tail}", file=sys.stderr)


def _dovecot_runner() -> tuple[Any, Any]:
    """The integration runner's Dovecot and DovecotUser, imported from the tests tree."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.integration.servers.dovecot import Dovecot, DovecotUser
    finally:
        sys.path.remove(str(ROOT))
    return Dovecot, DovecotUser


def dovecot_available() -> bool:
    return Path("/usr/sbin/dovecot").exists()


@contextmanager
def dovecot_server(
    mail_crypt: bool,
    *,
    lmtp: bool = False,
    imap: bool = False,
    users: Sequence[str] = (DOVECOT_USER,),
    sieve: tuple[Path, Path] | None = None,
) -> Iterator[Any]:
    """Dovecot with `users` (default: DOVECOT_USER), each with the password
    DOVECOT_LOGIN, started and stopped.

    With mail-crypt each user's key pair is generated before the server is yielded.
    `sieve` (the users' script, the global after-script) runs Pigeonhole at LMTP
    delivery; both are compiled with sievec first, as an admin would, so that delivery
    (as the unprivileged mail user) reads the binaries instead of compiling each time.
    """
    dovecot_class, user_class = _dovecot_runner()
    fields = {"mail_crypt_private_password": DOVECOT_PASSWORD} if mail_crypt else {}
    settings = (
        {
            "mail_crypt_curve": "secp521r1",
            "mail_crypt_save_version": "2",
            "mail_crypt_require_encrypted_user_key": "yes",
        }
        if mail_crypt
        else {}
    )
    extra = ""
    if sieve is not None:
        for script in sieve:
            subprocess.run(["sievec", str(script)], check=True, capture_output=True)
        settings |= {"sieve": str(sieve[0]), "sieve_after": str(sieve[1])}
        # Autocreate: ISPmail's Junk exists already; a fresh bench user has none.
        extra = (
            "lda_mailbox_autocreate = yes\n"
            "protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}\n"
        )
    server = dovecot_class(
        users=[user_class(name, DOVECOT_LOGIN, fields) for name in users],
        mail_plugins=["mail_crypt"] if mail_crypt else [],
        plugin_settings=settings,
        extra_config=extra,
        lmtp=lmtp,
        imap=imap,
    )
    server.start()
    try:
        if mail_crypt:
            for name in users:
                server.doveadm("mailbox", "cryptokey", "generate", "-u", name, "-U")
        yield server
    finally:
        server.stop()


def check_dovecot_sealed(
    server: Any, mail_crypt: bool, mailbox: str = "INBOX", user: str = DOVECOT_USER
) -> None:
    """Refuse numbers from a Dovecot that did not store mail the way it was asked to."""
    stored = next(iter(server.maildir(user, mailbox).glob("*/*,S=*")))
    sealed = stored.read_bytes().startswith(b"CRYPTED")
    if sealed != mail_crypt:
        raise RuntimeError(f"Dovecot stored {stored.name} sealed={sealed}, want {mail_crypt}")
