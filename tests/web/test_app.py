"""create_app: the public surface, the engine in the lifespan, the admin token file,
trusted proxies, and the error table."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import cryptmail.web
from cryptmail.errors import ConfigError, DatabaseUnavailable
from cryptmail.keys import NewAccount
from cryptmail.web import create_app
from cryptmail.web._app import read_admin_token
from web.conftest import (
    ALICE,
    CLIENT_IP,
    PASSWORD,
    RecordingThrottle,
    form_token,
    make_config,
    sign_in,
)


def test_exported_members() -> None:
    assert cryptmail.web.__all__ == ["Readiness", "WebServer", "create_app"]
    assert sorted(cryptmail.web.__all__) == cryptmail.web.__all__


async def test_lifespan_makes_and_disposes_its_own_engine(
    tmp_path: Path, engine: AsyncEngine, alice: NewAccount
) -> None:
    config = make_config(tmp_path)  # the same SQLite file the fixture migrated
    app = create_app(config)
    transport = httpx.ASGITransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as client,
    ):
        assert (await sign_in(client)).status_code == 303
        own = app.state.cryptmail_web.engine
        assert own is not engine
    assert app.state.cryptmail_web is None


async def test_outside_the_lifespan(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.get("/sign-in")
    assert response.status_code == 500
    assert "PASSWORD" not in response.text


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot be read"), ("short", "at least 16"), ("a" * 20 + "\n" + "b" * 20, "one line")],
)
def test_bad_admin_token_files(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        read_admin_token(str(path))
    with pytest.raises(ConfigError):
        create_app(make_config(tmp_path, **{"web.admin_token_file": str(path)}))


def test_admin_token_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token"
    path.write_text("  " + "t" * 32 + "\n")
    path.chmod(0o644)
    token = read_admin_token(str(path))
    assert token is not None and token.reveal() == b"t" * 32
    assert "readable by others" in caplog.text
    assert "t" * 32 not in caplog.text and "t" * 32 not in repr(token)
    assert read_admin_token("") is None


async def _client_ip_seen(tmp_path: Path, engine: AsyncEngine, proxies: str, peer: str) -> str:
    throttle = RecordingThrottle()
    config = make_config(tmp_path, **{"web.trusted_proxies": proxies})
    app = create_app(config, engine=engine, throttle=throttle)
    transport = httpx.ASGITransport(app, client=(peer, 4711))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://testserver") as client,
    ):
        await client.post(
            "/api/v1/password",
            json={"address": ALICE, "old": PASSWORD, "new": "some new passphrase"},
            headers={"x-forwarded-for": "198.51.100.9"},
        )
    return throttle.waits[0][1]


async def test_forwarded_for_ignored_by_default(tmp_path: Path, engine: AsyncEngine) -> None:
    assert await _client_ip_seen(tmp_path, engine, "", "10.0.0.5") == "10.0.0.5"


async def test_forwarded_for_from_a_trusted_proxy(tmp_path: Path, engine: AsyncEngine) -> None:
    assert await _client_ip_seen(tmp_path, engine, "10.0.0.5", "10.0.0.5") == "198.51.100.9"
    assert await _client_ip_seen(tmp_path, engine, "10.0.0.0/8", "10.0.0.6") == "198.51.100.9"
    assert await _client_ip_seen(tmp_path, engine, "10.0.0.5", CLIENT_IP) == CLIENT_IP


async def test_database_down_gives_503(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    alice: NewAccount,
) -> None:
    async def down(*_args: object, **_kwargs: object) -> None:
        # What the engine hook raises: ours, chained from the driver's (SQL, parameters).
        cause = OperationalError("SELECT secret_statement", {"password": "hash-param"}, Exception())
        raise DatabaseUnavailable("the database did not answer (OperationalError)") from cause

    monkeypatch.setattr("cryptmail.web._attempts.unlock_account", down)
    page = await sign_in(client)
    api = await client.get("/api/v1/app-passwords", auth=(ALICE, PASSWORD))
    assert page.status_code == api.status_code == 503
    assert "cannot reach its database" in page.text
    assert api.json()["error"] == "unavailable"
    assert "secret_statement" not in caplog.text and "hash-param" not in caplog.text


async def test_not_found_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere", headers={"accept-language": "de"})
    assert response.status_code == 404
    assert "Diese Seite gibt es nicht." in response.text


async def test_wrong_method_on_a_page(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/sign-in")).status_code == 403  # CSRF comes first
    token = await form_token(client, "/sign-in")
    response = await client.post("/account", data={"csrf_token": token})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}
