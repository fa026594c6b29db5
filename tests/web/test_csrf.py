"""Every form route refuses a missing, foreign, replayed or wrongly packed CSRF token
before it runs; the right token works once."""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import Route

from cryptmail.keys import NewAccount
from cryptmail.web._routes import ROUTES
from web.conftest import ALICE, CLIENT_IP, PASSWORD, RecordingThrottle, csrf_token, form_token

FORM_ROUTES = sorted(
    route.path
    for route in ROUTES
    if isinstance(route, Route)
    and "POST" in (route.methods or ())
    and not route.path.startswith("/api/")
)


def test_every_form_route_is_listed() -> None:
    assert FORM_ROUTES == [
        "/account/app-passwords",
        "/account/app-passwords/revoke",
        "/account/log",
        "/account/password",
        "/account/recovery-code",
        "/forgot",
        "/sign-in",
        "/sign-out",
    ]


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403
    assert "This form has expired or was sent from another site" in response.text


@pytest.mark.parametrize("path", FORM_ROUTES)
async def test_missing_token(signed_in: httpx.AsyncClient, path: str) -> None:
    _refused(await signed_in.post(path, data={"password": PASSWORD}))


@pytest.mark.parametrize("path", FORM_ROUTES)
async def test_foreign_token(signed_in: httpx.AsyncClient, app: object, path: str) -> None:
    transport = httpx.ASGITransport(app, client=(CLIENT_IP, 2))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as other:
        foreign = await form_token(other, "/sign-in")
    _refused(await signed_in.post(path, data={"csrf_token": foreign, "password": PASSWORD}))


@pytest.mark.parametrize("path", FORM_ROUTES)
async def test_token_without_cookie(client: httpx.AsyncClient, path: str) -> None:
    token = await form_token(client, "/sign-in")
    client.cookies.clear()
    _refused(await client.post(path, data={"csrf_token": token}))


async def test_replayed_token(
    client: httpx.AsyncClient, alice: NewAccount, throttle: RecordingThrottle
) -> None:
    token = await form_token(client, "/sign-in")
    data = {"csrf_token": token, "address": ALICE, "password": "wrong password"}
    first = await client.post("/sign-in", data=data)
    assert first.status_code == 400  # ran: wrong password
    _refused(await client.post("/sign-in", data=data))
    assert len(throttle.waits) == 1  # the replay never reached the route


async def test_one_token_per_page_serves_all_its_forms(
    signed_in: httpx.AsyncClient,
) -> None:
    page = await signed_in.get("/account/app-passwords")
    tokens = set(page.text.split('name="csrf_token" value="')[1:])
    assert len({t.split('"')[0] for t in tokens}) == 1


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"csrf_token": "%s"}'),
        ("text/plain", b"csrf_token=%s"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n%s\r\n--x--\r\n',
        ),
    ],
)
async def test_only_urlencoded_forms(
    client: httpx.AsyncClient, content_type: str, body: bytes
) -> None:
    token = await form_token(client, "/sign-in")
    response = await client.post(
        "/sign-in",
        content=body.replace(b"%s", token.encode()),
        headers={"content-type": content_type},
    )
    _refused(response)


async def test_duplicate_token_fields(client: httpx.AsyncClient) -> None:
    token = await form_token(client, "/sign-in")
    body = f"csrf_token={token}&csrf_token={token}&address=a&password=b"
    response = await client.post(
        "/sign-in", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    _refused(response)


async def test_right_token_works_and_refusal_page_offers_a_fresh_start(
    client: httpx.AsyncClient, alice: NewAccount
) -> None:
    refused = await client.post("/sign-in", data={"address": ALICE, "password": PASSWORD})
    _refused(refused)
    assert 'href="/"' in refused.text
    token = csrf_token((await client.get("/sign-in")).text)
    ok = await client.post(
        "/sign-in", data={"csrf_token": token, "address": ALICE, "password": PASSWORD}
    )
    assert ok.status_code == 303
