"""A web session belongs to the credential generation it signed in at (issue 14,
finding 3): a password change, recovery, revocation or re-key made anywhere (the CLI,
another `serve` process) signs it out at its next request, and clears the cookie. The
session that made the change itself stays signed in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from cryptmail.config import Config
from cryptmail.keys import (
    NewAccount,
    add_app_password,
    change_password,
    revoke_app_password,
    unlock_account,
)
from cryptmail.keys._generation import bump_generation
from web.conftest import ALICE, CLIENT_IP, NEW_PASSWORD, PASSWORD, pw, sign_in, submit


@pytest.fixture
async def other_browser(app: Starlette, alice: NewAccount) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser of alice's, signed in."""
    transport = httpx.ASGITransport(app, client=(CLIENT_IP, 50001))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        assert (await sign_in(client)).status_code == 303
        yield client


async def _signed_out(client: httpx.AsyncClient) -> None:
    response = await client.get("/account")
    assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    assert "Max-Age=0" in response.headers["set-cookie"]  # the cookie is cleared
    assert not client.cookies.get("cryptmail") and not client.cookies.get("__Host-cryptmail")


async def _signed_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/account")
    assert response.status_code == 200, response.headers.get("location")


async def test_a_password_changed_elsewhere_signs_every_session_out(
    signed_in: httpx.AsyncClient,
    other_browser: httpx.AsyncClient,
    engine: AsyncEngine,
    config: Config,
) -> None:
    await _signed_in(signed_in)
    # As `cryptmail user passwd` or another node does it: nothing in this process told.
    await change_password(engine, ALICE, pw(PASSWORD), pw(NEW_PASSWORD), config.crypto)
    await _signed_out(signed_in)
    await _signed_out(other_browser)
    assert (await sign_in(signed_in, password=NEW_PASSWORD)).status_code == 303
    await _signed_in(signed_in)


async def test_a_bump_from_another_process_signs_out(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    async with engine.begin() as conn:
        await bump_generation(conn, alice.user.id)
    await _signed_out(signed_in)


async def test_the_session_that_changed_the_password_stays_signed_in(
    signed_in: httpx.AsyncClient, other_browser: httpx.AsyncClient
) -> None:
    form = {"old": PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    response = await submit(signed_in, "/account/password", form)
    assert response.headers["location"] == "/account?done=password_changed"
    await _signed_in(signed_in)
    await _signed_in(signed_in)  # bound to the new generation, not only for one request
    await _signed_out(other_browser)


async def test_the_session_that_revoked_an_app_password_stays_signed_in(
    signed_in: httpx.AsyncClient,
    other_browser: httpx.AsyncClient,
    engine: AsyncEngine,
    config: Config,
) -> None:
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await add_app_password(engine, account, "phone", config.crypto)
    await _signed_in(other_browser)  # adding one ends nothing
    response = await submit(
        signed_in,
        "/account/app-passwords",
        {"name": "phone", "confirm": "yes"},  # the confirmation page's post
        "/account/app-passwords/revoke",
    )
    assert response.headers["location"] == "/account/app-passwords?done=app_password_revoked"
    await _signed_in(signed_in)
    await _signed_out(other_browser)


async def test_a_change_racing_with_its_own_signs_out_too(
    signed_in: httpx.AsyncClient,
    engine: AsyncEngine,
    config: Config,
    alice: NewAccount,
) -> None:
    """Two changes: this session's and one from elsewhere just before it. The session
    knows only its own, so it cannot tell it from a stolen one: it ends."""
    async with engine.begin() as conn:
        await bump_generation(conn, alice.user.id)
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await add_app_password(engine, account, "phone", config.crypto)
    await revoke_app_password(engine, alice.user.id, "phone")  # the generation is now +2
    await _signed_out(signed_in)


async def test_the_sign_in_that_re_keys_stays_signed_in(
    client: httpx.AsyncClient, alice: NewAccount, engine: AsyncEngine, config: Config
) -> None:
    # A revocation without the key (the CLI's) leaves a re-key pending; this sign-in
    # makes it and moves the generation, and must not be signed out by its own re-key.
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await add_app_password(engine, account, "phone", config.crypto)
    await revoke_app_password(engine, account.user.id, "phone")
    assert (await sign_in(client)).status_code in (200, 303)
    await _signed_in(client)


async def test_a_page_whose_unlock_makes_the_pending_re_key_keeps_the_session(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, config: Config
) -> None:
    # Revoked on the web page (no key there): the session stays, a re-key is pending.
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    await add_app_password(engine, account, "phone", config.crypto)
    revoked = await submit(
        signed_in,
        "/account/app-passwords",
        {"name": "phone", "confirm": "yes"},  # the confirmation page's post
        action="/account/app-passwords/revoke",
    )
    assert revoked.status_code == 303
    await _signed_in(signed_in)
    # The recovery-code page unlocks with the password: that unlock makes the re-key
    # and moves the generation; the session that did it goes on.
    renewed = await submit(signed_in, "/account/recovery-code", {"password": PASSWORD})
    assert renewed.status_code == 200 and "only this once" in renewed.text
    await _signed_in(signed_in)
