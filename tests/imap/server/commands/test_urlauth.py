"""URLAUTH (RFC 4467) over a live server: GENURLAUTH in the owner's session, URLFETCH
from other users' and a submission account's sessions, RESETKEY, EXPIRE, tampering,
and CATENATE with another user's URLAUTH URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ...raw_client import RawClient
from ...server_rig import USER, ImapRig, start_rig

OTHER = "dave@example.org"
SUBMIT = "submit@example.org"
PASSWORD = "other password 4"
MESSAGE = (
    b"From: a@example.org\r\nSubject: original\r\nContent-Type: multipart/mixed; boundary=x\r\n"
    b"\r\n--x\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--x\r\n"
    b"Content-Type: text/plain\r\n\r\nsecond part\r\n--x--\r\n"
)
BASE = "imap://alice%40example.org@localhost/INBOX/;UID=1"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ImapRig]:
    for found in start_rig(
        tmp_path,
        **{"urlauth.submit_users": [SUBMIT], "urlauth.max_urls_per_user": 5},
    ):
        found.add_user(OTHER, PASSWORD)
        found.add_user(SUBMIT, PASSWORD)
        found.deliver(MESSAGE)
        yield found


def _client(rig: ImapRig, user: str | None = None) -> RawClient:
    client = RawClient.connect(rig.port)
    if user is None:
        client.login()
    else:
        _, done = client.ask(f'LOGIN {user} "{PASSWORD}"'.encode())
        assert b" OK " in done
    return client


def _quote(text: str) -> bytes:
    return b'"' + text.encode() + b'"'


def _generate(client: RawClient, rump: str) -> str:
    untagged, done = client.ask(b"GENURLAUTH " + _quote(rump) + b" INTERNAL")
    assert b" OK " in done, done
    found = re.fullmatch(rb'\* GENURLAUTH "(.*)"', untagged[0])
    assert found is not None, untagged
    url = found.group(1).decode()
    assert url.startswith(rump + ":internal:")
    return url


def _string(data: bytes) -> tuple[bytes | None, bytes]:
    """One quoted string, literal or NIL from the front of `data`, and the rest."""
    if data.startswith(b"NIL"):
        return None, data[3:]
    if data.startswith(b'"'):
        end = data.index(b'"', 1)
        return data[1:end], data[end + 1 :]
    size = re.match(rb"\{(\d+)\}\r\n", data)
    assert size is not None, data[:80]
    start = size.end()
    return data[start : start + int(size.group(1))], data[start + int(size.group(1)) :]


def _fetch(client: RawClient, *urls: str) -> list[bytes | None]:
    untagged, done = client.ask(b"URLFETCH " + b" ".join(_quote(u) for u in urls))
    assert b" OK " in done, done
    assert len(untagged) == 1 and untagged[0].startswith(b"* URLFETCH "), untagged
    data = untagged[0][len(b"* URLFETCH ") :]
    out: list[bytes | None] = []
    for url in urls:
        echoed, data = _string(data)
        assert echoed == url.encode(), (echoed, url)
        assert data.startswith(b" ")
        value, data = _string(data[1:])
        out.append(value)
        data = data.removeprefix(b" ")
    assert data == b""
    return out


def test_capability_and_select_name_the_mechanism(rig: ImapRig) -> None:
    owner = _client(rig)
    untagged, _ = owner.ask(b"CAPABILITY")
    assert b" URLAUTH" in untagged[0]
    untagged, _ = owner.ask(b"SELECT INBOX")
    assert b"* OK [URLMECH INTERNAL] URLAUTH mechanisms." in untagged


def test_submit_user_and_named_user_fetch_other_sessions_not(rig: ImapRig) -> None:
    owner, submit, dave, owner2 = (
        _client(rig), _client(rig, SUBMIT), _client(rig, OTHER), _client(rig),
    )  # fmt: skip
    for_submit = _generate(owner, BASE + "/;SECTION=2;URLAUTH=submit+alice%40example.org")
    for_dave = _generate(owner, BASE + "/;SECTION=1;URLAUTH=user+dave%40example.org")
    for_all = _generate(owner, BASE + "/;PARTIAL=0.4;URLAUTH=authuser")
    whole = _generate(owner, BASE + ";URLAUTH=authuser")
    fields = _generate(owner, BASE + "/;SECTION=HEADER.FIELDS%20(SUBJECT);URLAUTH=authuser")
    assert _fetch(submit, for_submit, for_dave, for_all, whole, fields) == [
        b"second part", None, b"From", MESSAGE, b"Subject: original\r\n\r\n",
    ]  # fmt: skip
    assert _fetch(dave, for_submit, for_dave, for_all) == [None, b"first part", b"From"]
    # The owner is not the submission server, nor dave.
    assert _fetch(owner2, for_submit, for_dave, for_all) == [None, None, b"From"]
    for client in (owner, submit, dave, owner2):
        client.close()


def test_tampered_and_garbage_urls_answer_nil(rig: ImapRig) -> None:
    owner, submit = _client(rig), _client(rig, SUBMIT)
    url = _generate(owner, BASE + "/;SECTION=2;URLAUTH=submit+alice%40example.org")
    rump, token = url.rsplit(":", 1)
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    tampered = [
        rump + ":" + flipped,  # another token
        rump + ":" + token[:-2],  # a short one
        url.replace(";SECTION=2", ";SECTION=1"),  # another part, same token
        url.replace("UID=1", "UID=2"),
        url.replace("submit+alice", "submit+dave"),
        url.replace(":internal:", ":other:"),
        url.replace("/INBOX/", "/Sent/"),
        "garbage",
        "imap://x@y/INBOX/;UID=1;URLAUTH=authuser",  # a rump
        url + "/;PARTIAL=0.1",
        "imap://a@b/" + "x" * 8000 + ";URLAUTH=authuser:internal:" + "0" * 64,
        "imap://\u00e9@b/INBOX/;UID=1;URLAUTH=authuser:internal:" + token,
    ]
    assert _fetch(submit, *tampered, url) == [None] * len(tampered) + [b"second part"]
    owner.close()
    submit.close()


def test_resetkey_revokes_and_limit_is_enforced(rig: ImapRig) -> None:
    owner, submit, third = _client(rig), _client(rig, SUBMIT), _client(rig)
    urls = [_generate(owner, BASE + f"/;PARTIAL=0.{n};URLAUTH=authuser") for n in range(1, 6)]
    _, done = owner.ask(b"GENURLAUTH " + _quote(BASE + ";URLAUTH=authuser") + b" INTERNAL")
    assert b"NO [LIMIT]" in done
    assert _fetch(submit, urls[0]) == [b"F"]
    _, done = third.ask(b"RESETKEY Sent INTERNAL")
    assert b"OK [URLMECH INTERNAL]" in done
    assert _fetch(submit, urls[0]) == [b"F"]  # another mailbox's reset keeps INBOX's
    _, done = third.ask(b"RESETKEY INBOX")
    assert b"OK [URLMECH INTERNAL]" in done
    assert _fetch(submit, *urls) == [None] * 5
    again = _generate(owner, BASE + ";URLAUTH=authuser")
    assert _fetch(submit, again) == [MESSAGE]
    _, done = third.ask(b"RESETKEY")
    assert b"OK [URLMECH INTERNAL]" in done
    assert _fetch(submit, again) == [None]
    _, done = third.ask(b"RESETKEY Nonexistent")
    assert b"NO [NONEXISTENT]" in done
    _, done = third.ask(b"RESETKEY INBOX XSAMPLE")
    assert b" NO " in done
    for client in (owner, submit, third):
        client.close()


def test_expire_and_expunge(rig: ImapRig) -> None:
    owner, submit = _client(rig), _client(rig, SUBMIT)
    later = _generate(owner, BASE + ";EXPIRE=2099-01-01T00:00:00Z;URLAUTH=authuser")
    assert _fetch(submit, later) == [MESSAGE]
    _, done = owner.ask(
        b"GENURLAUTH " + _quote(BASE + ";EXPIRE=2001-01-01T00:00:00Z;URLAUTH=authuser")
        + b" INTERNAL"
    )  # fmt: skip
    assert b" NO " in done
    # The URL's EXPIRE is part of what the token was made for.
    assert _fetch(submit, later.replace("2099", "2098")) == [None]
    owner.ask(b"SELECT INBOX")
    owner.ask(b"UID STORE 1 +FLAGS (\\Deleted)")
    owner.ask(b"EXPUNGE")
    assert _fetch(submit, later) == [None]
    owner.close()
    submit.close()


@pytest.mark.parametrize(
    ("rump", "reason"),
    [
        ("/INBOX/;UID=1;URLAUTH=authuser", b"not a URLAUTH URL rump"),
        ("imap://dave%40example.org@h/INBOX/;UID=1;URLAUTH=authuser", b"own mailboxes"),
        (BASE + ";URLAUTH=anonymous", b"anonymous"),
        (BASE + ";URLAUTH=authuser:internal:" + "0" * 64, b"already carries a token"),
        (BASE.replace("UID=1", "UID=9") + ";URLAUTH=authuser", b"BADURL"),
        (BASE + ";URLAUTH=bogus", b"not a URLAUTH URL rump"),
    ],
)
def test_genurlauth_refusals(rig: ImapRig, rump: str, reason: bytes) -> None:
    owner = _client(rig)
    _, done = owner.ask(b"GENURLAUTH " + _quote(rump) + b" INTERNAL")
    assert b" NO " in done and reason in done, done
    _, done = owner.ask(b"GENURLAUTH " + _quote(BASE + ";URLAUTH=authuser") + b" XSAMPLE")
    assert b" NO " in done
    owner.close()


def test_catenate_takes_another_users_urlauth_url(rig: ImapRig) -> None:
    owner, dave = _client(rig), _client(rig, OTHER)
    url = _generate(owner, BASE + "/;SECTION=2;URLAUTH=user+dave%40example.org")
    head = b"Subject: fwd\r\n\r\n"
    command = b"APPEND Drafts CATENATE (TEXT {%d+}\r\n%s URL %s)" % (len(head), head, _quote(url))
    _, done = dave.ask(command)
    assert b" OK " in done, done
    dave.ask(b"EXAMINE Drafts")
    untagged, _ = dave.ask(b"UID FETCH 1 BODY.PEEK[]")
    assert head + b"second part" in untagged[0]
    # Without a valid token another user's mailbox stays closed.
    rump, token = url.rsplit(":", 1)
    for bad in (rump + ":" + "0" * 64, BASE + "/;SECTION=2"):
        _, done = dave.ask(b"APPEND Drafts CATENATE (URL %s)" % _quote(bad))
        assert b"NO [BADURL" in done, done
    # A URL for dave is not the owner's to use in CATENATE either.
    _, done = owner.ask(b"APPEND Drafts CATENATE (URL %s)" % _quote(url))
    assert b"NO [BADURL" in done, done
    owner.close()
    dave.close()


def test_commands_need_login_and_arguments(rig: ImapRig) -> None:
    client = RawClient.connect(rig.port)
    for command in (b"URLFETCH x", b"GENURLAUTH x INTERNAL", b"RESETKEY"):
        _, done = client.ask(command)
        assert b" BAD " in done
    client.login()
    for command in (b"URLFETCH", b"GENURLAUTH x", b"URLFETCH " + b" ".join([b"x"] * 70)):
        _, done = client.ask(command)
        assert b" BAD " in done, command
    client.close()
    assert USER
