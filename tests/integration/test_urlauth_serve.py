# mypy: disable-error-code="index, operator, arg-type, union-attr, assignment"
# (imaplib's stubs type every response item as a union of bytes, tuples and None, and
# `literal` as str, though it must be bytes)
"""URLAUTH (RFC 4467) against a real `cryptmail serve`, mail arriving over LMTP, with
imaplib sending the raw commands: the owner makes URLs in one session, a submission
account (``urlauth.submit_users``) fetches them from another, another user gets NIL,
a third session of the owner resets the key; several owners' sessions make URLs at once
while the submission session fetches, all from one client address. Garbage, huge and
tampered URLs get NIL or a clean refusal. After GENURLAUTH, no byte of the data
directory (database, WAL, blobs) holds the part's marker, the token or the mailbox name.
"""

from __future__ import annotations

import base64
import imaplib
import quopri
import re
import smtplib
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from .cryptmail_server import PASSWORD, CryptmailServer, make_users

pytestmark = pytest.mark.integration

OWNER, OTHER, SUBMIT = "alice@example.org", "bob@example.org", "submit@example.org"
PLAIN = "plain@example.org"  # crypt=0: its mail is stored plain, so the scan must see it
MARKER = "ZqUrlPartMk7"
FOLDER = "ZqUrlFolderMk7"
# imaplib learns an extension command's states from its first use; these work in both.
for _name in ("GENURLAUTH", "URLFETCH", "RESETKEY"):
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))


def _mail(n: int) -> bytes:
    return (
        f"From: sender@example.net\r\nTo: {OWNER}\r\nSubject: message {n}\r\n"
        "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
        "Content-Type: text/plain\r\n\r\nfirst part\r\n--zz\r\n"
        f"Content-Type: text/plain\r\n\r\n{MARKER} {n}\r\n--zz--\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CryptmailServer]:
    data_dir = tmp_path_factory.mktemp("urlauth") / "data"
    make_users(data_dir, "example.org", {OWNER: 2, OTHER: 2, SUBMIT: 2, PLAIN: 0})
    config = f'[urlauth]\nsubmit_users = ["{SUBMIT}"]\n'
    with CryptmailServer(data_dir, imap=True, verbose=True, config=config) as serve:
        with smtplib.LMTP("127.0.0.1", serve.port, timeout=60) as lmtp:
            for n in range(1, 4):
                lmtp.sendmail("sender@example.net", [OWNER], _mail(n))
            lmtp.sendmail("sender@example.net", [PLAIN], _mail(0).replace(b"ZqUrl", b"ZqPlain"))
        yield serve


def _session(server: CryptmailServer, user: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(user, PASSWORD)
    return imap


def _quote(url: str) -> str:
    return '"' + url + '"'


def _rump(uid: int, tail: str) -> str:
    return f"imap://alice%40example.org@localhost/INBOX/;UID={uid}{tail}"


def _generate(imap: imaplib.IMAP4, rump: str) -> str:
    status, _ = imap.xatom("GENURLAUTH", _quote(rump), "INTERNAL")
    assert status == "OK"
    _, data = imap._untagged_response(status, [None], "GENURLAUTH")
    found = re.fullmatch(rb'"(.*)"', data[-1])
    assert found is not None, data
    return found.group(1).decode()


def _fetch(imap: imaplib.IMAP4, *urls: str) -> list[bytes | None]:
    status, _ = imap.xatom("URLFETCH", *(_quote(u) for u in urls))
    assert status == "OK"
    _, data = imap._untagged_response(status, [None], "URLFETCH")
    # imaplib splits the response at each literal: (text before, literal) tuples, then
    # the text after the last one.
    text = b""
    literals: list[bytes] = []
    for item in data:
        if isinstance(item, tuple):
            text += item[0] + b"\0"
            literals.append(item[1])
        elif item:
            text += item
    answers = re.findall(rb'"[^"]*" (NIL|\{\d+\}\0)', text)
    out: list[bytes | None] = []
    for answer in answers:
        out.append(None if answer == b"NIL" else literals.pop(0))
    assert len(out) == len(urls), text
    return out


def test_sessions_of_owner_submission_server_and_another_user(server: CryptmailServer) -> None:
    owner, submit, other, resetter = (
        _session(server, OWNER), _session(server, SUBMIT), _session(server, OTHER),
        _session(server, OWNER),
    )  # fmt: skip
    for_submit = _generate(owner, _rump(1, "/;SECTION=2;URLAUTH=submit+alice%40example.org"))
    for_other = _generate(owner, _rump(2, "/;SECTION=2;URLAUTH=user+bob%40example.org"))
    assert _fetch(submit, for_submit, for_other) == [f"{MARKER} 1".encode(), None]
    assert _fetch(other, for_submit, for_other) == [None, f"{MARKER} 2".encode()]
    status, _ = resetter.xatom("RESETKEY")
    assert status == "OK"
    assert _fetch(submit, for_submit) == [None]
    assert _fetch(other, for_other) == [None]
    for imap in (owner, submit, other, resetter):
        imap.logout()


def test_many_sessions_at_once(server: CryptmailServer) -> None:
    submit = _session(server, SUBMIT)
    made: list[tuple[int, str]] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def owner_session(n: int) -> None:
        try:
            imap = _session(server, OWNER)
            for uid in (1, 2, 3):
                url = _generate(imap, _rump(uid, f"/;SECTION=2;URLAUTH=submit+{n}"))
                with lock:
                    made.append((uid, url))
            imap.logout()
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=owner_session, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(made) == 12
    got = _fetch(submit, *(url for _, url in made))
    assert got == [f"{MARKER} {uid}".encode() for uid, _ in made]
    submit.logout()


def test_bad_urls_are_answered_cleanly(server: CryptmailServer) -> None:
    owner, submit = _session(server, OWNER), _session(server, SUBMIT)
    url = _generate(owner, _rump(3, "/;SECTION=2;URLAUTH=authuser"))
    rump, token = url.rsplit(":", 1)
    tampered = [
        rump + ":" + token[::-1],
        rump + ":" + token[:32],
        url.replace("SECTION=2", "SECTION=1"),
        url.replace("authuser", "user+submit%40example.org"),
        "imap://alice%40example.org@localhost/INBOX/;UID=3;URLAUTH=authuser:internal:" + "g" * 64,
        "not a url at all",
        "imap://",
        ";URLAUTH=:::",
    ]
    assert _fetch(submit, *tampered, url) == [None] * len(tampered) + [f"{MARKER} 3".encode()]
    # A huge URL is NIL; one over the literal limit is refused; the session goes on.
    huge = "imap://a@b/" + "x" * 200_000 + ";URLAUTH=authuser:internal:" + "0" * 64
    submit.literal = huge.encode()
    status, _ = submit.xatom("URLFETCH")
    assert status == "OK"
    _, data = submit._untagged_response(status, [None], "URLFETCH")
    assert data[-1] == b'"' + huge.encode() + b'" NIL'
    submit.literal = b"x" * (2 * 1024 * 1024)
    status, _ = submit.xatom("URLFETCH")
    assert status in ("NO", "BAD")
    status, _ = submit.noop()
    assert status == "OK"
    assert _fetch(submit, url) == [f"{MARKER} 3".encode()]
    others = _rump(3, ";URLAUTH=authuser").replace("alice", "bob")
    status, data = owner.xatom("GENURLAUTH", _quote(others), "INTERNAL")
    assert status == "NO" and b"own mailboxes" in data[-1]
    status, data = owner.xatom("GENURLAUTH", _quote(url), "INTERNAL")
    assert status == "NO" and b"already carries a token" in data[-1]
    owner.logout()
    submit.logout()


def _forms(text: str) -> list[bytes]:
    raw = text.encode()
    return [raw, raw.lower(), base64.b64encode(raw)[:-4] or raw, quopri.encodestring(raw)]


def test_nothing_of_the_part_at_rest_after_genurlauth(server: CryptmailServer) -> None:
    owner = _session(server, OWNER)
    status, _ = owner.create(FOLDER)
    assert status == "OK"
    status, _ = owner.copy("1", FOLDER) if owner.select("INBOX")[0] == "OK" else ("NO", [])
    assert status == "OK"
    url = _generate(
        owner,
        f"imap://alice%40example.org@localhost/{FOLDER}/;UID=1/;SECTION=2"
        ";URLAUTH=submit+alice%40example.org",
    )
    token = url.rsplit(":", 1)[1]
    owner.logout()
    database = sqlite3.connect(server.data_dir / "cryptmail.db")
    try:
        rows = database.execute("SELECT COUNT(*) FROM cm_url_grants").fetchone()[0]
    finally:
        database.close()
    assert rows >= 1
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    everything = b"".join(p.read_bytes() for p in files)
    low = everything.lower()
    for secret in (MARKER, FOLDER, token, "submit+alice", OWNER.split("@")[0] + "%40"):
        hits = [form for form in _forms(secret) if form in everything or form.lower() in low]
        assert hits == [], secret
    assert token.encode() not in server.log_path.read_bytes()
    submit = _session(server, SUBMIT)
    assert _fetch(submit, url) == [f"{MARKER} 1".encode()]
    submit.logout()


def test_the_scan_finds_plain_mail(server: CryptmailServer) -> None:
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    everything = b"".join(p.read_bytes() for p in files)
    assert any(form in everything for form in _forms(MARKER.replace("ZqUrl", "ZqPlain")))
