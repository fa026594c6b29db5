"""The session cookie: only a random id, HttpOnly, SameSite=Strict, Secure with the
__Host- prefix (or neither, for plain-HTTP tests), cleared at sign-out."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.web import create_app
from web.conftest import CLIENT_IP, make_config, sign_in


def _cookie_header(response: httpx.Response) -> str:
    headers = response.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    return headers[0]


async def test_form_page_sets_a_strict_secure_cookie(client: httpx.AsyncClient) -> None:
    header = _cookie_header(await client.get("/sign-in"))
    name, _, rest = header.partition("=")
    value, *attributes = rest.split("; ")
    assert name == "__Host-cryptmail"
    assert len(value) >= 40
    assert set(attributes) == {"Path=/", "HttpOnly", "SameSite=Strict", "Secure"}
    assert "Max-Age" not in header and "Domain" not in header


async def test_cookie_is_set_once_and_kept(client: httpx.AsyncClient) -> None:
    await client.get("/sign-in")
    again = await client.get("/sign-in")
    assert "set-cookie" not in again.headers


async def test_sign_in_changes_the_session_id(client: httpx.AsyncClient, alice: object) -> None:
    await client.get("/sign-in")
    before = client.cookies["__Host-cryptmail"]
    response = await sign_in(client)
    after = _cookie_header(response).split(";")[0].split("=", 1)[1]
    assert after != before


async def test_sign_out_clears_the_cookie(signed_in: httpx.AsyncClient) -> None:
    account = await signed_in.get("/account")
    token = account.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = await signed_in.post("/sign-out", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?done=signed_out"
    assert "Max-Age=0" in _cookie_header(response)
    assert (await signed_in.get("/account")).headers["location"] == "/sign-in"


async def test_unknown_or_garbled_cookie_is_cleared_or_ignored(client: httpx.AsyncClient) -> None:
    response = await client.get("/account", headers={"cookie": "__Host-cryptmail=forged"})
    assert response.status_code == 303
    assert "Max-Age=0" in _cookie_header(response)
    garbled = await client.get("/", headers={"cookie": '__Host-cryptmail="\\x'})
    assert garbled.status_code == 303


async def test_api_and_static_never_make_sessions(client: httpx.AsyncClient) -> None:
    assert "set-cookie" not in (await client.get("/api/v1/openapi.yaml")).headers
    assert "set-cookie" not in (await client.get("/static/style.css")).headers
    assert "set-cookie" not in (await client.get("/")).headers


async def test_plain_http_cookie_without_secure(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(tmp_path, **{"web.secure_cookies": False})
    app = create_app(config, engine=engine)
    transport = httpx.ASGITransport(app, client=(CLIENT_IP, 1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        header = _cookie_header(await client.get("/sign-in"))
    assert header.startswith("cryptmail=")
    assert "Secure" not in header and "HttpOnly" in header and "SameSite=Strict" in header
