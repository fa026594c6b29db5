"""Signing in and out: one answer for unknown address and wrong password, throttled,
and nothing but the user's id kept."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.keys import NewAccount, add_app_password, has_recovery_code, recover, unlock_account
from cryptmail.users import add_user, hash_password
from web.conftest import (
    ALICE,
    CLIENT_IP,
    PASSWORD,
    RecordingThrottle,
    csrf_token,
    pw,
    sign_in,
    submit,
)


async def test_home_redirects(client: httpx.AsyncClient, alice: NewAccount) -> None:
    assert (await client.get("/")).headers["location"] == "/sign-in"
    await sign_in(client)
    assert (await client.get("/")).headers["location"] == "/account"
    assert (await client.get("/sign-in")).headers["location"] == "/account"


async def test_sign_in_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/sign-in")
    assert page.status_code == 200
    assert 'action="/sign-in"' in page.text
    assert 'autocomplete="current-password"' in page.text
    assert 'href="/forgot"' in page.text


async def test_sign_in_and_see_the_account(client: httpx.AsyncClient, alice: NewAccount) -> None:
    response = await sign_in(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    account = await client.get("/account")
    assert account.status_code == 200
    assert ALICE in account.text


async def test_a_user_without_a_recovery_code_gets_one_at_sign_in(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config
) -> None:
    """An ISPmail row gets its keys at the first login, and no recovery code (README:
    every user has one): the web sign-in makes it, shows it once, and it works."""
    address = "legacy@example.org"
    async with engine.begin() as conn:
        user = await add_user(conn, address, hash_password(pw(PASSWORD)), crypt=2)
    response = await sign_in(client, address, PASSWORD)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    page = response.text
    assert "<h1>Your recovery code</h1>" in page and "It is shown only this once." in page
    assert 'href="/account"' in page and "previous recovery code" not in page
    code = page.split('<p class="secret"><code>')[1].split("</code>")[0]
    assert await has_recovery_code(engine, user.id)
    assert (await client.get("/account")).status_code == 200  # signed in

    token = csrf_token((await client.get("/account")).text)
    await client.post("/sign-out", data={"csrf_token": token})
    again = await sign_in(client, address, PASSWORD)  # has one now: straight to the account
    assert again.status_code == 303 and again.headers["location"] == "/account"
    await recover(engine, address, code, pw("a new passphrase 1"), config.crypto)


async def test_a_user_with_a_recovery_code_gets_no_new_one(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    response = await sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/account"
    await recover(engine, ALICE, alice.recovery_code or "", pw("a new passphrase 2"), config.crypto)


def _normalized(html: str) -> str:
    html = re.sub(r'name="csrf_token" value="[^"]+"', "", html)
    return re.sub(r'name="address" type="email" value="[^"]*"', "", html)


async def test_unknown_address_and_wrong_password_look_the_same(
    client: httpx.AsyncClient, alice: NewAccount
) -> None:
    wrong = await sign_in(client, ALICE, "not the password")
    unknown = await sign_in(client, "nobody@example.org", PASSWORD)
    malformed = await sign_in(client, "not an address", PASSWORD)
    assert wrong.status_code == unknown.status_code == malformed.status_code == 400
    assert _normalized(wrong.text) == _normalized(unknown.text) == _normalized(malformed.text)
    assert "The address or the password is wrong." in wrong.text
    assert (await client.get("/account")).headers["location"] == "/sign-in"


async def test_failed_sign_in_keeps_the_address_escaped(
    client: httpx.AsyncClient,
) -> None:
    response = await sign_in(client, '"><script>x</script>@example.org', "whatever")
    assert "<script>x</script>" not in response.text
    assert "&#34;&gt;&lt;script&gt;" in response.text


async def test_sign_in_is_throttled(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    await sign_in(client, ALICE, "wrong one")
    await sign_in(client, ALICE, "wrong two")
    assert [w[:2] for w in throttle.waits] == [(ALICE, CLIENT_IP)] * 2
    assert throttle.waits[0][2] == 0 and throttle.waits[1][2] > 0
    assert (await sign_in(client)).status_code == 303
    # A success gives back its own tokens only: the two failures still count, for the
    # address (from anywhere) and for the client (whatever address it tries).
    assert throttle.debt(ALICE, "198.51.100.1") == pytest.approx(2, abs=0.1)
    assert throttle.debt("someone@else", CLIENT_IP) == pytest.approx(2, abs=0.1)
    assert throttle.refusals == 0


async def test_app_password_does_not_sign_in(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    secret = await add_app_password(engine, account, "phone", config.crypto)
    assert (await sign_in(client, ALICE, secret)).status_code == 400


async def test_oversized_or_missing_fields(client: httpx.AsyncClient, alice: NewAccount) -> None:
    long = await submit(client, "/sign-in", {"address": ALICE, "password": "x" * 5000})
    missing = await submit(client, "/sign-in", {"address": ALICE})
    assert long.status_code == missing.status_code == 400
    assert "The address or the password is wrong." in missing.text


async def test_sign_in_records_a_failed_event(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    from cryptmail.keys import list_events

    await sign_in(client, ALICE, "wrong one")
    account, _slot = await unlock_account(engine, ALICE, pw(PASSWORD), config.crypto)
    async with engine.connect() as conn:
        events = await list_events(conn, account)
    assert (events[0].event, events[0].client_ip) == ("sign_in_failed", CLIENT_IP)


async def test_sign_in_with_the_bucket_empty_gets_429(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    for _ in range(5):
        await sign_in(client, ALICE, "wrong")
    response = await sign_in(client)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
