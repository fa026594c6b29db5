"""App passwords: made after the password, shown once, unlock the key; revoked, they
stop working."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import NewAccount, list_app_passwords, unlock_account
from web.conftest import ALICE, PASSWORD, csrf_token, pw, submit

PAGE = "/account/app-passwords"


async def _create(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return await submit(client, PAGE, {"name": name, "password": password})


def _secret(html: str) -> str:
    return html.split('<p class="secret"><code>')[1].split("</code>")[0]


async def test_create_use_and_revoke(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    assert "You have no app passwords." in (await signed_in.get(PAGE)).text
    created = await _create(signed_in, "phone")
    assert created.status_code == 200
    secret = _secret(created.text)
    assert "It is shown only this once." in created.text
    account, slot = await unlock_account(engine, ALICE, pw(secret), config.crypto)
    assert slot.kind == "app" and account.user.id == alice.user.id

    listing = await signed_in.get(PAGE)
    assert "phone" in listing.text and secret not in listing.text
    # The list's button asks first; nothing is revoked by that.
    asked = await signed_in.post(
        PAGE + "/revoke", data={"csrf_token": csrf_token(listing.text), "name": "phone"}
    )
    assert asked.status_code == 200
    assert "Revoke the app password phone?" in asked.text
    assert "stop getting mail" in asked.text and 'href="/account/app-passwords"' in asked.text
    assert [app.name for app in await list_app_passwords(engine, alice.user.id)] == ["phone"]
    assert (await unlock_account(engine, ALICE, pw(secret), config.crypto))[1].kind == "app"
    revoked = await signed_in.post(
        PAGE + "/revoke",
        data={"csrf_token": csrf_token(asked.text), "name": "phone", "confirm": "yes"},
    )
    assert revoked.status_code == 303
    assert "The app password is revoked." in (await signed_in.get(revoked.headers["location"])).text
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(secret), config.crypto)
    assert await list_app_passwords(engine, alice.user.id) == []


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("phone", "wrong password", "The password is wrong."),
        ("<bad/name>", PASSWORD, "Enter a name of 1 to 64"),
        ("x" * 65, PASSWORD, "Enter a name of 1 to 64"),
        ("", PASSWORD, "Enter a name of 1 to 64"),
    ],
)
async def test_refused(
    signed_in: httpx.AsyncClient,
    engine: AsyncEngine,
    alice: NewAccount,
    name: str,
    password: str,
    message: str,
) -> None:
    response = await _create(signed_in, name, password)
    assert response.status_code == 400
    assert message in response.text
    assert await list_app_passwords(engine, alice.user.id) == []


async def test_duplicate_name(signed_in: httpx.AsyncClient, alice: NewAccount) -> None:
    assert (await _create(signed_in, "laptop")).status_code == 200
    again = await _create(signed_in, "laptop")
    assert again.status_code == 400
    assert "An app password with this name exists already." in again.text


@pytest.mark.parametrize("confirm", ["", "yes"])
async def test_revoke_unknown(
    signed_in: httpx.AsyncClient, alice: NewAccount, confirm: str
) -> None:
    fields = {"name": "nothing", "confirm": confirm}
    response = await submit(signed_in, PAGE, fields, action=PAGE + "/revoke")
    assert response.status_code == 400
    assert "There is no app password with this name." in response.text


async def test_the_confirmation_needs_its_csrf_token(
    signed_in: httpx.AsyncClient, engine: AsyncEngine, alice: NewAccount
) -> None:
    assert (await _create(signed_in, "phone")).status_code == 200
    forged = await signed_in.post(PAGE + "/revoke", data={"name": "phone", "confirm": "yes"})
    assert forged.status_code == 403
    assert [app.name for app in await list_app_passwords(engine, alice.user.id)] == ["phone"]


async def test_an_app_password_cannot_make_another(
    signed_in: httpx.AsyncClient, alice: NewAccount
) -> None:
    secret = _secret((await _create(signed_in, "phone")).text)
    response = await _create(signed_in, "tablet", secret)
    assert response.status_code == 400
