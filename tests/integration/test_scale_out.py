"""Scale-out: two `cryptmail serve` processes ("nodes") on one PostgreSQL database and one
S3 bucket (SeaweedFS).

Each node has its own data directory (its self-signed TLS certificate) and the same
`database.url` and `[blobs]`. The user is made with the CLI. Mail delivered over LMTP to
node A is read byte-exact over IMAP on node B; a session on B that stays SELECTed sees a
second delivery through A at its next NOOP (the selected-mailbox refresh reads the
database), a flag set on B is seen by a fresh session on A, and `store check` is clean.

IDLE across nodes: the ChangeBus that wakes IDLE at once only reaches sessions of the
same process. An IDLE session on B still learns of a delivery on A, because IDLE also
polls the mailbox's highest modseq every `POLL_S` (2 s): the EXISTS for a delivery on A
comes at that poll (about 2 s here; asserted within the interval plus slack for a busy
machine), while one for a delivery on B comes at once. Nothing pushes across nodes; the
poll is what carries it. The login throttle and the unlocked-account cache are per node
too (docs/configuration.md, "Scale-out").
"""

from __future__ import annotations

import imaplib
import os
import re
import secrets
import select
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryptmail.delivery import delivery_headers
from cryptmail.imap.server.commands._idle import POLL_S

from .cryptmail_server import stop_process, wait_for_greeting
from .servers import Database, SeaweedFS, free_port

pytestmark = pytest.mark.integration

EMAIL = "scaled@example.org"
PASSWORD = "scale-out password 7"  # the test user's password
IDLE_WAIT_S = POLL_S + 8.0  # the poll interval plus slack for a busy 2-core machine


def _message(n: int) -> bytes:
    return (
        f"From: Sender <s@example.net>\r\nTo: <{EMAIL}>\r\nSubject: scale-out {n}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.net>\r\n\r\nbody {n}\r\n"
        + "x" * (1000 * n)
        + "\r\n"
    ).encode()


@dataclass(frozen=True)
class Node:
    config: Path
    lmtp: int
    imap: int
    log: Path


def _write_config(node_dir: Path, database: Database, seaweedfs: SeaweedFS, bucket: str) -> Path:
    keys = node_dir / "keys"
    keys.mkdir(parents=True)
    (keys / "access").write_text(seaweedfs.credentials.access_key + "\n")
    (keys / "secret").write_text(seaweedfs.credentials.secret_key + "\n")
    os.chmod(keys / "secret", 0o600)
    path = node_dir / "cryptmail.toml"
    path.write_text(
        f"data_dir = '{node_dir / 'data'}'\n"
        # Every node needs the same server key (docs/configuration.md, "Scale-out").
        f"server_key_file = '{node_dir.parent / 'server.key'}'\n"
        "[crypto.argon2]\nmemory_kib = 19456\n"
        f"[database]\nurl = '{database.url}'\n"
        "[blobs]\nbackend = 's3'\n"
        f"s3_endpoint = '{seaweedfs.credentials.endpoint}'\ns3_bucket = '{bucket}'\n"
        f"s3_access_key_file = '{keys / 'access'}'\n"
        f"s3_secret_key_file = '{keys / 'secret'}'\n"
    )
    os.chmod(path, 0o600)  # it holds the database password
    return path


def _cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture
def nodes(
    tmp_path: Path, postgres_database: Database, seaweedfs: SeaweedFS
) -> Iterator[tuple[Node, Node]]:
    """Nodes A and B serving one PostgreSQL database and one bucket, with the user made."""
    bucket = f"mail-{secrets.token_hex(6)}"
    seaweedfs.credentials.client().create_bucket(Bucket=bucket)
    configs = [
        _write_config(tmp_path / name, postgres_database, seaweedfs, bucket) for name in "ab"
    ]
    _cli(configs[0], "db", "upgrade")
    _cli(configs[0], "domain", "add", "example.org")
    _cli(
        configs[1], "user", "add", EMAIL, "--crypt", "2", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = []
        for config in configs:
            node = Node(config, free_port(), free_port(), config.parent / "serve.log")
            with node.log.open("wb") as sink:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "cryptmail", "--config", str(config), "serve"]
                        + ["--lmtp", f"127.0.0.1:{node.lmtp}", "--imap", f"127.0.0.1:{node.imap}"],
                        stdout=sink,
                        stderr=sink,
                    )
                )
            started.append(node)
        for process, node in zip(processes, started, strict=True):
            wait_for_greeting(process, node.lmtp, node.log, timeout=60)
            wait_for_greeting(process, node.imap, node.log, timeout=60)
        yield started[0], started[1]
    finally:
        for process in processes:
            stop_process(process)
    for config in configs:
        assert PASSWORD.encode() not in (config.parent / "serve.log").read_bytes()


def _stored(message: bytes) -> bytes:
    """The copy `_deliver` stores: the trace lines of final delivery, then the message."""
    return delivery_headers("s@example.net", EMAIL) + message


def _deliver(node: Node, message: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", node.lmtp) as client:
        client.sendmail("s@example.net", [EMAIL], message)


def _login(node: Node) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", node.imap)
    assert imap.login(EMAIL, PASSWORD)[0] == "OK"
    return imap


def _body(imap: imaplib.IMAP4, uid: int) -> bytes:
    typ, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK"
    body: bytes = next(item[1] for item in data if isinstance(item, tuple))
    return body


class _RawImap:
    """Just enough IMAP on a socket to IDLE and wait for an untagged line with a deadline."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        assert self.line(30.0).startswith(b"* OK")

    def line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError(f"no line within {timeout} s")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def command(self, tag: str, text: str) -> list[bytes]:
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        lines = []
        while not (line := self.line(60.0)).startswith(tag.encode() + b" "):
            lines.append(line)
        assert line.startswith(tag.encode() + b" OK"), line
        return lines

    def close(self) -> None:
        self.sock.close()


def _idle_until_exists(client: _RawImap, count: int, deliver: Node) -> float | None:
    """IDLE, deliver one message through `deliver`, and return the seconds until
    `* count EXISTS` arrives (None if it did not within IDLE_WAIT_S); then DONE."""
    client.sock.sendall(b"i1 IDLE\r\n")
    assert client.line(30.0).startswith(b"+")
    _deliver(deliver, _message(count))
    delivered = time.monotonic()
    latency = None
    wanted = re.compile(rb"\* %d EXISTS" % count)
    try:
        while (left := delivered + IDLE_WAIT_S - time.monotonic()) > 0:
            if wanted.fullmatch(client.line(left)):
                latency = time.monotonic() - delivered
                break
    except TimeoutError:
        pass
    client.sock.sendall(b"DONE\r\n")
    while not (line := client.line(30.0)).startswith(b"i1 "):
        if latency is None and wanted.fullmatch(line):
            latency = IDLE_WAIT_S  # only flushed when IDLE ended
    assert line.startswith(b"i1 OK"), line
    return latency


def test_two_nodes_share_database_and_bucket(
    nodes: tuple[Node, Node], seaweedfs: SeaweedFS
) -> None:
    node_a, node_b = nodes
    first, second = _message(1), _message(2)
    _deliver(node_a, first)

    session_b = _login(node_b)
    try:
        typ, data = session_b.select("INBOX")
        assert (typ, data) == ("OK", [b"1"])
        assert _body(session_b, 1) == _stored(first)

        # B stays SELECTed; a delivery through A shows up at B's next NOOP.
        session_b.response("EXISTS")  # imaplib keeps SELECT's; drop it
        _deliver(node_a, second)
        assert session_b.noop()[0] == "OK"
        assert session_b.response("EXISTS") == ("EXISTS", [b"2"])
        assert _body(session_b, 2) == _stored(second)

        # A flag set on B is seen by a fresh session on A.
        typ, _ = session_b.uid("STORE", "1", "+FLAGS", r"(\Flagged)")
        assert typ == "OK"
    finally:
        session_b.logout()

    session_a = _login(node_a)
    try:
        assert session_a.select("INBOX", readonly=True)[0] == "OK"
        typ, data = session_a.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        flags = {}
        for item in data:
            assert isinstance(item, bytes)
            match = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item)
            assert match is not None, item
            flags[int(match[1])] = match[2].split()
        assert b"\\Flagged" in flags[1] and b"\\Flagged" not in flags[2]
        assert _body(session_a, 2) == _stored(second)
    finally:
        session_a.logout()

    check = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--config", str(node_b.config), "store", "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "rows: 2" in check.stdout and "blobs: 2" in check.stdout


def test_idle_push_is_per_node_and_other_nodes_are_polled(nodes: tuple[Node, Node]) -> None:
    """IDLE on B sees a delivery through B at once (the in-process ChangeBus) and one
    through A only at IDLE's next poll of the database, within POLL_S (plus slack)."""
    node_a, node_b = nodes
    _deliver(node_a, _message(1))
    client = _RawImap(node_b.imap)
    try:
        client.command("l1", f'LOGIN "{EMAIL}" "{PASSWORD}"')
        assert b"* 1 EXISTS" in client.command("s1", "SELECT INBOX")

        same_node = _idle_until_exists(client, 2, deliver=node_b)
        other_node = _idle_until_exists(client, 3, deliver=node_a)
        print(f"IDLE on B: delivery via B seen after {same_node} s, via A after {other_node} s")
        assert same_node is not None and same_node < POLL_S  # pushed, not polled
        assert other_node is not None and other_node < IDLE_WAIT_S, (
            f"IDLE on B saw no EXISTS for a delivery through A within {IDLE_WAIT_S} s"
        )
        client.command("o1", "LOGOUT")
    finally:
        client.close()


def test_a_password_change_ends_the_sessions_on_every_node(nodes: tuple[Node, Node]) -> None:
    """The password changed with the CLI (a third process): each node's credential
    watcher polls the shared database, and alice's sessions on both nodes (IDLE on A,
    SELECTed on B) get BYE [UNAVAILABLE] within 5 s, then the connection closes."""
    node_a, node_b = nodes
    clients = [_RawImap(node_a.imap), _RawImap(node_b.imap)]
    try:
        for n, client in enumerate(clients):
            client.command(f"l{n}", f'LOGIN "{EMAIL}" "{PASSWORD}"')
            client.command(f"s{n}", "SELECT INBOX")
        clients[0].sock.sendall(b"i1 IDLE\r\n")
        assert clients[0].line(30.0).startswith(b"+")
        _cli(
            node_a.config,
            "user",
            "passwd",
            EMAIL,
            "--password-stdin",
            stdin=f"{PASSWORD}\nscale-out password 8\n",
        )
        since = time.monotonic()
        for client in clients:
            line = client.line(15.0)
            waited = time.monotonic() - since
            assert line.startswith(b"* BYE [UNAVAILABLE] Credentials changed"), line
            assert waited < 5.0, f"BYE after {waited:.1f} s"
            with pytest.raises(ConnectionError):
                client.line(5.0)
    finally:
        for client in clients:
            client.close()
