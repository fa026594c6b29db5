"""LMTP dialogues over a real socket, with the stdlib client where it fits."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket

import pytest
from sqlalchemy import func, select

from cryptmail.db import tables as t
from cryptmail.delivery import Limits, delivery_headers
from cryptmail.delivery._protocol import Envelope, LmtpConnection
from cryptmail.errors import StoreUnavailable
from cryptmail.users import add_user

from .conftest import MakeRig, Rig

MESSAGE = (
    b"From: a@example.net\r\nTo: alice@example.org\r\nSubject: hello\r\n"
    b"Message-ID: <1@example.net>\r\n\r\nHello\r\n"
)


def _send(port: int, recipients: list[str], message: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.ehlo("client.test")
        try:
            return client.sendmail("sender@example.net", recipients, message)
        except smtplib.SMTPRecipientsRefused as exc:
            return exc.recipients


def _dialogue(port: int, lines: bytes, replies: int) -> list[bytes]:
    """Send raw bytes at once (pipelined) and read `replies` reply lines (last lines)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        sock.sendall(lines)
        out: list[bytes] = []
        while len(out) < replies:
            line = f.readline()
            if not line:
                break
            if line[3:4] == b"-":
                continue
            out.append(line.rstrip(b"\r\n"))
        return out


async def test_one_recipient_stored_sealed(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    refused = await asyncio.to_thread(_send, rig.port, ["alice@example.org"], MESSAGE)
    assert refused == {}
    assert await rig.messages("alice@example.org") == [
        delivery_headers("sender@example.net", "alice@example.org") + MESSAGE
    ]
    async with rig.engine.connect() as conn:
        sealed = (await conn.execute(select(t.cm_messages.c.sealed))).scalars().all()
    assert sealed == [True]


async def test_per_recipient_replies(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    await rig.add_user("bob@example.org", crypt=0)
    await rig.add_user("full@example.org", quota=1)
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net>\r\n"
        b"RCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
        b"RCPT TO:<bob@example.org>\r\nRCPT TO:<full@example.org>\r\nDATA\r\n"
    )
    body = MESSAGE + b".\r\nQUIT\r\n"
    replies = await asyncio.to_thread(_dialogue, rig.port, script + body, 11)
    codes = [r[:9] for r in replies]
    assert codes == [
        b"250 c.test"[:0] + replies[0][:9],  # LHLO last line (SIZE)
        b"250 2.1.0",
        b"250 2.1.5",
        b"550 5.1.1",
        b"250 2.1.5",
        b"250 2.1.5",
        b"354 Start",
        b"250 2.0.0",  # alice
        b"250 2.0.0",  # bob
        b"452 4.2.2",  # full
        b"221 2.0.0",
    ]
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@example.net", "alice@example.org") + MESSAGE
    ]
    assert await rig.messages("bob@example.org") == [
        delivery_headers("s@example.net", "bob@example.org") + MESSAGE
    ]
    assert await rig.messages("full@example.org") == []


async def test_smtplib_multi_recipient_unknown(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    refused = await asyncio.to_thread(
        _send, rig.port, ["alice@example.org", "ghost@example.org"], MESSAGE
    )
    assert refused["ghost@example.org"][0] == 550
    assert len(await rig.messages("alice@example.org")) == 1


async def test_dot_stuffing_and_8bit_kept_exactly(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    body = (
        "Subject: ümlaut\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        ".leading dot\r\n..two dots\r\n.\tx\r\nlast line without CRLF? no: "
        "grüße\r\n"
    ).encode()
    stuffed = b"\r\n".join(
        (b"." + line if line.startswith(b".") else line) for line in body.split(b"\r\n")
    )
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net> BODY=8BITMIME SIZE=100\r\n"
        b"RCPT TO:<alice@example.org>\r\nDATA\r\n" + stuffed + b".\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script, 6)
    assert replies[4].startswith(b"250 2.0.0"), replies
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@example.net", "alice@example.org") + body
    ]


async def test_bare_lf_dot_does_not_end_data(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    body = b"Subject: x\r\n\r\nbefore\n.\nsmuggled\r\n"
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
        + body
        + b".\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script, 6)
    assert replies[4].startswith(b"250 2.0.0")
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@example.net", "alice@example.org") + body
    ]


async def test_long_data_line_kept_and_huge_command_refused(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    body = b"Subject: x\r\n\r\n" + b"A" * 300_000 + b"\r\n"
    script = (
        b"LHLO c.test\r\nNOOP " + b"x" * 100_000 + b"\r\nMAIL FROM:<s@example.net>\r\n"
        b"RCPT TO:<alice@example.org>\r\nDATA\r\n" + body + b".\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script, 7)
    assert replies[1].startswith(b"500 5.5.2")
    assert replies[5].startswith(b"250 2.0.0")
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@example.net", "alice@example.org") + body
    ]


async def test_message_limit_answers_452_for_that_recipient_only(rig_factory: MakeRig) -> None:
    """quota.messages: the delivery that would pass the limit gets 452 4.2.2 (the sender
    retries; the user frees room), the other recipients of the same message get theirs."""
    rig = await rig_factory(message_limit=1)
    await rig.add_user("alice@example.org")
    await rig.add_user("bob@example.org")
    assert await asyncio.to_thread(_send, rig.port, ["alice@example.org"], MESSAGE) == {}
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net>\r\n"
        b"RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script + MESSAGE + b".\r\nQUIT\r\n", 8)
    assert [r[:9] for r in replies[-3:]] == [b"452 4.2.2", b"250 2.0.0", b"221 2.0.0"]
    assert len(await rig.messages("alice@example.org")) == 1
    assert len(await rig.messages("bob@example.org")) == 1


async def test_message_over_size_refused(rig_factory: MakeRig) -> None:
    rig = await rig_factory(Limits(max_message_bytes=1000))
    await rig.add_user("alice@example.org")
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net> SIZE=5000\r\n"
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
        + b"x" * 2000
        + b"\r\n.\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script, 7)
    assert replies[1].startswith(b"552 5.3.4")
    assert replies[5].startswith(b"552 5.3.4")
    assert await rig.messages("alice@example.org") == []


async def test_too_many_recipients(rig_factory: MakeRig) -> None:
    rig = await rig_factory(Limits(max_recipients=1))
    await rig.add_user("alice@example.org")
    await rig.add_user("bob@example.org")
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
        b"RCPT TO:<bob@example.org>\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script, 5)
    assert replies[3].startswith(b"452 4.5.3")


async def test_state_errors_and_misc_commands(rig: Rig) -> None:
    script = (
        b"MAIL FROM:<s@example.net>\r\nEHLO x\r\nLHLO c.test\r\nRCPT TO:<a@example.org>\r\n"
        b"DATA\r\nVRFY someone\r\nMAIL FROM:<s@x>\r\nMAIL FROM:<s@x>\r\nRSET\r\nNOOP\r\n"
        b"MAIL FROM:<s@x> FOO=1\r\nFROB\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_dialogue, rig.port, script, 13)
    assert [r[:3] for r in replies] == [
        b"503", b"500", b"250", b"503", b"503", b"252", b"250", b"503",
        b"250", b"250", b"555", b"500", b"221",
    ]  # fmt: skip


async def test_no_key_pair_yet_is_transient(rig: Rig) -> None:
    async with rig.engine.begin() as conn:
        await add_user(conn, "new@example.org", "{PLAIN}x", crypt=2)
    refused = await asyncio.to_thread(_send_expect_data_error, rig.port, "new@example.org")
    assert refused.startswith(b"451 4.3.0") or refused.startswith(b"4.3.0")


def _send_expect_data_error(port: int, recipient: str) -> bytes:
    script = (
        b"LHLO c.test\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<"
        + recipient.encode()
        + b">\r\nDATA\r\n"
        + MESSAGE
        + b".\r\nQUIT\r\n"
    )
    return _dialogue(port, script, 6)[4]


async def test_internal_failure_is_451_without_internals(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.add_user("alice@example.org")

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("INTERNAL-SECRET-DETAIL")

    monkeypatch.setattr("cryptmail.delivery._handler.deliver_message", broken)
    caplog.set_level(logging.INFO)
    reply = await asyncio.to_thread(_send_expect_data_error, rig.port, "alice@example.org")
    assert reply.startswith(b"451 4.3.0")
    assert b"INTERNAL" not in reply
    async with rig.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(t.cm_messages))).scalar()
    assert count == 0
    assert "result=451" in caplog.text
    assert "example.net" not in caplog.text and "hello" not in caplog.text
    assert not list((rig.data_dir / "spool").glob("spool-*"))


async def test_a_failure_is_logged_with_its_reason_and_queue_id(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The log says why (our error's message) and under which queue id, which the reply
    names too, so Postfix's deferral line leads to ours; no address, no subject."""
    await rig.add_user("alice@example.org")

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("the blob directory /srv/blobs/tmp is missing or not writable")

    monkeypatch.setattr("cryptmail.delivery._handler.deliver_message", unavailable)
    caplog.set_level(logging.INFO)
    reply = await asyncio.to_thread(_send_expect_data_error, rig.port, "alice@example.org")
    assert reply.startswith(b"451 4.3.0")
    queue_id = reply.decode().rsplit("[queue id ", 1)[1].rstrip("]")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivery ")]
    assert line.startswith(f"delivery {queue_id} user=")
    assert "result=451: StoreUnavailable: the blob directory /srv/blobs/tmp" in line
    for private in ("example.net", "example.org", "alice", "hello", "Hello"):
        assert private not in caplog.text


async def test_an_unexpected_failure_is_logged_by_type_only(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.add_user("alice@example.org")

    async def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("alice@example.org said hello")  # foreign text: anything at all

    monkeypatch.setattr("cryptmail.delivery._handler.deliver_message", broken)
    caplog.set_level(logging.INFO)
    await asyncio.to_thread(_send_expect_data_error, rig.port, "alice@example.org")
    assert "result=451: ValueError (unexpected; the traceback is logged at DEBUG)" in caplog.text
    assert "alice@" not in caplog.text and "hello" not in caplog.text


async def test_connection_cap(rig_factory: MakeRig) -> None:
    rig = await rig_factory(max_connections=1)

    def two() -> bytes:
        with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as first:
            assert first.makefile("rb").readline().startswith(b"220")
            with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as second:
                return second.makefile("rb").readline()

    assert (await asyncio.to_thread(two)).startswith(b"421")


async def test_idle_timeout(rig_factory: MakeRig) -> None:
    rig = await rig_factory(Limits(idle_timeout_s=0.3))

    def idle() -> bytes:
        with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as sock:
            f = sock.makefile("rb")
            f.readline()
            return f.readline()

    assert (await asyncio.to_thread(idle)).startswith(b"421 4.4.2")


async def test_graceful_stop_finishes_delivery_in_flight(rig: Rig) -> None:
    await rig.add_user("alice@example.org")

    def slow_client() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(
                b"LHLO c\r\nMAIL FROM:<s@x.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
            )
            for _ in range(9):
                f.readline()
            sock.sendall(MESSAGE[:20])
            stopping.wait(10)
            sock.sendall(MESSAGE[20:] + b".\r\n")
            return [f.readline(), f.readline()]

    import threading

    stopping = threading.Event()
    client = asyncio.create_task(asyncio.to_thread(slow_client))
    await asyncio.sleep(0.5)
    stop = asyncio.create_task(rig.server.stop(grace_s=10))
    await asyncio.sleep(0.2)
    stopping.set()
    replies = await client
    await stop
    assert replies[0].startswith(b"250 2.0.0")
    assert replies[1].startswith(b"421")
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@x.net", "alice@example.org") + MESSAGE
    ]


def _transactions(port: int, client: int, users: list[str], count: int) -> None:
    """`count` messages over one connection, each to every user in `users`."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        f = sock.makefile("rb")

        def reply(first: bytes) -> None:
            while True:
                line = f.readline()
                assert line.startswith(first), line
                if line[3:4] != b"-":
                    return

        reply(b"220")
        sock.sendall(b"LHLO c.test\r\n")
        reply(b"250")
        for n in range(count):
            rcpts = b"".join(b"RCPT TO:<%s>\r\n" % u.encode() for u in users)
            sock.sendall(b"MAIL FROM:<s@example.net>\r\n" + rcpts + b"DATA\r\n")
            for _ in range(1 + len(users)):
                reply(b"250")
            reply(b"354")
            sock.sendall(_many_message(client, n) + b".\r\n")
            for _ in users:
                reply(b"250")
        sock.sendall(b"QUIT\r\n")


def _many_message(client: int, n: int) -> bytes:
    return b"Subject: m %d/%d\r\n\r\n%s\r\n" % (client, n, b"%d.%d " % (client, n) * 30_000)


async def test_many_recipients_over_several_connections_each_get_every_copy(rig: Rig) -> None:
    users = [f"u{n}@example.org" for n in range(8)]
    for n, email in enumerate(users):
        await rig.add_user(email, crypt=0 if n == 3 else 2)
    clients, count = 4, 3
    await asyncio.gather(
        *(asyncio.to_thread(_transactions, rig.port, c, users, count) for c in range(clients))
    )
    sent = sorted(_many_message(c, n) for c in range(clients) for n in range(count))
    for email in users:
        stored = await rig.messages(email)
        trace = delivery_headers("s@example.net", email)
        assert all(m.startswith(trace) for m in stored)
        assert sorted(m[len(trace) :] for m in stored) == sent


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    async def write(self, data: bytes) -> None:
        self.data += data

    async def close(self) -> None:
        pass

    def discard(self) -> None:
        pass


class _Handler:
    """Accepts every recipient; one 250 per recipient."""

    async def handle_rcpt(
        self, session: object, envelope: object, address: str
    ) -> tuple[str, object]:
        return "250 2.1.5 OK", address

    async def open_sink(self, session: object, envelope: object) -> _Sink:
        return _Sink()

    async def handle_data(
        self, session: object, envelope: Envelope, sink: object, size: int
    ) -> list[str]:
        return ["250 2.0.0 OK"] * len(envelope.recipients)


class _Writer:
    """A StreamWriter that records each write (each is one send on a socket)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> object:
        return None


async def _run_dialogue(*pieces: bytes) -> list[bytes]:
    """The server's writes for a client that sends each piece once the server waits for
    input (a pipelining client sends each group after reading the replies before)."""
    reader = asyncio.StreamReader()
    writer = _Writer()
    connection = LmtpConnection(
        reader,
        writer,  # type: ignore[arg-type]
        _Handler(),
        hostname="lmtp.test",
        limits=Limits(),
    )
    task = asyncio.create_task(connection.run())
    for piece in pieces:
        await asyncio.sleep(0.01)
        reader.feed_data(piece)
    reader.feed_eof()
    await asyncio.wait_for(task, 10)
    assert writer.closed
    return writer.writes


async def test_pipelined_replies_go_out_in_one_send_each_group() -> None:
    """MAIL, two RCPTs and DATA sent at once (as Postfix pipelines them) get their four
    replies in one send; the message's per-recipient replies in one more; a client
    that waits for each reply gets each at once."""
    writes = await _run_dialogue(
        b"LHLO c.test\r\n",
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"DATA\r\n",
        b"Subject: x\r\n\r\nbody\r\n.\r\n",
        b"MAIL FROM:<s@example.net>\r\n",
        b"QUIT\r\n",
    )
    assert writes[0].startswith(b"220 ")
    assert writes[1].startswith(b"250-") and writes[1].endswith(b"\r\n")  # LHLO alone
    assert writes[2] == (
        b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n"
        b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"
    )
    assert writes[3] == b"250 2.0.0 OK\r\n250 2.0.0 OK\r\n"
    assert writes[4] == b"250 2.1.0 OK\r\n"
    assert writes[5] == b"221 2.0.0 Bye\r\n"
    assert len(writes) == 6


async def test_held_replies_are_sent_before_the_connection_closes() -> None:
    """Commands and the end of input in one piece: every reply still goes out."""
    writes = await _run_dialogue(b"LHLO c.test\r\nNOOP\r\nQUIT\r\n")
    assert b"".join(writes[1:]).endswith(b"250 2.0.0 OK\r\n221 2.0.0 Bye\r\n")
