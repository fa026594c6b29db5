"""LMTP delivery of a realistic mix: many users, several recipients per message, MIME
with attachments; every stored copy checked by SHA-256 afterwards.

    python bench/mix.py [--quick] [--no-dovecot] [--users N] [--max-recipients N]

The mix of issue 17's outside run: `--users` users (default 40) on each server; each
LMTP transaction names 1 to `--max-recipients` (default 8) of them, chosen at random
(the same choices for every server: one seed); two message sets, multipart/alternative
of about 4 KB (text and HTML) and multipart/mixed of about 200 KB (a short text and a
base64 PDF-like attachment), each delivered over 1 and over 8 connections. Rows give
stored copies per second (a message to five users is five copies, as the servers do
five deliveries) and the ratios: cryptmail crypt 2 over crypt 0 and over Dovecot 2.3
with mail-crypt (secp521r1, as the ISPmail guide sets it up), plus Dovecot without the
plugin. The goal (issue 17): crypt 2 at least 2x Dovecot mail-crypt in every row.

The servers take turns: each set is delivered in five parts that go round the servers,
and each row is the median part (see bench/delivery.py for why). After the run every
user's INBOX is fetched over IMAP from each server and each copy is checked: the
message-id names the message sent, and the copy must end with its exact bytes
(servers add trace headers on top). A server that lost, doubled or changed a copy
makes the bench fail loudly instead of printing its rate.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import imaplib
import os
import random
import re
import socket
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from _servers import (
    DOVECOT_LOGIN,
    PASSWORD,
    cryptmail_server,
    dovecot_available,
    dovecot_server,
    make_users,
)

ROUNDS = 5
SEED = 20261206
_MESSAGE_ID = re.compile(rb"^Message-ID: <(mix-\d+)@example\.net>\r$", re.MULTILINE | re.IGNORECASE)


def alternative(index: int, size: int = 4096) -> bytes:
    """multipart/alternative of about `size` bytes: the same words as text and as HTML."""
    words = " ".join(random.Random(index).choice(_WORDS) for _ in range(size // 14))
    text = "\r\n".join(words[i : i + 72] for i in range(0, len(words), 72)).encode()
    html = b"<html><body><p>" + text.replace(b"\r\n", b"</p>\r\n<p>") + b"</p></body></html>"
    return (
        _head(index, 'multipart/alternative; boundary="alt"')
        + b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text[: size // 3]
        + b"\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html[: size // 2]
        + b"\r\n--alt--\r\n"
    )


def mixed(index: int, size: int = 200_000) -> bytes:
    """multipart/mixed of about `size` bytes: a short text and a base64 'PDF'."""
    pdf = b"%PDF-1.4\n" + os.urandom(size * 3 // 4)
    attachment = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    return (
        _head(index, 'multipart/mixed; boundary="mix"')
        + b"--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + b"The report is attached.\r\n--mix\r\n"
        + b'Content-Type: application/pdf; name="report.pdf"\r\n'
        + b'Content-Disposition: attachment; filename="report.pdf"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--mix--\r\n"
    )


def _head(index: int, content_type: str) -> bytes:
    return (
        b"From: Sender <sender@example.net>\r\nTo: list@example.org\r\n"
        b"Subject: report %d\r\nDate: Sun, 6 Dec 2026 12:00:00 +0000\r\n"
        b"Message-ID: <mix-%d@example.net>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: %s\r\n\r\n" % (index, index, content_type.encode())
    )


_WORDS = (
    "meeting quarterly budget invoice attached please review the numbers before friday "
    "thanks regards project schedule delivery customer feedback update draft final"
).split()


@dataclass(frozen=True)
class Transaction:
    """One LMTP transaction: a message and the users it is for."""

    data: bytes
    recipients: tuple[str, ...]

    @property
    def key(self) -> str:
        """The message's id (its Message-ID's local part), which names it in a copy."""
        found = _MESSAGE_ID.search(self.data)
        if found is None:
            raise ValueError("a bench message without its Message-ID")
        return found.group(1).decode()


@dataclass
class Server:
    label: str
    lmtp: int
    imap: int
    domain_users: list[str]
    login: dict[str, str]
    rates: dict[tuple[str, int], list[float]] = field(default_factory=dict)


def deliver(port: int, transactions: Sequence[Transaction], *, users: list[str]) -> None:
    """Deliver over one connection; `users` maps a recipient number to this server's
    address. Every recipient must get 250."""
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as replies:
        _reply(replies)
        sock.sendall(b"LHLO bench.example.net\r\n")
        _reply(replies)
        for item in transactions:
            rcpts = [users[int(r)] for r in item.recipients]
            commands = b"MAIL FROM:<sender@example.net>\r\n" + b"".join(
                b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts
            )
            sock.sendall(commands + b"DATA\r\n")  # PIPELINING (RFC 2920; LMTP has it)
            for _ in range(1 + len(rcpts)):
                _reply(replies, b"2")
            _reply(replies, b"3")
            stuffed = item.data.replace(b"\r\n.", b"\r\n..")
            sock.sendall(stuffed + b".\r\n")
            for _ in rcpts:  # LMTP: one reply per recipient
                _reply(replies, b"2")
        sock.sendall(b"QUIT\r\n")


def _reply(replies: BinaryIO, first: bytes = b"2") -> None:
    while True:
        line = replies.readline()
        if not line.startswith(first):
            raise RuntimeError(f"LMTP server replied {line!r}")
        if line[3:4] != b"-":
            return


def plan(sets: dict[str, list[bytes]], users: int, max_rcpt: int) -> dict[str, list[Transaction]]:
    """The same recipient choices for every server (by user number, as a string)."""
    rng = random.Random(SEED)
    planned: dict[str, list[Transaction]] = {}
    for name, messages in sets.items():
        items = []
        for data in messages:
            count = rng.randint(1, max_rcpt)
            chosen = tuple(str(n) for n in rng.sample(range(users), count))
            items.append(Transaction(data, chosen))
        planned[name] = items
    return planned


def measure(servers: list[Server], name: str, items: list[Transaction], conns: int) -> None:
    copies_per_part = []
    for part in (items[i::ROUNDS] for i in range(ROUNDS)):
        copies = sum(len(t.recipients) for t in part)
        copies_per_part.append(copies)
        streams = [part[i::conns] for i in range(conns)]
        for server in servers:
            start = time.perf_counter()
            with ThreadPoolExecutor(conns) as pool:
                list(pool.map(partial(deliver, server.lmtp, users=server.domain_users), streams))
            wall = time.perf_counter() - start
            server.rates.setdefault((name, conns), []).append(copies / wall)


def check_copies(server: Server, sent: dict[str, bytes], expected: Counter[str]) -> int:
    """Fetch every INBOX and check each copy against what was sent. Returns copies seen."""
    seen: Counter[str] = Counter()
    for number, address in enumerate(server.domain_users):
        imap = imaplib.IMAP4("127.0.0.1", server.imap)
        try:
            imap.login(server.login.get(address, address), _password(server))
            typ, data = imap.select("INBOX", readonly=True)
            if typ != "OK":
                raise RuntimeError(f"{server.label}: SELECT failed for {address}: {data}")
            count = int(data[0] or b"0")
            if count:
                typ, fetched = imap.fetch("1:*", "(BODY.PEEK[])")
                for part in fetched:
                    if not isinstance(part, tuple):
                        continue
                    body = part[1]
                    found = _MESSAGE_ID.search(body)
                    if found is None:
                        raise RuntimeError(f"{server.label}: a copy without our Message-ID")
                    key = found.group(1).decode()
                    original = sent[key]
                    if not body.endswith(original):
                        digest = hashlib.sha256(body[-len(original) :]).hexdigest()[:16]
                        raise RuntimeError(
                            f"{server.label}: {key} for {address} changed (sha256 {digest})"
                        )
                    seen[f"{number}:{key}"] += 1
        finally:
            imap.logout()
    if seen != expected:
        missing = sum((expected - seen).values())
        extra = sum((seen - expected).values())
        raise RuntimeError(f"{server.label}: {missing} copies missing, {extra} extra")
    return sum(seen.values())


def _password(server: Server) -> str:
    return DOVECOT_LOGIN if server.label.startswith("dovecot") else PASSWORD


@contextmanager
def cryptmail(users: int) -> Iterator[list[Server]]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        c2 = [f"c2-{n}@example.org" for n in range(users)]
        c0 = [f"c0-{n}@example.org" for n in range(users)]
        make_users(data_dir, {**dict.fromkeys(c2, 2), **dict.fromkeys(c0, 0)})
        with cryptmail_server(data_dir, "lmtp", "imap") as (_pid, ports):
            yield [
                Server("cryptmail c2", ports["lmtp"], ports["imap"], c2, {}),
                Server("cryptmail c0", ports["lmtp"], ports["imap"], c0, {}),
            ]


@contextmanager
def dovecot(mail_crypt: bool, users: int) -> Iterator[Server]:
    names = [f"user{n}@example.org" for n in range(users)]
    with dovecot_server(mail_crypt, lmtp=True, imap=True, users=names) as server:
        label = "dovecot crypt" if mail_crypt else "dovecot plain"
        assert server.lmtp_port is not None and server.imap_port is not None
        yield Server(label, server.lmtp_port, server.imap_port, names, {})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages per row")
    parser.add_argument("--no-dovecot", action="store_true", help="cryptmail only")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--max-recipients", type=int, default=8)
    args = parser.parse_args()
    small, large = (100, 20) if args.quick else (400, 60)
    sets = {
        f"{name} x{conns}": [make(i) for i in range(base, base + count)]
        for conns in (1, 8)
        for name, make, count, base in (
            ("4 KB", alternative, small, conns * 100_000),
            ("200 KB", mixed, large, conns * 100_000 + 50_000),
        )
    }
    planned = plan(sets, args.users, args.max_recipients)
    sent = {t.key: t.data for items in planned.values() for t in items}
    expected: Counter[str] = Counter(
        f"{r}:{t.key}" for items in planned.values() for t in items for r in t.recipients
    )
    with ExitStack() as running:
        servers = running.enter_context(cryptmail(args.users))
        if not args.no_dovecot and dovecot_available():
            for mail_crypt in (True, False):
                servers.append(running.enter_context(dovecot(mail_crypt, args.users)))
        for key, items in planned.items():
            measure(servers, key, items, int(key.rsplit("x", 1)[1]))
        for server in servers:
            copies = check_copies(server, sent, expected)
            print(f"{server.label}: {copies} copies checked byte for byte")
    _print(servers, list(planned))


def _print(servers: list[Server], keys: list[str]) -> None:
    by = {s.label: s for s in servers}
    print()
    print(
        f"{'copies/s':>16}"
        + "".join(f"{s.label:>16}" for s in servers)
        + "   c2/c0  c2/dovecot crypt"
    )
    for key in keys:
        name, conns = key.rsplit(" x", 1)
        rates = {s.label: statistics.median(s.rates[(key, int(conns))]) for s in servers}
        row = f"{name + ', ' + conns + ' conn':>16}" + "".join(
            f"{rates[s.label]:>16.1f}" for s in servers
        )
        c2 = rates["cryptmail c2"]
        row += f"   {c2 / rates['cryptmail c0']:.2f}x"
        if "dovecot crypt" in by:
            row += f"  {c2 / rates['dovecot crypt']:.2f}x (goal >= 2x)"
        print(row)


if __name__ == "__main__":
    main()
