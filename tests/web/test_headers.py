"""Security headers on every answer; no caching except static files; HSTS over HTTPS."""

from __future__ import annotations

import httpx
import pytest

from cryptmail.web._headers import CONTENT_SECURITY_POLICY

PATHS = ["/sign-in", "/forgot", "/account", "/nowhere", "/api/v1/openapi.yaml", "/static/style.css"]


@pytest.mark.parametrize("path", PATHS)
async def test_security_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    headers = response.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert "server" not in headers


@pytest.mark.parametrize("path", PATHS[:-1])
async def test_nothing_but_static_files_is_cached(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).headers["cache-control"] == "no-store"


async def test_static_files_are_cacheable(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers["cache-control"].startswith("public")


async def test_no_hsts_over_plain_http(app: object) -> None:
    transport = httpx.ASGITransport(app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/sign-in")
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


async def test_pages_use_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    for path in ("/sign-in", "/forgot"):
        html = (await client.get(path)).text
        assert "<script" not in html and "style=" not in html and "<style" not in html
