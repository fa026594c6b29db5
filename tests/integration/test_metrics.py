"""`/metrics` of a real `cryptmail serve`: real LMTP deliveries (into the worker
processes, several users, in parallel), real IMAP logins and commands from one client
address, scraped over HTTP and parsed with prometheus_client's own parser; and no label
value (nor anything else in the scrape) names an address or a mailbox."""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .cryptmail_server import PASSWORD, CryptmailServer, make_users
from .servers._ports import free_port

USERS = [f"{name}@metrics-example.org" for name in ("alice", "bob", "carol")]
MAILBOXES = ["Zebra-Orchid-Quarterly", "Tax-Return-Walrus"]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class MetricsServer(CryptmailServer):
    """`serve` with LMTP, IMAP and the metrics listener on `metrics_port`."""

    def __init__(self, data_dir: Path) -> None:
        self.metrics_port = free_port()
        config = (
            # Workers forked at the start, each replaced at once when it dies.
            "[lmtp]\nprocesses = 2\nprocess_idle_s = 0\n"
            f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{self.metrics_port}"\n'
        )
        super().__init__(data_dir, config=config, imap=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsServer]:
    data_dir = tmp_path_factory.mktemp("metrics") / "data"
    make_users(data_dir, "metrics-example.org", dict.fromkeys(USERS, 2))
    running = MetricsServer(data_dir)
    try:
        running.start(timeout=120)  # a loaded machine: the test is not about speed
        yield running
    finally:
        running.stop()


def _scrape_text(server: MetricsServer) -> str:
    port = server.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return str(answer.read().decode())


def _samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _eventually(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def _deliver(port: int, index: int) -> None:
    # One recipient per transaction: smtplib reads one reply after DATA, LMTP sends one
    # per recipient. Two transactions per connection, to two users.
    with smtplib.LMTP("127.0.0.1", port) as client:
        for offset in (0, 1):
            message = f"Subject: metrics {index}\r\n\r\nbody {index}\r\n".encode()
            recipient = USERS[(index + offset) % len(USERS)]
            client.sendmail("sender@elsewhere-example.net", [recipient], message)


def _imap_session(server: MetricsServer, user: str, password: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=30)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error:
        client.logout()
        return False
    for name in MAILBOXES:
        client.create(f"{name}-{user.split('@')[0]}")
    client.list()
    client.select("INBOX")
    client.fetch("1:*", "(FLAGS)")
    client.noop()
    client.logout()
    return True


def test_deliveries_logins_and_commands_show_on_metrics(server: MetricsServer) -> None:
    before = _samples(_scrape_text(server))
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: _deliver(server.port, i), range(12)))
        # Good and bad logins side by side, all from the one client address 127.0.0.1.
        logins = list(
            pool.map(
                lambda case: _imap_session(server, *case),
                [(user, PASSWORD) for user in USERS] + [(USERS[0], "wrong password")] * 2,
            )
        )
    assert logins == [True, True, True, False, False]

    def moved(name: str, by: float, **labels: str) -> Callable[[], bool]:
        return lambda: (
            _value(_samples(_scrape_text(server)), name, **labels) - _value(before, name, **labels)
            >= by
        )

    # 12 connections with 2 messages each, delivered by the worker processes: the events
    # reach the main process's registry through the pipe.
    _eventually("24 deliveries", moved("cryptmail_deliveries_total", 24, result="delivered"))
    after = _samples(_scrape_text(server))
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    assert delta[("cryptmail_deliveries_total", (("result", "delivered"),))] == 24
    assert delta[("cryptmail_delivery_seconds_count", ())] == 24
    assert delta[("cryptmail_logins_total", (("protocol", "imap"), ("result", "ok")))] == 3
    assert delta[("cryptmail_logins_total", (("protocol", "imap"), ("result", "failed")))] == 2
    assert delta[("cryptmail_imap_connections_total", ())] == 5
    for command, count in (("LOGIN", 5), ("CREATE", 6), ("SELECT", 3), ("FETCH", 3)):
        key = ("cryptmail_imap_command_seconds_count", (("command", command),))
        assert delta[key] == count, command
    # Each message's blob is written once per user it reaches (in the workers), and the
    # first login of each user went through Argon2, in the main process.
    assert delta[("cryptmail_blob_seconds_count", (("operation", "write"),))] >= 24
    assert delta[("cryptmail_key_cache_lookups_total", (("result", "miss"),))] >= 3
    assert delta[("cryptmail_argon2_wait_seconds_count", ())] >= 3
    assert ("cryptmail_db_connections", (("state", "in_use"),)) in after
    assert ("cryptmail_argon2_load", ()) in after


def test_no_label_names_an_address_or_a_mailbox(server: MetricsServer) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: _deliver(server.port, i), range(8)))
        list(pool.map(lambda user: _imap_session(server, user, PASSWORD), USERS))
    text = _scrape_text(server)
    values = {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert values  # there are labels to look at
    markers = [*USERS, "sender@elsewhere-example.net", "metrics-example", *MAILBOXES]
    markers += [user.split("@")[0] for user in USERS] + ["INBOX", "@"]
    for marker in markers:
        assert marker.lower() not in text.lower(), marker
        assert not any(marker.lower() in value.lower() for value in values), marker


def test_a_worker_restart_is_counted(server: MetricsServer) -> None:
    def restarts() -> float:
        return _value(_samples(_scrape_text(server)), "cryptmail_worker_restarts_total")

    start = restarts()
    victim = server.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    _eventually("the restart counted", lambda: restarts() == start + 1)
    _eventually("a new worker", lambda: len(server.worker_pids) == 2)
    _deliver(server.port, 99)  # and the new worker's deliveries still show


def test_only_metrics_is_served_there(server: MetricsServer) -> None:
    port = server.metrics_port
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert caught.value.code == 404
