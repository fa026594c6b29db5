"""Mail through a real Postfix into `cryptmail serve` over LMTP, stored encrypted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptmail.crypto import MAX_HEADER_SIZE, parse_blob_header
from cryptmail.delivery import delivery_headers

from .conftest import PostfixFactory
from .cryptmail_server import CryptmailServer, make_users, read_all, store_check


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CryptmailServer]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {"alice@example.org": 2, "bob@example.org": 0})
    served = CryptmailServer(data_dir)
    served.start()
    yield served
    served.stop()


def test_postfix_delivers_sealed_and_plain(
    server: CryptmailServer, postfix_factory: PostfixFactory
) -> None:
    postfix = postfix_factory(
        domains=["example.org"],
        lmtp=server.lmtp,
        aliases={"team@example.org": "alice@example.org bob@example.org"},
    )
    body = "Subject: Grüße PFMARKER\r\nMessage-ID: <pf1@example.net>\r\n\r\nbody PFMARKER ä\r\n"
    postfix.send(body.encode(), "sender@example.net", ["team@example.org"])
    postfix.send(b"Subject: unknown\r\n\r\nx\r\n", "sender@example.net", ["ghost@example.org"])
    postfix.wait_queue_empty(timeout=60)
    alice = read_all(server.data_dir, "alice@example.org")["INBOX"]
    bob = read_all(server.data_dir, "bob@example.org")["INBOX"]
    assert len(alice) == 1 and len(bob) == 1
    assert alice[0].endswith(body.encode().split(b"\r\n", 1)[1]) or b"PFMARKER" in alice[0]
    # Postfix expands the alias and sends one RCPT per user: each copy starts with its
    # own Return-Path and Delivered-To; past them the copies are the same bytes.
    alice_top = delivery_headers("sender@example.net", "alice@example.org")
    bob_top = delivery_headers("sender@example.net", "bob@example.org")
    assert alice[0].startswith(alice_top) and bob[0].startswith(bob_top)
    assert b"<pf1@example.net>" in alice[0]
    assert alice[0][len(alice_top) :] == bob[0][len(bob_top) :]
    assert b"\r\n" in alice[0]
    blobs = [
        p for p in (server.data_dir / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp"
    ]
    sealed = [parse_blob_header(p.read_bytes()[:MAX_HEADER_SIZE]).sealed for p in blobs]
    assert sorted(sealed) == [False, True]
    for p in blobs:
        if parse_blob_header(p.read_bytes()[:MAX_HEADER_SIZE]).sealed:
            assert b"PFMARKER" not in p.read_bytes()
    assert "5.1.1" in postfix.log()
    assert store_check(server.data_dir).returncode == 0
