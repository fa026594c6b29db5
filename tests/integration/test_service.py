"""`cryptmail serve` as systemd runs it (`Type=notify`, `WatchdogSec=`, `ExecReload=`
kill -HUP): a real Unix datagram socket as $NOTIFY_SOCKET hears READY=1, the watchdog
pings and STOPPING=1; after SIGHUP, a real TLS client gets the renewed certificate
while a session opened before goes on with the old one."""

from __future__ import annotations

import imaplib
import queue
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tls_certs import write_certificate

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

USER = "alice@service-example.org"


@dataclass
class Rig:
    server: CryptmailServer
    heard: queue.Queue[list[str]]
    cert: Path
    key: Path

    def wait_for(self, field: str) -> list[str]:
        """Datagrams until one holds `field` (watchdog pings come in between)."""
        while True:
            got = self.heard.get(timeout=60)
            if field in got:
                return got


def _listen(sock: socket.socket, heard: queue.Queue[list[str]]) -> None:
    """Read every datagram as systemd does (an unread queue would drop messages)."""
    while True:
        try:
            heard.put(sock.recv(4096).decode().split("\n"))
        except OSError:
            return


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "service-example.org", {USER: 2})
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    write_certificate(cert, key, "before-renewal.example")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    heard: queue.Queue[list[str]] = queue.Queue()
    threading.Thread(target=_listen, args=(notify, heard), daemon=True).start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every half second
    config = f'[imap]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    server = CryptmailServer(data_dir, config=config, imap=True)
    try:
        server.start(timeout=120)  # a loaded machine: the test is not about speed
        yield Rig(server, heard, cert, key)
    finally:
        server.stop()
        notify.shutdown(socket.SHUT_RDWR)
        notify.close()


def _tls_client(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test compares the certificate itself
    client.starttls(context)
    return client


def _peer_certificate(client: imaplib.IMAP4) -> bytes:
    sock = client.sock
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_ready_watchdog_and_stopping_reach_the_notify_socket(rig: Rig) -> None:
    ready = rig.wait_for("READY=1")
    status = [field for field in ready if field.startswith("STATUS=")]
    assert status and "IMAP" in status[0] and "LMTP" in status[0]
    assert rig.wait_for("WATCHDOG=1") == ["WATCHDOG=1"]
    assert rig.wait_for("WATCHDOG=1") == ["WATCHDOG=1"]  # and again: it keeps pinging
    rig.server.stop()
    assert "STOPPING=1" in rig.wait_for("STOPPING=1")


def test_sighup_serves_the_renewed_certificate_to_new_sessions(rig: Rig) -> None:
    rig.wait_for("READY=1")
    before = _tls_client(rig.server.imap_port)
    before.login(USER, PASSWORD)
    old_der = _peer_certificate(before)

    new_der = write_certificate(rig.cert, rig.key, "after-renewal.example")
    assert new_der != old_der
    rig.server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert "RELOADING=1" in rig.wait_for("RELOADING=1")
    assert "READY=1" in rig.wait_for("READY=1")

    after = _tls_client(rig.server.imap_port)
    assert _peer_certificate(after) == new_der
    after.login(USER, PASSWORD)
    # The session from before the reload goes on, on its old certificate.
    assert before.select("INBOX")[0] == "OK"
    assert before.noop()[0] == "OK"
    assert _peer_certificate(before) == old_der
    for client in (before, after):
        client.logout()


def test_a_broken_renewal_keeps_the_old_certificate(rig: Rig) -> None:
    rig.wait_for("READY=1")
    good = _peer_certificate(_tls_client(rig.server.imap_port))
    rig.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    rig.server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    rig.wait_for("READY=1")  # still up, and says so
    client = _tls_client(rig.server.imap_port)
    assert _peer_certificate(client) == good
    client.login(USER, PASSWORD)
    client.logout()
    log = rig.server.log_path.read_text()
    assert "the previous certificate stays in use" in log


def test_sighup_renews_the_web_listeners_own_certificate(tmp_path: Path) -> None:
    """web.tls_cert is the web's own file: SIGHUP loads it again too, and a broken one
    keeps the old certificate and the IMAP reload still happens."""
    data_dir = tmp_path / "data"
    make_users(data_dir, "service-example.org", {USER: 2})
    cert, key = tmp_path / "web.pem", tmp_path / "web.key"
    write_certificate(cert, key, "web-before.example")
    config = f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    server = CryptmailServer(data_dir, config=config, web=True, web_tls=True)
    try:
        server.start(timeout=120)
        before = _web_certificate(server.web_port)
        renewed = write_certificate(cert, key, "web-after.example")
        assert renewed != before
        server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        _until(lambda: _web_certificate(server.web_port) == renewed)
        key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        _until(lambda: "web listener: TLS certificate" in server.log_path.read_text())
        assert _web_certificate(server.web_port) == renewed
    finally:
        server.stop()


def _web_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test compares the certificate itself
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw) as sock:
            der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the reload did not show within the time allowed")
        time.sleep(0.1)


def test_the_self_signed_fingerprint_is_logged_once(tmp_path: Path) -> None:
    """IMAP and POP3 share one TLS context: one certificate, one fingerprint line."""
    data_dir = tmp_path / "data"
    make_users(data_dir, "service-example.org", {USER: 2})
    server = CryptmailServer(data_dir, config='hostname = "mail.service-example.org"\n',
                             imap=True, pop3=True)  # fmt: skip
    try:
        server.start(timeout=120)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert log.count("self-signed certificate SHA-256 fingerprint") == 1, log
