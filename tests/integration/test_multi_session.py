"""Many clients at once: a seeded random mix of IMAP commands from several sessions of
several users against a live `cryptmail serve`, with mail arriving over LMTP, checked
against a model after every response. Runs on SQLite, MariaDB and PostgreSQL.

The committed state of a mailbox is changed by every session at once, so the model is
weak but sound: it only asserts what must hold whatever the interleaving.

- A UID names one body forever: every UID ever seen in a mailbox is kept with the
  SHA-256 of its body (APPENDUID, COPYUID, or a delivery's unique marker), and every
  `BODY.PEEK[]` must give those exact bytes. A UID handed out again (APPENDUID/COPYUID)
  after it was expunged is a reuse; the UIDs one session gets from its own APPENDs to a
  mailbox strictly increase.
- Each session keeps its sequence-number-to-UID map from EXISTS, EXPUNGE and FETCH
  responses (RFC 3501: EXPUNGE n shifts, EXISTS never shrinks the mailbox) and every
  FETCH of that session must agree with it; the known UIDs in the map strictly increase.
- Each session owns flags no other session touches: its keyword `$kwN`, and the first
  session of each user `\\Flagged`. Only the owner changes an owned flag, so every FETCH
  FLAGS must show the owner's last change (a COPY's target gets the source's flags at the
  copy's moment, unknown for flags other sessions own); at the end, after all sessions
  quiesce, the flags of every message must equal the model: no lost flag change.
- No message is lost: one missing at the end was marked \\Deleted or moved by someone;
  every delivered message is found.
- No tagged BAD, no [SERVERBUG], no stall: each command's wall time is measured. The issue
  asks for 1 s; on the shared 2-core test machine with three databases a fixed 1 s bound
  would flake, so the bound is `STALL_S` (5 s) and the p99 is printed with the seed.
- IDLE in INBOX sees the EXISTS of a delivery made while it waits, within `IDLE_WAIT_S`.

The seed is printed with every failure, with the last commands of the failing session;
`CRYPTMAIL_MULTI_SEED=<n>` replays one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import secrets
import smtplib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from cryptmail.config import Argon2Config, CryptoConfig
from cryptmail.db import create_engine, upgrade
from cryptmail.delivery import delivery_headers
from cryptmail.imap.server.commands._idle import POLL_S
from cryptmail.keys import create_user, unlock_account
from cryptmail.secret import Password
from cryptmail.store import get_mailbox, load_messages
from cryptmail.users import add_domain

from .cryptmail_server import CryptmailServer

pytestmark = pytest.mark.integration

PASSWORD = "many clients, one server 9"
CRYPTO = CryptoConfig(argon2=Argon2Config(memory_kib=19456, time_cost=2))
USERS = [f"user{n}@example.org" for n in range(3)]
CONNECTIONS_PER_USER = 3
MAILBOXES = ["INBOX", "Archive"]
SENDER = "sender@example.net"
LOAD_S = float(os.environ.get("CRYPTMAIL_MULTI_LOAD_S", "25"))  # three runs under 2 min
SLOW_LOAD_S = 600.0
MAX_OPS = 100_000  # the deadline ends a run first; this only bounds a runaway loop
STALL_S = 5.0  # the 1 s, with room for a shared 2-core machine (see the docstring)
# A delivery wakes IDLE at once (the LMTP workers publish to the IMAP sessions); at
# worst IDLE's own poll finds it after POLL_S. The rest is slack for a busy machine.
IDLE_WAIT_S = POLL_S + 3.0
SOCKET_TIMEOUT_S = 30.0
ALL_FLAGS = [f"$kw{n}" for n in range(len(USERS) * CONNECTIONS_PER_USER)] + ["\\Flagged"]
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_MARKER = re.compile(rb"X-Model-Marker: (m[0-9a-f]+)")
# "session 1 (user0@example.org, INBOX): ModelError: UID 25 FLAGS [...]" or the final
# check's "user0@example.org INBOX UID 25: $kw1 should be set".
_FLAG_FAILURE = re.compile(
    r"(user\d+@example\.org)(?:, | )(INBOX|Archive)\)?(?:: ModelError:)? UID (\d+)(?: FLAGS|: )"
)


class ModelError(AssertionError):
    """A response the model says no correct server can give."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Box:
    """What every session together knows of one user's mailbox."""

    bodies: dict[int, str] = field(default_factory=dict)
    expunged: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)  # marked \Deleted or moved away
    origin: dict[int, str] = field(default_factory=dict)  # how the model learned the UID
    # flag -> set or clear, None while unknown. A missing flag is unknown during the run
    # (a copy whose COPYUID its copier has not noted yet carries the source's flags) and
    # clear once every session quiesced (no owner set it).
    flags: dict[int, dict[str, bool | None]] = field(default_factory=dict)


class World:
    """The shared model: boxes per (user, mailbox), bodies by marker, and the stats."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.lock = threading.Lock()
        self.boxes = {(u, m): Box() for u in USERS for m in MAILBOXES}
        self.by_marker: dict[str, str] = {}  # marker -> SHA-256 of the stored bytes
        self.delivered: dict[str, list[str]] = {u: [] for u in USERS}
        self.durations: list[float] = []
        self.counts: dict[str, int] = {}
        self.idle_waits: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def body_seen(self, user: str, mailbox: str, uid: int, sha: str, where: str) -> None:
        with self.lock:
            known = self.boxes[user, mailbox].bodies.setdefault(uid, sha)
            self.boxes[user, mailbox].origin.setdefault(uid, where)
        if known != sha:
            raise ModelError(f"{mailbox} UID {uid} has two bodies ({where})")

    def assigned(self, user: str, mailbox: str, uid: int, sha: str, where: str) -> None:
        """A UID the server just handed out (APPENDUID or COPYUID)."""
        with self.lock:
            if uid in self.boxes[user, mailbox].expunged:
                raise ModelError(f"{mailbox} UID {uid} reused after EXPUNGE ({where})")
        self.body_seen(user, mailbox, uid, sha, where)

    def register_message(self, data: bytes) -> str:
        """Note the bytes a message with this marker must always have; its marker."""
        found = _MARKER.search(data)
        assert found is not None
        marker = found.group(1).decode()
        with self.lock:
            self.by_marker[marker] = _sha(data)
        return marker

    def check_body(self, user: str, mailbox: str, uid: int, data: bytes) -> None:
        """`data` is UID `uid`'s body: the one it always had, or a known message's."""
        found = _MARKER.search(data)
        if found is None:
            raise ModelError(f"{mailbox} UID {uid}: body without a marker: {data[:200]!r}")
        with self.lock:
            expected = self.by_marker.get(found.group(1).decode())
        if expected != _sha(data):
            raise ModelError(f"{mailbox} UID {uid}: body differs from what was sent")
        self.body_seen(user, mailbox, uid, expected, "FETCH BODY[]")


def _message(rng: random.Random, to: str) -> bytes:
    marker = "m" + secrets.token_hex(8)
    size = rng.choice([50, 300, 2000, 20000])
    lines = "".join(f"line {i} {rng.random()}\r\n" for i in range(size // 30 + 1))
    return (
        f"From: Sender <{SENDER}>\r\nTo: <{to}>\r\nSubject: model {marker}\r\n"
        f"Message-ID: <{marker}@example.net>\r\nX-Model-Marker: {marker}\r\n\r\n{lines}"
    ).encode()


@dataclass
class Response:
    """One untagged or tagged response: its text with each literal as `{n}`, and the
    literals in order."""

    text: bytes
    literals: list[bytes]


def _parse_fetch(
    text: bytes, literals: list[bytes]
) -> tuple[int | None, set[str] | None, bytes | None]:
    """UID, FLAGS and BODY[] of a FETCH response's text."""
    uid_match = re.search(rb"\bUID (\d+)", text)
    flags_match = re.search(rb"\bFLAGS \(([^)]*)\)", text)
    body: bytes | None = None
    if re.search(rb"BODY\[\] \{\d+\}", text):
        body = literals[0]
    return (
        int(uid_match.group(1)) if uid_match else None,
        set(flags_match.group(1).decode().split()) if flags_match else None,
        body,
    )


class Session:
    """One raw-socket IMAP connection of `user` and its model of the selected mailbox."""

    def __init__(self, world: World, port: int, user: str, number: int, owned: list[str]) -> None:
        self.world = world
        self.port = port
        self.user = user
        self.number = number
        self.owned = owned  # the flags only this session changes
        self.last_append: dict[str, int] = {}  # mailbox -> the UID of our last APPEND
        self.history: deque[str] = deque(maxlen=25)
        self.tag = 0
        self.selected: str | None = None
        self.seq: list[int | None] = []
        self.grown = 0  # EXISTS responses that announced new messages
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None

    # -- wire --------------------------------------------------------------------------

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT_S)
        self.rfile = cast(BinaryIO, self.sock.makefile("rb"))
        greeting = self.rfile.readline()
        if not greeting.startswith(b"* OK"):
            raise ModelError(f"greeting {greeting!r}")
        quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
        self.command(f'LOGIN {self.user} "{quoted}"'.encode(), log_as=b"LOGIN")
        self.selected = None
        self.seq = []

    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()
            self.rfile = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read(self) -> Response:
        assert self.rfile is not None
        line = self.rfile.readline()
        if not line:
            raise ModelError("the server closed the connection")
        text, literals = b"", list[bytes]()
        while (found := _LITERAL.search(line)) is not None:
            text += line[: found.start()] + b"{%d}" % len(literals)
            literals.append(self.rfile.read(int(found.group(1))))
            line = self.rfile.readline()
        return Response(text + line.rstrip(b"\r\n"), literals)

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def command(
        self, line: bytes, *, log_as: bytes | None = None, ok: bool = True
    ) -> tuple[list[Response], bytes]:
        """Send `line` (a `{n+}` literal may be in it), apply every untagged response to the
        model, and return them with the tagged status line."""
        self.tag += 1
        tag = b"c%d" % self.tag
        shown = (log_as or line.split(b"\r\n", 1)[0])[:120]
        started = time.monotonic()
        self._send(tag + b" " + line + b"\r\n")
        self.history.append(f"{shown.decode(errors='replace')} (in flight)")
        untagged: list[Response] = []
        while True:
            response = self._read()
            if response.text.startswith(tag + b" "):
                break
            untagged.append(response)
            self.history[-1] += f" | {response.text[:100]!r}"
            self.apply(response)
        elapsed = time.monotonic() - started
        status = response.text[len(tag) + 1 :]
        self.history[-1] = (
            self.history[-1].replace("(in flight)", "", 1)
            + f" -> {status[:100]!r} ({elapsed:.2f} s) seq={self.seq[-8:]}"
        )
        verb = line.split(b" ", 2)[1 if line.startswith(b"UID ") else 0]
        self.note_time(verb.decode(), elapsed)
        self.check_status(status, untagged, ok)
        return untagged, status

    def note_time(self, name: str, elapsed: float) -> None:
        with self.world.lock:
            self.world.durations.append(elapsed)
            self.world.counts[name] = self.world.counts.get(name, 0) + 1
        if elapsed > STALL_S:
            raise ModelError(f"command took {elapsed:.2f} s (bound {STALL_S} s)")

    def check_status(self, status: bytes, untagged: list[Response], ok: bool) -> None:
        for response in [*untagged, Response(status, [])]:
            if b"[SERVERBUG]" in response.text:
                raise ModelError(f"SERVERBUG: {response.text!r}")
        if status.startswith(b"BAD"):
            raise ModelError(f"BAD to a valid command: {status!r}")
        # RFC 5530: the answer when another session expunged a message this one names
        expunged = status.startswith(b"NO [EXPUNGEISSUED]")
        if ok and not status.startswith(b"OK") and not expunged:
            raise ModelError(f"expected OK: {status!r}")

    # -- the per-session model -----------------------------------------------------------

    @property
    def box(self) -> Box:
        assert self.selected is not None
        return self.world.boxes[self.user, self.selected]

    def apply(self, response: Response) -> None:
        text = response.text
        if b"[SERVERBUG]" in text:
            raise ModelError(f"SERVERBUG: {text!r}")
        found = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH)\b", text)
        if found is None or self.selected is None:
            return
        n, kind = int(found.group(1)), found.group(2)
        if kind == b"EXISTS":
            if n < len(self.seq):
                raise ModelError(f"EXISTS {n} shrinks the mailbox of {len(self.seq)}")
            self.grown += n > len(self.seq)
            self.seq += [None] * (n - len(self.seq))
        elif kind == b"EXPUNGE":
            if not 1 <= n <= len(self.seq):
                raise ModelError(f"EXPUNGE {n} outside 1:{len(self.seq)}")
            uid = self.seq.pop(n - 1)
            if uid is not None:
                with self.world.lock:
                    self.box.expunged.add(uid)
        else:
            self.apply_fetch(n, response)

    def apply_fetch(self, n: int, response: Response) -> None:
        if not 1 <= n <= len(self.seq):
            raise ModelError(f"FETCH {n} outside 1:{len(self.seq)}")
        uid, flags, body = _parse_fetch(response.text, response.literals)
        if uid is not None:
            known = self.seq[n - 1]
            if known is None:
                self.seq[n - 1] = uid
                self.check_increasing()
            elif known != uid:
                raise ModelError(f"FETCH {n} says UID {uid}, the model has {known}")
        uid = self.seq[n - 1]
        if uid is None:
            return
        if body is not None:
            assert self.selected is not None
            self.world.check_body(self.user, self.selected, uid, body)
        if flags is not None:
            self.check_flags(uid, flags)

    def check_increasing(self) -> None:
        known = [uid for uid in self.seq if uid is not None]
        if any(a >= b for a, b in zip(known, known[1:], strict=False)):
            raise ModelError(f"UIDs out of order in the session's map: {known}")

    def check_flags(self, uid: int, flags: set[str]) -> None:
        with self.world.lock:
            expected = self.box.flags.get(uid, {})
        for flag in self.owned:
            # No entry yet: the message may be a copy the copier has not registered,
            # carrying the source's flags; after quiescence a missing entry means clear.
            want = expected.get(flag)
            if want is not None and want != (flag in flags):
                raise ModelError(
                    f"UID {uid} FLAGS {sorted(flags)}: {flag} should be "
                    f"{'set' if want else 'clear'}"
                )

    def known_uids(self, *, with_body: bool = False) -> list[int]:
        uids = [uid for uid in self.seq if uid is not None]
        if with_body:
            with self.world.lock:
                uids = [uid for uid in uids if uid in self.box.bodies]
        return uids

    # -- operations ----------------------------------------------------------------------

    def select(self, mailbox: str) -> None:
        self.selected = mailbox
        self.seq = []
        self.command(f"SELECT {mailbox}".encode())
        self.sync()

    def sync(self) -> None:
        self.command(b"UID FETCH 1:* (UID FLAGS)")

    def fetch(self, rng: random.Random) -> None:
        if self.seq and rng.random() < 0.5:
            n = rng.randint(1, len(self.seq))
            # a message expunged by another session may be answered NO (RFC 2180 4.1.2)
            self.command(b"FETCH %d (UID FLAGS)" % n, ok=False)
            return
        uids = self.known_uids()
        if uids:
            self.command(b"UID FETCH %d (UID FLAGS BODY.PEEK[])" % rng.choice(uids))

    def store(self, rng: random.Random) -> None:
        uids = self.known_uids()
        if not uids:
            return
        uid, flag, on = rng.choice(uids), rng.choice(self.owned), rng.random() < 0.6
        with self.world.lock:
            self.box.flags.setdefault(uid, {})[flag] = None  # in flight
        untagged, status = self.command(
            b"UID STORE %d %sFLAGS (%s)" % (uid, b"+" if on else b"-", flag.encode())
        )
        if not status.startswith(b"OK"):
            return  # expunged meanwhile: the flag stays unknown
        with self.world.lock:
            self.box.flags[uid][flag] = on
        for response in untagged:
            got_uid, flags, _ = _parse_fetch(response.text, response.literals)
            if got_uid == uid and flags is not None:
                self.check_flags(uid, flags)

    def append(self, rng: random.Random) -> None:
        mailbox = rng.choice(MAILBOXES)
        data = _message(rng, self.user)
        self.world.register_message(data)
        flag = rng.choice([*self.owned, ""])
        _, status = self.command(
            b"APPEND %s (%s) {%d+}\r\n" % (mailbox.encode(), flag.encode(), len(data)) + data,
            log_as=b"APPEND " + mailbox.encode(),
        )
        found = re.search(rb"\[APPENDUID \d+ (\d+)\]", status)
        if found is None:
            raise ModelError(f"APPEND without APPENDUID: {status!r}")
        uid = int(found.group(1))
        self.world.assigned(self.user, mailbox, uid, _sha(data), f"APPENDUID s{self.number}")
        with self.world.lock:
            own = self.world.boxes[self.user, mailbox].flags.setdefault(uid, {})
            for owned in self.owned:
                own.setdefault(owned, owned == flag)
            last = self.last_append.get(mailbox, 0)
            self.last_append[mailbox] = uid
        if uid <= last:
            raise ModelError(f"APPENDUID {uid} in {mailbox} after this session's {last}")

    def copy(self, rng: random.Random, *, move: bool) -> None:
        uids = self.known_uids(with_body=True)
        if not uids:
            return
        assert self.selected is not None
        target = rng.choice(MAILBOXES)
        chosen = sorted(rng.sample(uids, min(len(uids), rng.randint(1, 3))))
        line = b"UID %s %s %s" % (
            b"MOVE" if move else b"COPY",
            b",".join(b"%d" % u for u in chosen),
            target.encode(),
        )
        source = self.selected
        with self.world.lock:
            if move:
                self.box.deleted.update(chosen)
            flags_before = {u: dict(self.box.flags.get(u, {})) for u in chosen}
        # NO is allowed when another session expunged a source first (RFC 2180 4.4.1)
        untagged, status = self.command(line, ok=False)
        texts = [r.text for r in untagged] + [status]
        found = [m for t in texts if (m := re.search(rb"\[COPYUID \d+ ([\d:,]+) ([\d:,]+)\]", t))]
        if not found:
            return
        pairs = zip(_uid_set(found[0].group(1)), _uid_set(found[0].group(2)), strict=True)
        for src, dst in pairs:
            if src not in chosen:
                raise ModelError(f"COPYUID names UID {src}, not one of {chosen}")
            with self.world.lock:
                sha = self.world.boxes[self.user, source].bodies[src]
            self.world.assigned(self.user, target, dst, sha, f"COPYUID {source} {src}")
            with self.world.lock:
                # COPY copies \Deleted too: a copy of a message marked for expunge may
                # go at the target's next EXPUNGE
                if src in self.world.boxes[self.user, source].deleted:
                    self.world.boxes[self.user, target].deleted.add(dst)
                dest = self.world.boxes[self.user, target].flags.setdefault(dst, {})
                for flag in {*flags_before[src], *ALL_FLAGS}:
                    value = flags_before[src].get(flag, False) if flag in self.owned else None
                    dest.setdefault(flag, value)

    def expunge(self, rng: random.Random) -> None:
        uids = self.known_uids(with_body=True)
        if not uids:
            return
        uid = rng.choice(uids)
        with self.world.lock:
            self.box.deleted.add(uid)
        self.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        if rng.random() < 0.7:
            self.command(b"UID EXPUNGE %d" % uid)
        else:
            self.command(b"EXPUNGE")

    def idle(self, rng: random.Random, deliver: DeliverFn) -> None:
        self.tag += 1
        tag = b"c%d" % self.tag
        self._send(tag + b" IDLE\r\n")
        self.history.append("IDLE (in flight)")
        first = self._read()
        if not first.text.startswith(b"+"):
            raise ModelError(f"IDLE answered {first.text!r}")
        waited = None
        if self.selected == "INBOX" and rng.random() < 0.7:
            # the count itself may not grow: another session's EXPUNGE can come first
            before = self.grown
            deliver(self.user)
            sent = time.monotonic()
            assert self.sock is not None
            while time.monotonic() - sent < IDLE_WAIT_S:
                self.sock.settimeout(max(0.05, IDLE_WAIT_S - (time.monotonic() - sent)))
                try:
                    response = self._read()
                except TimeoutError:
                    break
                self.apply(response)
                self.history[-1] += f" | {response.text[:100]!r}"
                if self.grown > before:
                    waited = time.monotonic() - sent
                    break
            self.sock.settimeout(SOCKET_TIMEOUT_S)
            if waited is None:
                raise ModelError(f"IDLE saw no EXISTS within {IDLE_WAIT_S} s of a delivery")
            with self.world.lock:
                self.world.idle_waits.append(waited)
        self._send(b"DONE\r\n")
        while True:
            response = self._read()
            if response.text.startswith(tag + b" "):
                break
            self.apply(response)
        status = response.text[len(tag) + 1 :]
        self.history[-1] = self.history[-1].replace("(in flight)", "", 1) + (
            f" -> {status!r} (EXISTS after {waited})"
        )
        self.check_status(status, [], True)
        with self.world.lock:
            self.world.counts["IDLE"] = self.world.counts.get("IDLE", 0) + 1

    def step(self, rng: random.Random, deliver: DeliverFn) -> None:
        op = rng.choices(
            ["noop", "select", "sync", "fetch", "store", "copy", "move", "append", "expunge",
             "idle", "logout"],
            weights=[5, 4, 4, 12, 20, 4, 4, 10, 8, 2, 1],
        )[0]  # fmt: skip
        if op == "noop":
            self.command(b"NOOP")
        elif op == "select":
            self.select(rng.choice(MAILBOXES))
        elif op == "sync":
            self.sync()
        elif op == "fetch":
            self.fetch(rng)
        elif op == "store":
            self.store(rng)
        elif op in ("copy", "move"):
            self.copy(rng, move=op == "move")
        elif op == "append":
            self.append(rng)
        elif op == "expunge":
            self.expunge(rng)
        elif op == "idle":
            self.idle(rng, deliver)
        else:
            self.command(b"LOGOUT")
            self.close()
            self.connect()
            self.select(rng.choice(MAILBOXES))


class DeliverFn:
    """LMTP delivery of a fresh message to a user; what is delivered is registered."""

    def __init__(self, world: World, port: int, rng: random.Random) -> None:
        self.world = world
        self.port = port
        self.rng = rng
        self.lock = threading.Lock()

    def __call__(self, user: str) -> None:
        with self.lock:
            message = _message(self.rng, user)
        marker = self.world.register_message(delivery_headers(SENDER, user) + message)
        with self.world.lock:
            self.world.delivered[user].append(marker)
        with smtplib.LMTP("127.0.0.1", self.port, timeout=SOCKET_TIMEOUT_S) as client:
            client.sendmail(SENDER, [user], message)


def _uid_set(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        a, b = int(low), int(high or low)
        out += range(a, b + 1) if a <= b else range(a, b - 1, -1)
    return out


def _run_session(session: Session, rng: random.Random, deliver: DeliverFn, deadline: float) -> None:
    try:
        session.connect()
        session.select(rng.choice(MAILBOXES))
        for _ in range(MAX_OPS):
            if time.monotonic() > deadline or session.world.stop.is_set():
                break
            session.step(rng, deliver)
        session.command(b"LOGOUT")
    except Exception as exc:
        session.world.stop.set()
        history = "\n    ".join(session.history)
        with session.world.lock:
            session.world.failures.append(
                f"session {session.number} ({session.user}, {session.selected}): "
                f"{type(exc).__name__}: {exc}\n  last commands:\n    {history}"
            )
    finally:
        session.close()


def _run_deliveries(world: World, deliver: DeliverFn, rng: random.Random, deadline: float) -> None:
    try:
        while time.monotonic() < deadline and not world.stop.wait(rng.uniform(0.1, 0.6)):
            deliver(rng.choice(USERS))
    except Exception as exc:
        world.stop.set()
        with world.lock:
            world.failures.append(f"LMTP delivery: {type(exc).__name__}: {exc}")


def _final_check(world: World, port: int) -> None:
    """Every session quiesced: flags equal the model, nothing lost, bodies byte-exact."""
    for user in USERS:
        checker = Session(world, port, user, -1, ALL_FLAGS)
        checker.connect()
        try:
            for mailbox in MAILBOXES:
                checker.selected, checker.seq = mailbox, []
                checker.command(f"EXAMINE {mailbox}".encode())
                untagged, _ = checker.command(b"UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
                box = world.boxes[user, mailbox]
                alive: set[int] = set()
                for response in untagged:
                    uid, flags, body = _parse_fetch(response.text, response.literals)
                    if uid is None or flags is None or body is None:
                        continue
                    alive.add(uid)
                    world.check_body(user, mailbox, uid, body)
                    expected = box.flags.get(uid, {})
                    for flag in ALL_FLAGS:
                        if _user_owns(user, flag):
                            want = expected.get(flag, False)
                            if want is not None and want != (flag in flags):
                                raise ModelError(
                                    f"{user} {mailbox} UID {uid}: {flag} should be "
                                    f"{'set' if want else 'clear'}, FLAGS {sorted(flags)}"
                                )
                lost = set(box.bodies) - alive - box.deleted
                if lost:
                    raise ModelError(
                        f"{user} {mailbox}: UIDs {sorted(lost)} lost "
                        f"(learned from {[box.origin.get(u) for u in sorted(lost)]})"
                    )
            # EXPUNGE and MOVE only pick messages whose body was fetched, so every
            # delivery was seen by someone, or is still in a mailbox now
            with world.lock:
                gone = [m for m in world.delivered[user] if not _ever_seen(world, user, m)]
            if gone:
                raise ModelError(f"{user}: deliveries {gone} lost")
            checker.command(b"LOGOUT")
        finally:
            checker.close()


def _user_owns(user: str, flag: str) -> bool:
    """Whether a session of `user` owns `flag` (every user has a \\Flagged owner)."""
    if flag == "\\Flagged":
        return True
    index = USERS.index(user)
    number = int(flag.removeprefix("$kw"))
    return number // CONNECTIONS_PER_USER == index


def _ever_seen(world: World, user: str, marker: str) -> bool:
    sha = world.by_marker[marker]
    return any(sha in world.boxes[user, mb].bodies.values() for mb in MAILBOXES)


def _make_users(url: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        async with engine.begin() as conn:
            await add_domain(conn, "example.org")
        for email in USERS:
            await create_user(engine, email, Password.from_str(PASSWORD), CRYPTO)
        await engine.dispose()

    asyncio.run(run())


def _database_truth(url: str, failure: str) -> str:
    """For a failure about a message's flags: the row as stored, read past the server with
    the user's password, so the report says whether the database or a session's view of
    it was wrong."""
    found = _FLAG_FAILURE.search(failure)
    if found is None:
        return ""
    user, mailbox, uid = found.group(1), found.group(2), int(found.group(3))

    async def run() -> str:
        engine = create_engine(url)
        try:
            account, _slot = await unlock_account(engine, user, Password.from_str(PASSWORD), CRYPTO)
            async with engine.connect() as conn:
                box = await get_mailbox(conn, account, mailbox)
                rows = [r for r in await load_messages(conn, account, box.id) if r.uid == uid]
            if not rows:
                return (
                    f"\n  database: {mailbox} UID {uid} is not stored"
                    f" (mailbox modseq {box.highest_modseq})"
                )
            row = rows[0]
            return (
                f"\n  database: {mailbox} UID {uid} FLAGS {sorted(row.flags)} modseq {row.modseq}"
                f" claimed {row.claimed} (mailbox modseq {box.highest_modseq})"
            )
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except Exception as exc:  # a report of a failure must not hide it
        return f"\n  database: not read ({type(exc).__name__}: {exc})"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[CryptmailServer, str]]:
    """A running server and its database URL."""
    data = tmp_path / "data"
    data.mkdir()
    url = database_url
    _make_users(url)
    serve = CryptmailServer(
        data,
        imap=True,
        config=f"[database]\nurl = '{url}'\n[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n",
    )
    serve.start(timeout=60)
    try:
        yield serve, url
    finally:
        serve.stop()


def _run(server: CryptmailServer, load_s: float, database_url: str) -> None:
    replay = os.environ.get("CRYPTMAIL_MULTI_SEED")
    seed = int(replay) if replay else random.SystemRandom().randrange(1, 2**32)
    world = World(seed)
    master = random.Random(seed)
    deliver = DeliverFn(world, server.port, random.Random(master.random()))
    deadline = time.monotonic() + load_s
    threads = []
    for n in range(len(USERS) * CONNECTIONS_PER_USER):
        user = USERS[n // CONNECTIONS_PER_USER]
        owned = [f"$kw{n}"] + (["\\Flagged"] if n % CONNECTIONS_PER_USER == 0 else [])
        session = Session(world, server.imap_port, user, n, owned)
        rng = random.Random(master.random())
        threads.append(
            threading.Thread(target=_run_session, args=(session, rng, deliver, deadline))
        )
    threads.append(
        threading.Thread(
            target=_run_deliveries, args=(world, deliver, random.Random(master.random()), deadline)
        )
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(load_s + 120)
    hung = [t for t in threads if t.is_alive()]
    if not world.failures and hung:
        world.failures.append(f"{len(hung)} threads still running after the deadline")
    if not world.failures:
        try:
            _final_check(world, server.imap_port)
        except (ModelError, OSError) as exc:
            world.failures.append(f"final check: {exc}")
    durations = sorted(world.durations) or [0.0]
    p99 = durations[int(len(durations) * 0.99)]
    summary = (
        f"seed {seed} (replay: CRYPTMAIL_MULTI_SEED={seed}); {len(world.durations)} commands "
        f"{dict(sorted(world.counts.items()))}; p99 {p99 * 1000:.0f} ms, slowest "
        f"{durations[-1] * 1000:.0f} ms; {len(world.idle_waits)} IDLE deliveries seen, slowest "
        f"after {max(world.idle_waits, default=0.0):.2f} s"
    )
    print(summary)
    reports = [failure + _database_truth(database_url, failure) for failure in world.failures]
    assert not world.failures, summary + "\n" + "\n".join(reports)


def test_many_sessions_agree_with_the_model(server: tuple[CryptmailServer, str]) -> None:
    _run(server[0], LOAD_S, server[1])


@pytest.mark.slow
@pytest.mark.timeout(SLOW_LOAD_S + 300)  # past the suite's 300 s default
def test_many_sessions_for_ten_minutes(server: tuple[CryptmailServer, str]) -> None:
    _run(server[0], SLOW_LOAD_S, server[1])
