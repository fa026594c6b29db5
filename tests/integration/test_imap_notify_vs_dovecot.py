"""NOTIFY (RFC 5465) next to Dovecot 2.3 (which has it): the same two sessions on each
server, one watching with NOTIFY, the other appending, flagging, expunging, creating and
subscribing; the watcher's unsolicited responses after each step are compared, and so
are the answers to refused NOTIFY commands.

Dovecot 2.3 sends NOTIFY's events only in IDLE, so the watcher idles through the
script on both servers. Normalizations, each because the value legitimately differs
between two servers:

* tags become ``T`` and the human text after a status is dropped;
* Dovecot's IDLE keepalive (``* OK Still here``) is dropped;
* ``* n RECENT`` lines and ``\\Recent`` are dropped (RFC 5465 5.2 makes RECENT a MAY,
  and which session a message is recent to is a race between the two sessions);
* STATUS keeps MESSAGES and UIDNEXT only: RFC 5465 5.2 asks for those two (UIDVALIDITY
  values differ by server, and each server adds items of its own choice);
* the event list of ``[BADEVENT (...)]`` is dropped: each server names the events it
  supports (Dovecot has METADATA events too);
* LIST attributes are sorted (RFC 3501 fixes no order), and \\HasChildren /
  \\HasNoChildren are dropped: RFC 5465 5.4 makes them a SHOULD, which we follow and
  Dovecot does not;
* ``UID n`` is dropped from a FETCH that carries FLAGS alone: RFC 5465 5.1 requires UID
  in a FlagChange FETCH, which we send and Dovecot 2.3 leaves out;
* a FETCH of flags just before an EXPUNGE is dropped: whether a \\Deleted flag is
  shown before its message goes depends on when the watcher wakes (Dovecot batches).

Where Dovecot departs from the RFC's MUSTs, the comparison leaves the command out and
checks ours against the RFC instead (``RFC_ONLY``): a NOTIFY breaking the composition
rules of RFC 5465 section 5 and 6.1 is BAD (Dovecot answers OK), and an event name it
does not know is ``NO [BADEVENT]`` (section 3.1; Dovecot answers BAD).

Our side is the live listener of ``tests/imap/server_rig.py`` (a crypt=2 user).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from imap.raw_client import RawClient
from imap.server_rig import PASSWORD as RIG_PASSWORD
from imap.server_rig import USER as RIG_USER
from imap.server_rig import ImapRig, start_rig

from .servers.dovecot import Dovecot, DovecotUser, dovecot_instances

pytestmark = pytest.mark.integration

USER, PASSWORD = "notify", "notify-pw"
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
           "Archive": "\\Archive"}  # fmt: skip
CONFIG = (
    "mailbox_list_index = yes\n"  # Dovecot's NOTIFY needs it
    "namespace inbox {\n  inbox = yes\n  separator = /\n"
    + "".join(
        f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}\n"
        for name, use in SPECIAL.items()
    )
    + "}\n"
)
_STATUS = re.compile(rb"^\* STATUS (\S+) \((.*)\)$")
_LIST = re.compile(rb"^\* LIST \(([^)]*)\)(.*)$")
_CHILDREN = (b"\\HasChildren", b"\\HasNoChildren")
_FLAGS_FETCH = re.compile(rb"^(\* \d+ FETCH \()UID \d+ (FLAGS \([^)]*\)\))$")
RFC_ONLY = {
    b"NOTIFY SET (PERSONAL (MessageNew))": b"T BAD",
    b"NOTIFY SET (PERSONAL (FlagChange))": b"T BAD",
    b"NOTIFY SET (SELECTED (MailboxName))": b"T BAD",
    b"NOTIFY SET (PERSONAL (Bogus))": b"T NO [BADEVENT]",
}


def _client(port: int, user: str, password: str) -> RawClient:
    return RawClient.logged_in(port, user, password)


def _until(client: RawClient, last: Callable[[bytes], bool]) -> list[bytes]:
    """Unsolicited responses, normalized, up to the first that `last` accepts."""
    return client.unsolicited(last, normalize=normalize)


def normalize(line: bytes) -> bytes | None:
    if line.endswith(b" RECENT") or line.startswith(b"* OK Still here"):
        return None
    line = line.replace(b" \\Recent", b"").replace(b"\\Recent ", b"").replace(b"\\Recent", b"")
    status = _STATUS.match(line)
    if status:
        words = status.group(2).split()
        pairs = {words[i]: words[i + 1] for i in range(0, len(words), 2)}
        kept = b" ".join(b"%s %s" % (k, pairs[k]) for k in (b"MESSAGES", b"UIDNEXT") if k in pairs)
        return b"* STATUS " + status.group(1) + b" (" + kept + b")"
    listed = _LIST.match(line)
    if listed:
        words = [w for w in listed.group(1).split() if w not in _CHILDREN]
        return b"* LIST (" + b" ".join(sorted(words)) + b")" + listed.group(2)
    return _FLAGS_FETCH.sub(rb"\1\2", line)


def tagged(line: bytes) -> bytes:
    """``T STATUS [CODE]`` without the text (and without BADEVENT's list)."""
    words = line.split(b" ", 2)
    out = b"T " + words[1]
    rest = words[2] if len(words) > 2 else b""
    if rest.startswith(b"["):
        code = rest[1 : rest.index(b"]")]
        out += b" [" + code.split(b" ", 1)[0] + b"]"
    return out


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with dovecot_instances() as factory:
        yield factory(users=[DovecotUser(USER, PASSWORD)], imap=True, extra_config=CONFIG)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapRig]:
    yield from start_rig(tmp_path_factory.mktemp("notify"))


def _script(watcher: RawClient, actor: RawClient) -> list[tuple[bytes, list[bytes]]]:
    """Run the script on one server; (step, normalized responses) pairs."""
    out: list[tuple[bytes, list[bytes]]] = []
    message = b"Subject: hello\r\n\r\nbody\r\n"
    watcher.ask(b"SELECT INBOX")
    # Dovecot makes its special-use folders on first use: use Sent once beforehand, so
    # its creation is not a MailboxName event in the middle of the script.
    actor.ask(b"APPEND Sent {%d+}\r\n" % len(message) + message)
    for bad in (
        b"NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))",
        b"NOTIFY BOGUS",
        b"NOTIFY NONE",
    ):
        out.append((bad, [tagged(watcher.ask(bad)[1])]))
    watch = (
        b"NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
        b"(PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))"
    )
    untagged, done = watcher.ask(watch)
    out.append((b"set", [*untagged, tagged(done)]))
    # Dovecot 2.3 sends NOTIFY's events in IDLE only (RFC 5465 4: the same events as
    # between commands); ours go out between commands too (test_imap_notify_serve.py).
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.read().startswith(b"+")

    actor.ask(b"APPEND INBOX {%d+}\r\n" % len(message) + message)
    out.append((b"new in INBOX", _until(watcher, lambda line: b" FETCH " in line)))
    actor.ask(b"APPEND Sent {%d+}\r\n" % len(message) + message)
    out.append((b"new in Sent", _until(watcher, lambda line: line.startswith(b"* STATUS"))))
    actor.ask(b"SELECT INBOX")
    actor.ask(b"UID STORE 1 +FLAGS (\\Flagged)")
    out.append((b"flagged", _until(watcher, lambda line: b"FLAGS" in line)))
    actor.ask(b"UID STORE 1 +FLAGS (\\Deleted)")
    actor.ask(b"EXPUNGE")
    gone = _until(watcher, lambda line: line.endswith(b" EXPUNGE"))
    out.append((b"expunged", [line for line in gone if b" FETCH " not in line]))
    actor.ask(b"CREATE Projects")
    out.append((b"created", _until(watcher, lambda line: line.startswith(b"* LIST"))))
    actor.ask(b"SUBSCRIBE Projects")
    out.append((b"subscribed", _until(watcher, lambda line: line.startswith(b"* LIST"))))
    actor.ask(b"DELETE Projects")
    out.append((b"deleted", _until(watcher, lambda line: line.startswith(b"* LIST"))))
    watcher.send(b"DONE\r\n")
    out.append((b"done", [tagged(watcher.read())]))
    untagged, done = watcher.ask(b"NOTIFY NONE")
    out.append((b"none", [*untagged, tagged(done)]))
    return out


def test_notify_matches_dovecot(dovecot: Dovecot, rig: ImapRig) -> None:
    assert dovecot.imap_port is not None
    theirs = _script(
        _client(dovecot.imap_port, USER, PASSWORD), _client(dovecot.imap_port, USER, PASSWORD)
    )
    ours = _script(
        _client(rig.port, RIG_USER, RIG_PASSWORD), _client(rig.port, RIG_USER, RIG_PASSWORD)
    )
    differences = [
        f"{step!r}:\n  dovecot:   {expected}\n  cryptmail: {got}"
        for (step, expected), (_, got) in zip(theirs, ours, strict=True)
        if expected != got
    ]
    assert not differences, "\n".join(differences)
    client = _client(rig.port, RIG_USER, RIG_PASSWORD)
    for command, expected in RFC_ONLY.items():
        assert tagged(client.ask(command)[1]) == expected, command
    client.close()
