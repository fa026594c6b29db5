"""serve_web: uvicorn on a loopback port until the shutdown event, HTTP or HTTPS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli import _serve as cli_serve
from cryptmail.config import Config
from cryptmail.errors import ConfigError
from cryptmail.keys import LoginThrottle, UnlockedAccounts
from cryptmail.web import serve_web
from web.conftest import make_config, self_signed_certificate


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _wait_until_up(url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(**kwargs) as client:  # type: ignore[arg-type]
        for _ in range(200):
            try:
                return await client.get(url)
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


async def _serve_and_fetch(
    config: Config, engine: AsyncEngine, scheme: str, **client_kwargs: object
) -> httpx.Response:
    port = _free_port()
    shutdown = asyncio.Event()
    task = asyncio.create_task(
        serve_web(
            config,
            "127.0.0.1",
            port,
            engine=engine,
            throttle=LoginThrottle(),
            shutdown_event=shutdown,
        )
    )
    try:
        response = await _wait_until_up(f"{scheme}://127.0.0.1:{port}/sign-in", **client_kwargs)
    finally:
        shutdown.set()
        await asyncio.wait_for(task, 15)
    async with httpx.AsyncClient(**client_kwargs) as client:  # type: ignore[arg-type]
        with pytest.raises(httpx.ConnectError):  # stopped listening
            await client.get(f"{scheme}://127.0.0.1:{port}/")
    return response


async def test_plain_http_until_shutdown(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(tmp_path, **{"web.secure_cookies": False})
    response = await _serve_and_fetch(config, engine, "http")
    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.headers["set-cookie"].startswith("cryptmail=")
    # The shared engine stays usable after the listener stopped.
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")


async def test_https_with_configured_certificate(tmp_path: Path, engine: AsyncEngine) -> None:
    cert, key = self_signed_certificate(tmp_path)
    config = make_config(tmp_path, **{"web.tls_cert": str(cert), "web.tls_key": str(key)})
    context = ssl.create_default_context(cafile=str(cert))
    response = await _serve_and_fetch(config, engine, "https", verify=context)
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["set-cookie"].startswith("__Host-cryptmail=")


async def test_certificate_without_key(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(tmp_path, **{"web.tls_cert": "/nonexistent.crt"})
    with pytest.raises(ConfigError, match="go together"):
        await serve_web(
            config,
            "127.0.0.1",
            _free_port(),
            engine=engine,
            throttle=LoginThrottle(),
            shutdown_event=asyncio.Event(),
        )


async def test_unreadable_certificate(tmp_path: Path, engine: AsyncEngine) -> None:
    config = make_config(
        tmp_path,
        **{"web.tls_cert": str(tmp_path / "no.crt"), "web.tls_key": str(tmp_path / "no.key")},
    )
    with pytest.raises(ConfigError, match="did not start"):
        await serve_web(
            config,
            "127.0.0.1",
            _free_port(),
            engine=engine,
            throttle=LoginThrottle(),
            shutdown_event=asyncio.Event(),
        )


async def test_address_in_use(tmp_path: Path, engine: AsyncEngine) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="did not start"):
            await serve_web(
                make_config(tmp_path),
                "127.0.0.1",
                port,
                engine=engine,
                throttle=LoginThrottle(),
                shutdown_event=asyncio.Event(),
            )


async def test_cryptmail_serve_gives_web_and_imap_one_throttle(
    config: Config, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cryptmail serve --web ... --imap ... --imaps ...` passes the same LoginThrottle to
    every listener, so failures at the web form slow IMAP logins and the other way round,
    and the same UnlockedAccounts, so a password change on the web drops IMAP's cached
    credentials."""
    throttles: dict[str, object] = {}
    caches: list[object] = []

    def recorder(name: str) -> object:
        async def serve(
            *args: object, throttle: object, accounts: object, **kwargs: object
        ) -> None:
            throttles[f"{name}:{len(throttles)}"] = throttle
            caches.append(accounts)
            if len(throttles) == 3:
                shutdown_event = kwargs["shutdown_event"]
                assert isinstance(shutdown_event, asyncio.Event)
                shutdown_event.set()

        return serve

    monkeypatch.setattr(cli_serve, "_optional", lambda module, name: recorder(name))
    code = await cli_serve._run(
        config,
        engine,
        lmtp="",
        imap=f"127.0.0.1:{_free_port()}",
        imaps=f"127.0.0.1:{_free_port()}",
        web=f"127.0.0.1:{_free_port()}",
    )
    assert code == 0
    assert sorted(name.split(":")[0] for name in throttles) == [
        "serve_imap",
        "serve_imap",
        "serve_web",
    ]
    first, *others = throttles.values()
    assert isinstance(first, LoginThrottle)
    assert all(other is first for other in others)
    first_cache, *other_caches = caches
    assert isinstance(first_cache, UnlockedAccounts)
    assert len(other_caches) == 2 and all(other is first_cache for other in other_caches)
