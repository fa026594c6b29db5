"""API app passwords: create (shown once), list, revoke; only with the login password."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import NewAccount, unlock_account
from web.conftest import ALICE, PASSWORD, pw

AUTH = (ALICE, PASSWORD)


async def _create(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(
        "/api/v1/app-passwords", json={"address": ALICE, "password": password, "name": name}
    )


async def test_create_list_revoke(
    client: httpx.AsyncClient, engine: AsyncEngine, config: Config, alice: NewAccount
) -> None:
    created = await _create(client, "phone")
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "phone"
    secret = body["password"]
    await unlock_account(engine, ALICE, pw(secret), config.crypto)

    listing = await client.get("/api/v1/app-passwords", auth=AUTH)
    assert listing.status_code == 200
    (item,) = listing.json()["app_passwords"]
    assert item["name"] == "phone" and item["created_at"].endswith("Z")
    assert secret not in listing.text

    assert (await client.delete("/api/v1/app-passwords/phone", auth=AUTH)).status_code == 204
    with pytest.raises(AuthenticationFailed):
        await unlock_account(engine, ALICE, pw(secret), config.crypto)
    assert (await client.delete("/api/v1/app-passwords/phone", auth=AUTH)).status_code == 404


async def test_names_with_spaces_in_the_path(client: httpx.AsyncClient, alice: NewAccount) -> None:
    assert (await _create(client, "work laptop")).status_code == 201
    response = await client.delete("/api/v1/app-passwords/work%20laptop", auth=AUTH)
    assert response.status_code == 204


async def test_duplicate_and_bad_names(client: httpx.AsyncClient, alice: NewAccount) -> None:
    assert (await _create(client, "phone")).status_code == 201
    assert (await _create(client, "phone")).status_code == 409
    bad = await _create(client, "<script>")
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_name"


async def test_app_password_cannot_manage_app_passwords(
    client: httpx.AsyncClient, alice: NewAccount
) -> None:
    secret = (await _create(client, "phone")).json()["password"]
    assert (await _create(client, "tablet", secret)).status_code == 401
    assert (await client.get("/api/v1/app-passwords", auth=(ALICE, secret))).status_code == 401
    response = await client.delete("/api/v1/app-passwords/phone", auth=(ALICE, secret))
    assert response.status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic",
        "Basic !!!notbase64",
        "Basic " + "YWxpY2VAZXhhbXBsZS5vcmc=",  # no colon
        "Basic " + "OnNlY3JldA==",  # empty address
        "Basic " + "/w==",  # not UTF-8
        "Bearer something",
        "Digest username=alice",
    ],
)
async def test_bad_basic_credentials(
    client: httpx.AsyncClient, alice: NewAccount, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    response = await client.get("/api/v1/app-passwords", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json()["error"] == "authentication_failed"


async def test_wrong_password(client: httpx.AsyncClient, alice: NewAccount) -> None:
    assert (await client.get("/api/v1/app-passwords", auth=(ALICE, "nope"))).status_code == 401
    assert (await _create(client, "phone", "nope")).status_code == 401
