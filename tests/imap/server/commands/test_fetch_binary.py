"""BINARY (RFC 3516) over a live server: FETCH BINARY / BINARY.PEEK / BINARY.SIZE,
APPEND with literal8, the refusals, a big attachment streamed, several sessions."""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig

ATTACHMENT = os.urandom(3 * 1024 * 1024 + 7)
BIG = (
    b"Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"See the attachment =E2=80=93 thanks=\r\n.\r\n--b\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    + b"--b--\r\n"
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _client(rig: ImapRig, select: bytes | None = b"INBOX") -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    if select:
        _, done = client.ask(b"SELECT " + select)
        assert b" OK " in done
    return client


def _literal(response: bytes, key: bytes) -> tuple[bytes, bool]:
    """The bytes of `key`'s literal in one FETCH response, and whether it was ~{n}."""
    found = re.search(re.escape(key) + rb" (~?)\{(\d+)\}\r\n", response)
    assert found is not None, response[:300]
    start = found.end()
    return response[start : start + int(found.group(2))], found.group(1) == b"~"


def test_binary_items(rig: ImapRig) -> None:
    rig.deliver(b"Subject: a\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8Ad29ybGQ=\r\n")
    client = _client(rig)
    untagged, done = client.ask(b"FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.SIZE[] FLAGS)")
    assert done.endswith(b"OK Fetch completed."), done
    assert _literal(untagged[0], b"BINARY[1]") == (b"hello\0world", True)
    assert b"BINARY.SIZE[1] 11 " in untagged[0]
    assert b"BINARY.SIZE[] 60 " in untagged[0]
    assert b"\\Seen" not in untagged[0]  # PEEK and SIZE leave \Seen alone
    untagged, _ = client.ask(b"FETCH 1 (BINARY[]<5.20> BINARY[9])")
    assert _literal(untagged[0], b"BINARY[]<5>") == (b"ct: a\r\nContent-Trans", True)
    assert _literal(untagged[0], b"BINARY[9]") == (b"", False)
    assert re.search(rb"FLAGS \([^)]*\\Seen", untagged[0])  # BINARY[] sets it
    for bad in (b"FETCH 1 BINARY[TEXT]", b"FETCH 1 BINARY.SIZE[1]<0.5>", b"FETCH 1 BINARY[1.0]"):
        _, done = client.ask(bad)
        assert b" BAD " in done, (bad, done)


def test_unknown_and_broken_encodings_answer_unknown_cte(rig: ImapRig) -> None:
    rig.deliver(b"Subject: u\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n")
    rig.deliver(b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n")
    rig.deliver(b"Subject: q\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ\r\n")
    rig.deliver(b"Subject: fine\r\n\r\nplain body\r\n")
    client = _client(rig)
    for seq in (b"1", b"2", b"3"):
        for item in (b"BINARY[1]", b"BINARY.SIZE[1]", b"BINARY[]"):
            _, done = client.ask(b"FETCH " + seq + b" " + item)
            assert b" NO [UNKNOWN-CTE] " in done, (seq, item, done)
    # BODY[] of the same messages still works, and so does BINARY of a good one.
    untagged, done = client.ask(b"FETCH 1:3 (BODY.PEEK[TEXT])")
    assert done.endswith(b"OK Fetch completed.") and len(untagged) == 3
    untagged, done = client.ask(b"FETCH 4 BINARY.PEEK[1]")
    assert _literal(untagged[0], b"BINARY[1]") == (b"plain body\r\n", False)
    # A range over good and bad messages: the good ones answer, then NO.
    untagged, done = client.ask(b"FETCH 3:4 BINARY.PEEK[1]")
    assert b"NO [UNKNOWN-CTE]" in done


def test_append_literal8_keeps_nul_for_binary_and_body_shows_0x80(rig: ImapRig) -> None:
    client = _client(rig, select=None)
    message = b"Subject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\nzero\0byte\r\n"
    tag = client.next_tag()
    client.send(tag + b" APPEND INBOX ~{%d}\r\n" % len(message))
    assert client.line().startswith(b"+")
    client.send(message + b"\r\n")
    _, done = client.until(tag)
    assert b"OK [APPENDUID" in done, done
    tag = client.next_tag()
    client.send(tag + b" APPEND INBOX (\\Seen) ~{%d+}\r\n" % len(message) + message + b"\r\n")
    _, done = client.until(tag)
    assert b"OK [APPENDUID" in done, done
    client.ask(b"SELECT INBOX")
    untagged, _ = client.ask(b"FETCH 1:2 (BINARY.PEEK[1] BODY.PEEK[TEXT])")
    for response in untagged:
        assert _literal(response, b"BINARY[1]") == (b"zero\0byte\r\n", True)
        assert _literal(response, b"BODY[TEXT]")[0] == b"zero\x80byte\r\n"
    _, done = client.ask(b"SELECT ~{5}\r\nINBOX")  # literal8 only where BINARY allows it
    assert b" BAD " in done


def test_big_attachment_streams_and_sessions_agree(rig: ImapRig) -> None:
    rig.deliver(BIG)
    failures: list[BaseException] = []

    def session() -> None:
        try:
            client = _client(rig)
            untagged, done = client.ask(
                b"FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[1] BINARY.PEEK[2]<1000.64>)"
            )
            assert done.endswith(b"OK Fetch completed."), done
            response = untagged[0]
            assert b"BINARY.SIZE[2] %d " % len(ATTACHMENT) in response
            assert _literal(response, b"BINARY[2]") == (ATTACHMENT, True)
            assert _literal(response, b"BINARY[1]")[0] == "See the attachment – thanks.".encode()
            assert _literal(response, b"BINARY[2]<1000>")[0] == ATTACHMENT[1000:1064]
            whole, literal8 = _literal(client.ask(b"FETCH 1 BINARY.PEEK[]")[0][0], b"BINARY[]")
            assert literal8 and ATTACHMENT in whole
            assert whole.count(b"Content-Transfer-Encoding: binary\r\n") == 2
            client.close()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=session) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures


def test_capability_names_binary(rig: ImapRig) -> None:
    client = _client(rig, select=None)
    untagged, _ = client.ask(b"CAPABILITY")
    assert b"BINARY" in untagged[0].split()
