"""The account overview (no key needed) and the security log (password needed)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.db import tables as t
from cryptmail.db import utcnow
from cryptmail.keys import (
    NewAccount,
    create_user,
    has_recovery_code,
    list_key_pairs,
    verify_login,
)
from cryptmail.store import (
    FilingRequest,
    FirstLoginImports,
    StagedSource,
    deliver_message,
    list_staged,
    pending_notes,
    stage_import,
)
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_user, get_user, hash_password, set_crypt
from web.conftest import ALICE, CLIENT_IP, PASSWORD, pw, sign_in, submit

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"
BANNER = "You have no recovery code yet: if you forget your password, your mail is lost."
BANNER_LINK = '<a href="/account/recovery-code">Create one now.</a>'


async def test_overview(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    async with engine.connect() as conn:
        (pair,) = await list_key_pairs(conn, alice.user.id)
    page = (await signed_in.get("/account")).text
    assert ALICE in page
    assert pair.fingerprint.replace(":", ":<wbr>") in page
    assert "x25519" in page
    assert pair.created_at.strftime("%Y-%m-%d %H:%M UTC") in page
    assert "<dd>encrypted</dd>" in page
    assert "You have a recovery code." in page
    assert "You have no recovery code" not in page
    assert BANNER not in page


async def test_overview_shows_crypt_off(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    async with engine.begin() as conn:
        await set_crypt(conn, alice.user.id, 0)
    assert "unencrypted" in (await signed_in.get("/account")).text


async def test_overview_warns_without_recovery_code(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(t.cm_key_slots).where(t.cm_key_slots.c.kind == "recovery"))
    page = (await signed_in.get("/account")).text
    assert BANNER in page and BANNER_LINK in page
    assert page.index(BANNER) < page.index('<dl class="facts">')
    assert "Create a recovery code</a>" in page
    german = (await signed_in.get("/account", headers={"accept-language": "de"})).text
    assert "Du hast noch keinen Wiederherstellungscode" in german
    assert "Erstelle jetzt einen.</a>" in german


async def test_first_login_user_is_asked_for_a_recovery_code(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A user whose keys are made at the first login (an ISPmail row, here over IMAP)
    has no recovery code; the web sign-in makes one and shows it once, and the account
    page asks for one whenever there is none. The code is never logged."""
    caplog.set_level(logging.DEBUG)
    address = "legacy@example.org"
    async with engine.begin() as conn:
        user = await add_user(conn, address, hash_password(pw(PASSWORD)), crypt=2)
    await verify_login(engine, address, pw(PASSWORD), config.crypto)  # as IMAP logs in
    async with engine.connect() as conn:
        assert len(await list_key_pairs(conn, user.id)) == 1
    assert not await has_recovery_code(engine, user.id)

    response = await sign_in(client, address, PASSWORD)
    assert response.status_code == 200 and "<h1>Your recovery code</h1>" in response.text
    first = response.text.split('<p class="secret"><code>')[1].split("</code>")[0]
    assert await has_recovery_code(engine, user.id)
    async with engine.begin() as conn:  # gone, as a re-key drops a version-1 slot
        await conn.execute(delete(t.cm_key_slots).where(t.cm_key_slots.c.kind == "recovery"))

    page = (await client.get("/account")).text
    assert BANNER in page and BANNER_LINK in page
    response = await submit(client, "/account/recovery-code", {"password": PASSWORD})
    assert response.status_code == 200
    code = response.text.split('<p class="secret"><code>')[1].split("</code>")[0]
    assert code
    assert await has_recovery_code(engine, user.id)
    page = (await client.get("/account")).text
    assert BANNER not in page and "Create one now." not in page
    assert "You have a recovery code." in page
    for secret in (first, code, PASSWORD):
        assert secret not in caplog.text


async def test_session_of_a_deleted_user_ends(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(t.virtual_users).where(t.virtual_users.c.id == alice.user.id))
    response = await signed_in.get("/account")
    assert response.headers["location"] == "/sign-in"
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_log_asks_for_the_password(signed_in: httpx.AsyncClient) -> None:
    page = (await signed_in.get("/account/log")).text
    assert "enter your password to read it" in page
    assert '<table class="log">' not in page


async def test_log_shows_events_with_client_address(
    client: httpx.AsyncClient, alice: NewAccount, engine: AsyncEngine
) -> None:
    await sign_in(client, ALICE, "a wrong password")
    await sign_in(client)
    response = await submit(client, "/account/log", {"password": PASSWORD})
    assert response.status_code == 200
    page = response.text
    assert '<table class="log">' in page
    assert "Failed login: wrong password" in page and CLIENT_IP in page
    assert "Key created" in page


async def test_log_with_wrong_password(signed_in: httpx.AsyncClient) -> None:
    response = await submit(signed_in, "/account/log", {"password": "not it at all"})
    assert response.status_code == 400
    assert "The password is wrong." in response.text
    assert '<table class="log">' not in response.text


async def test_account_pages_need_sign_in(client: httpx.AsyncClient, alice: NewAccount) -> None:
    for path in ("/account", "/account/log", "/account/recovery-code", "/account/app-passwords"):
        assert (await client.get(path)).headers["location"] == "/sign-in", path


async def test_user_unchanged_by_viewing(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    await signed_in.get("/account")
    async with engine.connect() as conn:
        assert (await get_user(conn, ALICE)).password_hash == alice.user.password_hash


async def test_sign_in_starts_the_staged_import_and_the_page_shows_it_running(
    engine: AsyncEngine, config: Config, tmp_path: Path
) -> None:
    """A user whose Dovecot Maildir is staged (keys locked by the login password, as on
    ISPmail): the web sign-in starts its import; while one runs (here: claimed by another
    node, its heartbeat fresh) the overview shows how far it is."""
    from cryptmail.web import create_app

    address, secret = "carol@example.org", "Alice-Secret-521"
    maildir = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", maildir)
    created = await create_user(engine, address, pw(secret), config.crypto)
    await stage_import(engine, created.user.id, StagedSource(maildir, None))
    imports = FirstLoginImports(engine, LocalBlobStore(config.blob_path), stale_after_s=60)
    app = create_app(config, engine=engine, imports=imports)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            response = await sign_in(client, address, secret)
            assert response.status_code in (200, 303)
            await imports.wait(created.user.id)
            (row,) = await list_staged(engine, created.user.id)
            assert (row.state, row.done_messages) == ("done", 7)
            assert 'id="import-progress"' not in (await client.get("/account")).text

            async with engine.begin() as conn:  # another node runs a second one
                await conn.execute(
                    t.cm_staged_imports.insert().values(
                        user_id=created.user.id,
                        state="running",
                        source_sealed=b"",
                        done_messages=3,
                        total_messages=10,
                        created_at=utcnow(),
                        heartbeat_at=utcnow(),
                    )
                )
            page = (await client.get("/account")).text
            assert 'id="import-progress"' in page and "3 of 10 messages" in page


async def test_sign_in_files_what_sieve_filed_while_nobody_held_the_key(
    engine: AsyncEngine, config: Config
) -> None:
    """Mail Sieve filed into a folder of the user's own waits sealed; a web sign-in
    (which holds the key for its request) files it."""
    from cryptmail.web import create_app

    address, secret = "dora@example.org", "Dora-Secret-8842"
    created = await create_user(engine, address, pw(secret), config.crypto)
    blobs = LocalBlobStore(config.blob_path)

    async def source() -> AsyncIterator[bytes]:
        yield b"Subject: filed\r\n\r\nbody\r\n"

    request = FilingRequest.of("Receipts", True, ["\\Seen"])
    await deliver_message(engine, blobs, created.user, source(), filing=request)
    assert await pending_notes(engine, created.user.id) == 1
    imports = FirstLoginImports(engine, blobs, stale_after_s=60)
    app = create_app(config, engine=engine, imports=imports)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            assert (await sign_in(client, address, secret)).status_code in (200, 303)
    assert await pending_notes(engine, created.user.id) == 0
    async with engine.connect() as conn:
        folders = (
            await conn.execute(
                select(t.cm_mailboxes.c.role, t.cm_mailboxes.c.message_count).where(
                    t.cm_mailboxes.c.user_id == created.user.id,
                    t.cm_mailboxes.c.message_count > 0,
                )
            )
        ).all()
    assert [tuple(f) for f in folders] == [(None, 1)]  # in the folder :create made
