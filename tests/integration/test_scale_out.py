"""Scale-out: two `cryptmail serve` processes ("nodes") on one shared database
(PostgreSQL or MariaDB: every two-node test runs on both) and one S3 bucket (SeaweedFS).

Each node has its own data directory (its self-signed TLS certificate) and the same
`database.url` and `[blobs]`. The user is made with the CLI. Mail delivered over LMTP to
node A is read byte-exact over IMAP on node B; a session on B that stays SELECTed sees a
second delivery through A at its next NOOP, flags set on either node are seen on the
other, and `store check` is clean.

Cross-node events (serve/_events.py): every change writes a change-log row; PostgreSQL
nodes hear of it by LISTEN/NOTIFY, MariaDB nodes by polling the log. The IDLE tests turn
IDLE's own database poll off (`events.safety_poll_s = 0`) and, on PostgreSQL, the
feed's periodic read of the log too (`check_interval_s` of an hour), so an EXISTS on B
for a delivery through A can only have come by the notification (or poll) path. The
LISTEN connection is killed with pg_terminate_backend while mail arrives, and the node
catches up from the log without losing any. Wrong passwords on A and on B add up in one
shared bucket; a password change ends sessions on both nodes at once; node A killed
with SIGKILL while a real Postfix delivers to A-then-B loses nothing.
"""

from __future__ import annotations

import imaplib
import os
import re
import secrets
import select
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cryptmail.db import APPLICATION_NAME
from cryptmail.delivery import delivery_headers

from .conftest import PostfixFactory
from .cryptmail_server import descendant_pids, stop_process, wait_for_greeting
from .servers import Database, Postgres, SeaweedFS, free_port

pytestmark = pytest.mark.integration

EMAIL = "scaled@example.org"
PASSWORD = "scale-out password 7"  # the test user's password
WAIT_S = 30.0  # how long an event may take on a busy 2-core machine before we call it lost

# IDLE's own poll off, the watcher's too: only the change feed carries other nodes'
# changes. On PostgreSQL the feed's periodic read of the log is off as well (an hour),
# so only NOTIFY (and the catch-up after a reconnect) can.
EVENTS_ONLY = "[events]\nsafety_poll_s = 0\ncheck_interval_s = 3600\n"


def _message(n: int) -> bytes:
    return (
        f"From: Sender <s@example.net>\r\nTo: <{EMAIL}>\r\nSubject: scale-out {n}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.net>\r\n\r\nbody {n}\r\n"
        + "x" * (1000 * n)
        + "\r\n"
    ).encode()


def _readable(sock: socket.socket, timeout_s: float) -> bool:
    """Whether `sock` has data within `timeout_s`. poll, not select: a test process that
    has opened many files hands out descriptors above select()'s limit of 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


@dataclass
class Node:
    config: Path
    lmtp: int
    imap: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cryptmail", "--config", str(self.config), "serve"]
                + ["--lmtp", f"127.0.0.1:{self.lmtp}", "--imap", f"127.0.0.1:{self.imap}"],
                stdout=sink,
                stderr=sink,
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        wait_for_greeting(self.process, self.lmtp, self.log, timeout=60)
        wait_for_greeting(self.process, self.imap, self.log, timeout=60)
        # The change feed starts with the listeners; wait until it reads the log.
        _wait_for(lambda: "change feed: " in self.log.read_text(), "the change feed to start")

    def kill(self) -> None:
        """SIGKILL the node and its LMTP workers at once, as a power cut would."""
        assert self.process is not None
        for pid in [self.process.pid, *descendant_pids(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _write_config(
    node_dir: Path, database: Database, seaweedfs: SeaweedFS, bucket: str, extra: str
) -> Path:
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
        f"s3_secret_key_file = '{keys / 'secret'}'\n" + extra
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


@pytest.fixture(params=["postgresql", "mariadb"])
def database(request: pytest.FixtureRequest) -> Database:
    """A fresh database on PostgreSQL, then on MariaDB."""
    found: Database = request.getfixturevalue(
        f"{'postgres' if request.param == 'postgresql' else 'mariadb'}_database"
    )
    return found


ClusterFactory = Callable[..., tuple[Node, Node]]


@pytest.fixture
def cluster(tmp_path: Path, database: Database, seaweedfs: SeaweedFS) -> Iterator[ClusterFactory]:
    """`cluster(extra_toml)`: nodes A and B serving one database and one bucket, with
    the user made; `extra_toml` is appended to both configurations."""
    started: list[Node] = []

    def make(extra: str = "") -> tuple[Node, Node]:
        bucket = f"mail-{secrets.token_hex(6)}"
        seaweedfs.credentials.client().create_bucket(Bucket=bucket)
        configs = [
            _write_config(tmp_path / name, database, seaweedfs, bucket, extra) for name in "ab"
        ]
        _cli(configs[0], "db", "upgrade")
        _cli(configs[0], "domain", "add", "example.org")
        _cli(
            configs[1],
            "user", "add", EMAIL, "--crypt", "2", "--password-stdin",
            stdin=f"{PASSWORD}\n",
        )  # fmt: skip
        for config in configs:
            node = Node(config, free_port(), free_port(), config.parent / "serve.log")
            node.start()
            started.append(node)
        for node in started:
            node.wait_ready()
        return started[0], started[1]

    try:
        yield make
    finally:
        for node in started:
            if node.process is not None:
                stop_process(node.process)
    for node in started:
        assert PASSWORD.encode() not in node.log.read_bytes()


@pytest.fixture
def nodes(cluster: ClusterFactory) -> tuple[Node, Node]:
    """Nodes A and B with the default event settings."""
    return cluster()


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
            if left <= 0 or not _readable(self.sock, left):
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


def _idle(client: _RawImap) -> None:
    client.sock.sendall(b"i1 IDLE\r\n")
    assert client.line(WAIT_S).startswith(b"+")


def _wait_line(client: _RawImap, pattern: bytes) -> tuple[float, list[bytes]]:
    """Seconds until an untagged line matching `pattern` arrives (AssertionError if none
    within WAIT_S), and the lines read on the way."""
    wanted = re.compile(pattern)
    since = time.monotonic()
    seen = []
    while (left := since + WAIT_S - time.monotonic()) > 0:
        try:
            line = client.line(left)
        except TimeoutError:
            break
        seen.append(line)
        if wanted.fullmatch(line):
            return time.monotonic() - since, seen
    raise AssertionError(f"no {pattern!r} within {WAIT_S} s; got {seen}")


def _done(client: _RawImap) -> None:
    client.sock.sendall(b"DONE\r\n")
    while not (line := client.line(WAIT_S)).startswith(b"i1 "):
        pass
    assert line.startswith(b"i1 OK"), line


def _flags(imap: imaplib.IMAP4) -> dict[int, list[bytes]]:
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK"
    flags = {}
    for item in data:
        assert isinstance(item, bytes)
        match = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item)
        assert match is not None, item
        flags[int(match[1])] = match[2].split()
    return flags


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
        assert session_a.select("INBOX")[0] == "OK"
        flags = _flags(session_a)
        assert b"\\Flagged" in flags[1] and b"\\Flagged" not in flags[2]
        assert _body(session_a, 2) == _stored(second)
        # And one set on A is seen by a fresh session on B.
        assert session_a.uid("STORE", "2", "+FLAGS", r"(\Answered)")[0] == "OK"
    finally:
        session_a.logout()

    session_b = _login(node_b)
    try:
        assert session_b.select("INBOX", readonly=True)[0] == "OK"
        flags = _flags(session_b)
        assert b"\\Answered" in flags[2] and b"\\Flagged" in flags[1]
    finally:
        session_b.logout()

    check = subprocess.run(
        [sys.executable, "-m", "cryptmail", "--config", str(node_b.config), "store", "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "rows: 2" in check.stdout and "blobs: 2" in check.stdout


def test_idle_on_b_hears_of_changes_through_a(cluster: ClusterFactory, database: Database) -> None:
    """With IDLE's own poll off, IDLE on B sees deliveries and a flag change made through
    A: pushed by NOTIFY (PostgreSQL) or the node's poll of the change log (MariaDB)."""
    node_a, node_b = cluster(EVENTS_ONLY)
    mode = "notify" if database.dialect == "postgresql" else "poll"
    assert f"change feed: {mode}" in node_b.log.read_text()
    _deliver(node_a, _message(1))
    client = _RawImap(node_b.imap)
    latencies = []
    try:
        client.command("l1", f'LOGIN "{EMAIL}" "{PASSWORD}"')
        assert b"* 1 EXISTS" in client.command("s1", "SELECT INBOX")
        for count in (2, 3, 4, 5, 6):
            _idle(client)
            _deliver(node_a, _message(count))
            latency, _ = _wait_line(client, rb"\* %d EXISTS" % count)
            latencies.append(latency)
            _done(client)
        # A flag stored on A reaches the IDLE session on B as a FETCH.
        _idle(client)
        session_a = _login(node_a)
        try:
            assert session_a.select("INBOX")[0] == "OK"
            assert session_a.uid("STORE", "1", "+FLAGS", r"(\Flagged)")[0] == "OK"
        finally:
            session_a.logout()
        _wait_line(client, rb"\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged[^)]*\).*")
        _done(client)
        client.command("o1", "LOGOUT")
    finally:
        client.close()
    latencies.sort()
    print(f"IDLE on B, delivery via A ({mode}): latencies {[f'{x:.3f}' for x in latencies]} s")


def test_a_killed_listen_connection_catches_up(
    cluster: ClusterFactory, database: Database, request: pytest.FixtureRequest
) -> None:
    """pg_terminate_backend on the nodes' LISTEN connections, then three deliveries
    through A while B is deaf (it waits `reconnect_ms` before it reconnects): B
    reconnects, reads the log from the last id it saw, and IDLE on B gets all three."""
    if database.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; MariaDB nodes poll the log anyway")
    postgres: Postgres = request.getfixturevalue("postgres")
    node_a, node_b = cluster(EVENTS_ONLY + "reconnect_ms = 5000\n")
    _deliver(node_a, _message(1))
    client = _RawImap(node_b.imap)
    try:
        client.command("l1", f'LOGIN "{EMAIL}" "{PASSWORD}"')
        assert b"* 1 EXISTS" in client.command("s1", "SELECT INBOX")
        _idle(client)
        where = f"application_name = '{APPLICATION_NAME}' AND datname = '{database.name}'"
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
        killed = postgres.psql(terminate + where).split()
        assert killed == ["t", "t"], killed  # one LISTEN connection per node
        _wait_for(lambda: "LISTEN connection was lost" in node_b.log.read_text(), "B to notice")
        for count in (2, 3, 4):
            _deliver(node_a, _message(count))
        _wait_line(client, rb"\* 4 EXISTS")
        _done(client)
        client.command("o1", "LOGOUT")
    finally:
        client.close()
    log = node_b.log.read_text()
    caught = [int(n) for n in re.findall(r"listening again \(backend \d+\); caught up (\d+)", log)]
    assert caught and caught[0] >= 1, log[-3000:]
    session = _login(node_b)
    try:
        assert session.select("INBOX", readonly=True) == ("OK", [b"4"])
    finally:
        session.logout()


def test_wrong_passwords_on_both_nodes_fill_one_bucket(cluster: ClusterFactory) -> None:
    """Three wrong passwords on A and two on B empty the address's bucket (burst 5):
    then even the right password is refused on both nodes, which a per-node throttle
    (five more on B) would have let through."""
    node_a, node_b = cluster("[auth]\naddress_refill_s = 3600\n")
    for node, wrong in ((node_a, 3), (node_b, 2)):
        for _ in range(wrong):
            imap = imaplib.IMAP4("127.0.0.1", node.imap)
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                imap.login(EMAIL, "not the password")
            imap.logout()
    for node in (node_b, node_a):
        imap = imaplib.IMAP4("127.0.0.1", node.imap)
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            imap.login(EMAIL, PASSWORD)
        imap.logout()


def test_a_password_change_ends_the_sessions_on_every_node(cluster: ClusterFactory) -> None:
    """The password changed with the CLI on A's configuration (a third process): with
    the credential watcher's poll off, only the change log's CREDENTIALS row can end
    alice's sessions on both nodes (IDLE on A, SELECTed on B): BYE [UNAVAILABLE] within
    5 s, then the connection closes."""
    node_a, node_b = cluster(EVENTS_ONLY)
    clients = [_RawImap(node_a.imap), _RawImap(node_b.imap)]
    try:
        for n, client in enumerate(clients):
            client.command(f"l{n}", f'LOGIN "{EMAIL}" "{PASSWORD}"')
            client.command(f"s{n}", "SELECT INBOX")
        _idle(clients[0])
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


def _kill_message(index: int) -> bytes:
    return (
        f"From: s@example.net\r\nTo: {EMAIL}\r\nSubject: kill {index}\r\n"
        f"Message-ID: <kill-{index}@example.net>\r\n\r\n" + f"line {index}\r\n" * 200
    ).encode()


def test_node_killed_mid_delivery_loses_nothing(
    cluster: ClusterFactory, postfix_factory: PostfixFactory
) -> None:
    """A real Postfix delivers to A, falling back to B (a next-hop list); A and its LMTP
    workers are SIGKILLed while mail streams in. Postfix retries what A did not answer
    on B; every message is then in the store exactly once, whole."""
    node_a, node_b = cluster()
    postfix = postfix_factory(
        domains=["example.org"],
        lmtp=f"[127.0.0.1]:{node_a.lmtp}, [127.0.0.1]:{node_b.lmtp}",
    )
    count = 40
    for index in range(count):
        postfix.send(_kill_message(index), "s@example.net", [EMAIL], via="smtp")
        if index == count // 3:
            # Some delivered by A, more in flight: pull the plug.
            _wait_for(lambda: "status=sent" in postfix.log_path.read_text(), "a first delivery")
            node_a.kill()
    postfix.flush()
    postfix.wait_queue_empty(timeout=180)
    session = _login(node_b)
    try:
        typ, data = session.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = session.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
    finally:
        session.logout()
    ids: Counter[int] = Counter()
    for item in data:
        if not isinstance(item, tuple):
            continue
        found = re.search(rb"Message-ID: <kill-(\d+)@example.net>", item[1])
        assert found, "a stored message has no Message-ID: corrupt"
        index = int(found[1])
        assert item[1].endswith(_kill_message(index).split(b"\r\n\r\n", 1)[1]), index
        ids[index] += 1
    sent_by = Counter(
        re.findall(
            r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:(\d+).*status=sent", postfix.log_path.read_text()
        )
    )
    print(f"\nkill A mid-delivery: delivered per LMTP port {dict(sent_by)}")
    assert sorted(ids) == list(range(count)), f"lost: {sorted(set(range(count)) - set(ids))}"
    assert not [i for i, n in ids.items() if n > 1], f"duplicated: {ids}"
    assert str(node_b.lmtp) in sent_by, "B took none of the mail: the kill came too late"
