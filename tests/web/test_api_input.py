"""The API refuses malformed, oversized and wrongly typed bodies before any credential
is tried, with a JSON error and never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cryptmail.web._app import MAX_BODY_BYTES
from web.conftest import ALICE, PASSWORD, RecordingThrottle

GOOD = {"address": ALICE, "old": PASSWORD, "new": "a brand new passphrase"}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"text"',
        b"42",
        b"\xff\xfe",
        b'{"address": 1, "old": "x", "new": "y"}',
        b'{"address": null, "old": "x", "new": "y"}',
        b'{"address": ["a"], "old": "x", "new": "y"}',
        b'{"address": {"a": 1}, "old": "x", "new": "y"}',
        b'{"address": true, "old": "x", "new": "y"}',
        b'{"address": "a@b", "old": "x"}',
        b'{"address": "a@b", "old": "x", "new": ""}',
        b'{"address": "a@b", "old": "x", "new": "y", "admin": true}',
        b'{"address": "a@b", "old": "\\ud800", "new": "yyyyyyyyyyyy"}',
        b'{"address": "' + b"a" * 300 + b'", "old": "x", "new": "y"}',
        b'{"address": "a@b", "old": "' + b"x" * 1025 + b'", "new": "y"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
async def test_malformed_json(
    client: httpx.AsyncClient, throttle: RecordingThrottle, body: bytes
) -> None:
    response = await client.post("/api/v1/password", content=body[:60_000], headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert throttle.waits == []


@pytest.mark.parametrize(
    "body",
    [
        b"address=a%40b&address=c%40d&old=x&new=y",  # a field twice
        b"address=a%40b&old=x&new=y&extra=1",
        b"address=a%40b&old=%FF&new=y",  # not UTF-8
        b"address&old&new",
        b"address=a%40b&new=y&" + b"&".join(b"f%d=1" % i for i in range(50)),
    ],
)
async def test_malformed_form(
    client: httpx.AsyncClient, throttle: RecordingThrottle, body: bytes
) -> None:
    response = await client.post(
        "/api/v1/password",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert throttle.waits == []


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "multipart/form-data; boundary=x", "application/xml"]
)
async def test_wrong_media_type(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/api/v1/password", content=b"{}", headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


async def test_json_with_charset_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/password",
        content=b'{"address": "x@example.org", "old": "x", "new": "a fine new password"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/password", "/api/v1/recover", "/sign-in"])
async def test_huge_body_with_length(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(
        path, content=b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}", headers=JSON
    )
    assert response.status_code == 413


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(100):
        yield b"x" * 4096


@pytest.mark.parametrize("path", ["/api/v1/password", "/sign-in"])
async def test_huge_streamed_body(client: httpx.AsyncClient, path: str) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = await client.post(path, content=_chunks(), headers=headers)
    assert response.status_code == 413


async def test_unknown_api_path_and_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = await client.put("/api/v1/password", json=GOOD)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


async def test_api_ignores_the_session_cookie(client: httpx.AsyncClient, alice: object) -> None:
    from web.conftest import sign_in

    await sign_in(client)
    response = await client.get("/api/v1/app-passwords")
    assert response.status_code == 401
