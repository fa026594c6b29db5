"""FETCH PREVIEW (RFC 8970) on the live server: the text rules, LAZY, the sealed cache
(no preview text in any byte of the data directory), several sessions and users."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import ImapRig, start_rig

MARKER = "Qz7previewMarkerXv"
PLAIN = (
    b"Subject: plain\r\n\r\nHello   there,\r\n\r\n> an old quoted line\r\n"
    b"the " + MARKER.encode() + b" is here.\r\n"
)
HTML_ONLY = (
    b"Subject: html\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<html><head><style>p {color: red}</style></head><body><p>Caf=C3=A9 &amp; <b>tea</b></p>"
    b"<script>alert(1)</script><p>second</p></body></html>\r\n"
)
ALTERNATIVE = (
    b"Subject: alt\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/html\r\n\r\n<p>html version</p>\r\n--b\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("Grüße aus Köln".encode("latin-1")).replace(b"\n", b"\r\n")
    + b"--b--\r\n"
)
NO_TEXT = b"Subject: img\r\nContent-Type: image/png\r\n\r\nxxxx\r\n"
LONG = b"Subject: long\r\n\r\n" + b"word " * 2000 + b"\r\n"
BIG = b"Subject: big\r\n\r\nbig start\r\n" + b"x" * 300_000 + b"\r\n"  # over the head size


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path)


def _client(rig: ImapRig) -> RawClient:
    client = RawClient.connect(rig.port)
    client.login()
    _, done = client.ask(b"SELECT INBOX")
    assert b" OK " in done
    return client


def _previews(client: RawClient, command: bytes) -> list[bytes]:
    untagged, done = client.ask(command)
    assert b" OK " in done, (command, done)
    out = []
    for line in untagged:
        found = line.split(b"PREVIEW ", 1)
        assert len(found) == 2, line
        out.append(found[1].rsplit(b")", 1)[0])
    return out


def test_preview_rules(rig: ImapRig) -> None:
    for message in (PLAIN, HTML_ONLY, ALTERNATIVE, NO_TEXT, LONG):
        rig.deliver(message)
    client = _client(rig)
    got = _previews(client, b"FETCH 1:5 (PREVIEW)")
    assert got[0] == b'"Hello there, the ' + MARKER.encode() + b' is here."'
    assert got[1] == b"{18}\r\nCaf\xc3\xa9 & tea second"  # UTF-8, so a literal
    assert got[2] == "{17}\r\nGrüße aus Köln".encode()  # plain preferred, decoded
    assert got[3] == b'""'
    assert got[4] == b'"' + b" ".join([b"word"] * 40) + b'"'  # 200 characters
    # LAZY: these small messages were previewed when first read, so it is cached.
    assert _previews(client, b"FETCH 1 (PREVIEW (LAZY))") == [got[0]]
    # PREVIEW does not set \Seen.
    untagged, _ = client.ask(b"FETCH 1:5 (FLAGS)")
    assert not any(b"\\Seen" in line for line in untagged)


def test_lazy_is_nil_until_a_big_message_is_previewed(rig: ImapRig) -> None:
    rig.deliver(BIG)
    client = _client(rig)
    assert _previews(client, b"FETCH 1 (PREVIEW (LAZY) UID)") == [b"NIL UID 1"]
    assert _previews(client, b"FETCH 1 (PREVIEW)") == [b'"big start ' + b"x" * 190 + b'"']
    # Made once, sealed into the cache: another session gets it lazily too.
    other = _client(rig)
    assert _previews(other, b"UID FETCH 1 (PREVIEW (LAZY))")[0].startswith(b'"big start')


def test_bad_preview_syntax(rig: ImapRig) -> None:
    rig.deliver(PLAIN)
    client = _client(rig)
    for bad in (b"FETCH 1 (PREVIEW ())", b"FETCH 1 (PREVIEW (FUZZY))", b"FETCH 1 PREVIEW.LAZY",
                b"FETCH 1 (PREVIEW (LAZY)", b"FETCH 1 (PREVIEW (LAZY LAZY x))"):  # fmt: skip
        _, done = client.ask(bad)
        assert done.split(b" ")[1] == b"BAD", bad
    assert len(_previews(client, b"FETCH 1 (PREVIEW PREVIEW (LAZY))")) == 1


def test_preview_is_sealed_at_rest(rig: ImapRig) -> None:
    rig.deliver(PLAIN)
    rig.deliver(BIG.replace(b"big start", MARKER.encode()))
    client = _client(rig)
    assert len(_previews(client, b"FETCH 1:2 (PREVIEW)")) == 2
    client.ask(b"LOGOUT")
    data = b"".join(
        path.read_bytes() for path in Path(rig.config.data_dir).rglob("*") if path.is_file()
    )
    for form in (MARKER.encode(), MARKER.lower().encode(), base64.b64encode(MARKER.encode())):
        assert form not in data and form not in data.lower()


def test_several_users_and_sessions(rig: ImapRig) -> None:
    rig.add_user("bob@example.org", "bob password 2")
    rig.deliver(PLAIN)
    rig.deliver(b"Subject: b\r\n\r\nfor bob only\r\n", "bob@example.org")
    alice = [_client(rig) for _ in range(3)]
    bob = RawClient.connect(rig.port)
    assert b" OK " in bob.ask(b'LOGIN bob@example.org "bob password 2"')[1]
    bob.ask(b"SELECT INBOX")
    for client in alice:
        assert _previews(client, b"FETCH 1 (PREVIEW)")[0].startswith(b'"Hello there')
    assert _previews(bob, b"FETCH 1 (PREVIEW)") == [b'"for bob only"']
