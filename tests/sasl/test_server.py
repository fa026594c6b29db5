"""The SASL listener as Postfix's smtpd uses it: handshake, PLAIN and LOGIN, app
passwords, the shared throttle, broken clients, many clients at once, and a stop."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.db import tables as t
from cryptmail.keys import (
    LoginThrottle,
    add_app_password,
    list_key_pairs,
    revoke_app_password,
    unlock_account,
)
from cryptmail.sasl import SaslChecker, SaslServer
from cryptmail.secret import Password
from cryptmail.users import add_user, find_user, hash_password

from .conftest import CRYPTO, PASSWORD, Client, Rig, b64, plain

ALICE, BOB = "alice@example.org", "bob@example.org"


async def test_handshake_offers_plain_and_login_as_plaintext_mechanisms(rig: Rig) -> None:
    client = await rig.client()
    assert client.greeting[0] == "VERSION\t1\t2"
    assert "MECH\tPLAIN\tplaintext" in client.greeting
    assert "MECH\tLOGIN\tplaintext" in client.greeting
    assert [g.split("\t")[0] for g in client.greeting[3:]] == ["SPID", "CUID", "COOKIE"]
    await client.close()


async def test_plain_right_and_wrong_password_on_one_connection(rig: Rig) -> None:
    client = await rig.client()
    assert await client.auth(1, "PLAIN", "resp=" + plain(ALICE, "wrong password!")) == (
        f"FAIL\t1\tuser={ALICE}"
    )
    assert await client.auth(2, "PLAIN", "resp=" + plain(ALICE, PASSWORD)) == (
        f"OK\t2\tuser={ALICE}"
    )
    # The address as typed is looked up as a login is; the answer names the stored one.
    answer = await client.auth(3, "PLAIN", "resp=" + plain(" Alice@Example.org", PASSWORD))
    assert answer == f"OK\t3\tuser={ALICE}"
    await client.close()


async def test_plain_without_initial_response_continues(rig: Rig) -> None:
    client = await rig.client()
    assert await client.auth(1, "PLAIN") == "CONT\t1\t"
    await client.send("CONT\t1\t" + plain(BOB, PASSWORD))
    assert await client.read() == f"OK\t1\tuser={BOB}"
    await client.close()


async def test_login_mechanism_prompts_for_user_then_password(rig: Rig) -> None:
    client = await rig.client()
    assert await client.auth(5, "LOGIN") == "CONT\t5\t" + b64(b"Username:")
    await client.send("CONT\t5\t" + b64(BOB.encode()))
    assert await client.read() == "CONT\t5\t" + b64(b"Password:")
    await client.send("CONT\t5\t" + b64(PASSWORD.encode()))
    assert await client.read() == f"OK\t5\tuser={BOB}"
    await client.close()


async def test_app_password_works_until_revoked(rig: Rig) -> None:
    account, _ = await unlock_account(rig.engine, ALICE, Password.from_str(PASSWORD), CRYPTO)
    app = await add_app_password(rig.engine, account, "phone", CRYPTO)
    client = await rig.client()
    assert await client.auth(1, "PLAIN", "resp=" + plain(ALICE, app)) == f"OK\t1\tuser={ALICE}"
    await revoke_app_password(rig.engine, account.user.id, "phone", account=account)
    # Nothing was cached: the very next AUTH fails.
    assert await client.auth(2, "PLAIN", "resp=" + plain(ALICE, app)) == f"FAIL\t2\tuser={ALICE}"
    await client.close()


async def test_unusable_requests_fail_alone_and_the_connection_goes_on(rig: Rig) -> None:
    client = await rig.client()
    answer = await client.auth(1, "CRAM-MD5")
    assert answer.startswith("FAIL\t1\treason=")
    assert await client.auth(2, "PLAIN", "resp=not base64!") == (
        "FAIL\t2\treason=Invalid base64 data"
    )
    # Another user's identity as authzid: refused, with no reason that helps a guesser.
    other = b64(f"{BOB}\x00{ALICE}\x00{PASSWORD}".encode())
    assert await client.auth(3, "PLAIN", "resp=" + other) == "FAIL\t3"
    assert await client.auth(4, "PLAIN", "resp=" + plain(ALICE, PASSWORD)) == (
        f"OK\t4\tuser={ALICE}"
    )
    await client.close()


async def test_protocol_errors_close_only_that_connection(rig: Rig) -> None:
    healthy = await rig.client()
    for opening in (
        b"VERSION\t2\t0\n",  # another major version
        b"VERSION\t1\t0\nHELLO\tthere\n",  # an unknown command
        b"VERSION\t1\t0\nCONT\t9\tAAAA\n",  # CONT for no request
        b"VERSION\t1\t0\nAUTH\tx\tPLAIN\n",  # an id that is not a number
        b"VERSION\t1\t0\nAUTH\t1\tPLAIN\tresp=" + b"A" * 20_000 + b"\n",  # a line too long
    ):
        broken = await Client.connect(rig.server.port, handshake=False)
        broken.writer.write(opening)
        assert await broken.closed(), opening[:40]
    answer = await healthy.auth(1, "PLAIN", "resp=" + plain(BOB, PASSWORD))
    assert answer == f"OK\t1\tuser={BOB}"
    await healthy.close()


async def test_wrong_guesses_empty_the_address_bucket_shared_with_imap(rig: Rig) -> None:
    client = await rig.client()
    for request_id in range(1, 4):  # the rig's address burst is 3
        answer = await client.auth(request_id, "PLAIN", "resp=" + plain(ALICE, "guess"))
        assert answer == f"FAIL\t{request_id}\tuser={ALICE}"
    # Refused before any check, even with the right password: a temporary failure
    # (Postfix: 454 4.7.0), so a real user's client tries again later.
    answer = await client.auth(4, "PLAIN", "resp=" + plain(ALICE, PASSWORD))
    assert answer == f"FAIL\t4\tuser={ALICE}\ttemp"
    # The same throttle object IMAP and the web use refuses alice there too.
    assert rig.throttle.refusals == 1
    # Another user is not held up.
    assert await client.auth(5, "PLAIN", "resp=" + plain(BOB, PASSWORD)) == f"OK\t5\tuser={BOB}"
    await client.close()


async def test_many_clients_and_interleaved_requests_at_once(rig: Rig) -> None:
    async def one_client(index: int) -> list[str]:
        client = await rig.client()
        user = (ALICE, BOB)[index % 2]
        # Two requests in flight on one connection, answered by id.
        await client.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain(user, PASSWORD)}")
        await client.send("AUTH\t2\tLOGIN\tservice=smtp")
        answers = [await client.read()]
        await client.send("CONT\t2\t" + b64(user.encode()))
        answers.append(await client.read())
        await client.send("CONT\t2\t" + b64(PASSWORD.encode()))
        answers.append(await client.read())
        answers.append(await client.read())
        await client.close()
        return answers

    results = await asyncio.gather(*(one_client(i) for i in range(8)))
    for index, answers in enumerate(results):
        user = (ALICE, BOB)[index % 2]
        assert sorted(a for a in answers if a.startswith("OK")) == [
            f"OK\t1\tuser={user}",
            f"OK\t2\tuser={user}",
        ], answers
        assert "CONT\t2\t" + b64(b"Username:") in answers


async def test_first_login_of_an_ispmail_row_makes_its_keys_as_imap_would(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        legacy = hash_password(Password.from_str("old ISPmail pw"), "SHA512-CRYPT")
        await add_user(conn, "carol@example.org", legacy, crypt=2)
    server = SaslServer(SaslChecker(engine, CRYPTO, LoginThrottle()), "127.0.0.1:0")
    await server.start()
    client = await Client.connect(server.port)
    answer = await client.auth(1, "PLAIN", "resp=" + plain("carol@example.org", "old ISPmail pw"))
    assert answer == "OK\t1\tuser=carol@example.org"
    await client.close()
    await server.stop(1.0)
    async with engine.connect() as conn:
        carol = await find_user(conn, "carol@example.org")
        assert carol is not None
        assert len(await list_key_pairs(conn, carol.id)) == 1
        # The weak SHA512-CRYPT hash was replaced, as at an IMAP login.
        stored = (
            await conn.execute(
                select(t.virtual_users.c.password).where(t.virtual_users.c.id == carol.id)
            )
        ).scalar_one()
        assert stored.startswith("{ARGON2ID}")


async def test_unix_socket_is_0660_and_stop_ends_idle_connections(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = tmp_path / "auth"
    server = SaslServer(
        SaslChecker(engine, CRYPTO, LoginThrottle()), f"unix:{path}", group=os.getgid()
    )
    await server.start()
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"VERSION\t1\t0\nCPID\t1\n")
    client = Client(reader, writer)
    while await client.read() != "DONE":
        pass
    assert await client.auth(1, "PLAIN", "resp=" + plain(ALICE, PASSWORD)) == (
        f"OK\t1\tuser={ALICE}"
    )
    # An idle connection (Postfix keeps one per smtpd) does not hold up the stop.
    await asyncio.wait_for(server.stop(5.0), 10)
    await asyncio.wait_for(server.wait_closed(), 1)
    assert await client.closed()
