"""Return-Path and Delivered-To: added at the top of each recipient's copy, as Dovecot
writes them, before sealing; the retry tag still knows a retry of the same message."""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket

from sqlalchemy import func, select

from cryptmail.db import tables as t
from cryptmail.delivery import delivery_headers
from cryptmail.users import add_alias

from .conftest import Rig

MESSAGE = b"From: a@example.net\r\nSubject: hello\r\nMessage-ID: <t@example.net>\r\n\r\nHello\r\n"


def _send(port: int, sender: str, recipients: list[str], message: bytes) -> None:
    """One transaction; every recipient must get a 250 (smtplib reads only one reply
    after DATA, so several recipients go through the socket)."""
    if len(recipients) == 1:
        with smtplib.LMTP("127.0.0.1", port) as client:
            client.ehlo("client.test")
            assert client.sendmail(sender, recipients, message) == {}
        return
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rb")
        script = [b"LHLO c.test", b"MAIL FROM:<%s>" % sender.encode()]
        script += [b"RCPT TO:<%s>" % r.encode() for r in recipients]
        sock.sendall(b"\r\n".join([*script, b"DATA", b""]) + message + b".\r\nQUIT\r\n")
        replies = [line for line in iter(f.readline, b"") if line[3:4] != b"-"]
    assert [r[:3] for r in replies[-len(recipients) - 1 : -1]] == [b"250"] * len(recipients)


async def _rows(rig: Rig) -> int:
    async with rig.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(t.cm_messages))).scalar_one()
        )


def test_the_header_lines_are_dovecots() -> None:
    assert delivery_headers("s@example.net", "alice@example.org") == (
        b"Return-Path: <s@example.net>\r\nDelivered-To: alice@example.org\r\n"
    )
    assert delivery_headers("", "alice@example.org").startswith(b"Return-Path: <>\r\n")
    assert delivery_headers("jörg@example.net", "jü@example.org") == (
        "Return-Path: <jörg@example.net>\r\nDelivered-To: jü@example.org\r\n".encode()
    )


async def test_one_recipient_gets_both_headers_on_top(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    await asyncio.to_thread(_send, rig.port, "sender@example.net", ["alice@example.org"], MESSAGE)
    assert await rig.messages("alice@example.org") == [
        b"Return-Path: <sender@example.net>\r\nDelivered-To: alice@example.org\r\n" + MESSAGE
    ]


async def test_null_sender_is_an_empty_return_path(rig: Rig) -> None:
    await rig.add_user("alice@example.org", crypt=0)
    await asyncio.to_thread(_send, rig.port, "", ["alice@example.org"], MESSAGE)
    assert await rig.messages("alice@example.org") == [
        b"Return-Path: <>\r\nDelivered-To: alice@example.org\r\n" + MESSAGE
    ]


async def test_each_recipient_gets_its_own_delivered_to(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    await rig.add_user("bob@example.org", crypt=0)
    await asyncio.to_thread(
        _send, rig.port, "s@example.net", ["alice@example.org", "bob@example.org"], MESSAGE
    )
    for who in ("alice@example.org", "bob@example.org"):
        assert await rig.messages(who) == [delivery_headers("s@example.net", who) + MESSAGE]


async def test_an_alias_is_delivered_to_the_address_given_in_rcpt(rig: Rig) -> None:
    # Dovecot's lmtp_hdr_delivery_address = final (its default): the RCPT TO address.
    await rig.add_user("alice@example.org")
    await rig.add_user("bob@example.org")
    async with rig.engine.begin() as conn:
        await add_alias(conn, "team@example.org", "alice@example.org")
        await add_alias(conn, "team@example.org", "bob@example.org")
    await asyncio.to_thread(_send, rig.port, "s@example.net", ["team@example.org"], MESSAGE)
    expected = [delivery_headers("s@example.net", "team@example.org") + MESSAGE]
    assert await rig.messages("alice@example.org") == expected
    assert await rig.messages("bob@example.org") == expected


async def test_a_user_reached_twice_gets_one_copy_for_the_first_address(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    async with rig.engine.begin() as conn:
        await add_alias(conn, "team@example.org", "alice@example.org")
    await asyncio.to_thread(
        _send, rig.port, "s@example.net", ["team@example.org", "alice@example.org"], MESSAGE
    )
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@example.net", "team@example.org") + MESSAGE
    ]


async def test_a_large_message_spooled_to_disk_gets_the_headers_too(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    big = b"Subject: big\r\n\r\n" + os.urandom(400_000).hex().encode() + b"\r\n"
    await asyncio.to_thread(_send, rig.port, "s@example.net", ["alice@example.org"], big)
    assert await rig.messages("alice@example.org") == [
        delivery_headers("s@example.net", "alice@example.org") + big
    ]


async def test_a_retry_to_the_same_recipient_is_recognised(rig: Rig) -> None:
    await rig.add_user("alice@example.org")
    for _ in range(2):
        await asyncio.to_thread(_send, rig.port, "s@example.net", ["alice@example.org"], MESSAGE)
    assert await _rows(rig) == 1
    assert len(await rig.messages("alice@example.org")) == 1


async def test_the_same_bytes_through_another_address_are_another_copy(rig: Rig) -> None:
    # The copies differ (Delivered-To), so the second is no retry of the first.
    await rig.add_user("alice@example.org")
    async with rig.engine.begin() as conn:
        await add_alias(conn, "team@example.org", "alice@example.org")
    await asyncio.to_thread(_send, rig.port, "s@example.net", ["alice@example.org"], MESSAGE)
    await asyncio.to_thread(_send, rig.port, "s@example.net", ["team@example.org"], MESSAGE)
    assert sorted(await rig.messages("alice@example.org")) == sorted(
        delivery_headers("s@example.net", who) + MESSAGE
        for who in ("alice@example.org", "team@example.org")
    )
